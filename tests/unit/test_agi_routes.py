"""Every ``agi://`` route the shipped dialplans use has a handler registered."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from cti.agi.server import FastAgiServer
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.calls.model import CallModel
from cti.config import Settings
from cti.features import Feature, FeatureContext, load_features
from cti.services import Services
from cti.store.db import Database
from cti.web.ws import WsHub
from ivr.feature import IvrFeature
from quality.feature import QualityFeature

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"
# AGI(${CTI_AGI}/route,...) or AGI(agi://host:port/route,...)
_USE = re.compile(r"AGI\(\s*(?:\$\{CTI_AGI\}|agi://[^/,)]+)/([^,)?\s]+)")


def used_routes() -> set[str]:
    routes: set[str] = set()
    for conf in DIALPLANS.glob("*.conf"):
        for line in conf.read_text().splitlines():
            code = line.split(";", 1)[0]
            routes.update(m.group(1) for m in _USE.finditer(code))
    return routes


def registered_routes() -> set[str]:
    """What the features register when the daemon sets them up (real context objects;
    nothing connects until started)."""
    explicit: list[Feature] = [IvrFeature(), QualityFeature()]  # before entry points install
    names = {f.name for f in explicit}
    features = [f for f in load_features() if f.name not in names] + explicit
    settings = Settings(asterisk={"log_dir": "/nonexistent", "etc_dir": "/nonexistent"})
    server = FastAgiServer(port=0)
    db = Database.from_url("sqlite+aiosqlite://")
    ctx = FeatureContext(
        settings=settings, bus=EventBus(), db=db, ami=AmiClient("127.0.0.1", 1, "x", "y"),
        app=web.Application(), registry=CollectorRegistry(), services=Services(),
        calls=CallModel(), hub=WsHub(db), agi=server,
    )  # fmt: skip
    for feature in features:
        feature.setup(ctx)
    return set(server.routes)


def test_dialplans_use_agi() -> None:
    assert "ivr" in used_routes()


def test_every_agi_route_has_a_handler() -> None:
    missing = used_routes() - registered_routes()
    assert not missing, f"agi:// routes without a handler: {sorted(missing)}"


def test_no_query_strings_in_agi_urls() -> None:
    for conf in DIALPLANS.glob("*.conf"):
        for line in conf.read_text().splitlines():
            code = line.split(";", 1)[0]
            if "AGI(" in code:
                assert "?" not in code.split("AGI(", 1)[1].split(",", 1)[0], line
