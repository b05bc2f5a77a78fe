"""How features plug into the daemon without the platform importing them.

A feature (ivr, acd, recordings, crm_bridge) exposes a class through the ``cti.features``
entry-point group in pyproject.toml. The daemon instantiates each, calls ``setup`` with a
:class:`FeatureContext` before the HTTP server starts (subscribe to the bus, add routes,
offer a service), then ``start``; on shutdown ``stop`` in reverse order. Features talk to
each other only through domain events on the bus and the small service Protocols in
:mod:`cti.services`.

A feature that offers a service other features (or their commands) need without the
daemon running may also define ``offer(services, db, settings)``: it sets its service on
``services`` from the store alone. The daemon calls it before any ``setup``; a command
gets the same services with :func:`offered_services` (``cti stats rebuild`` reads the
ACD's queue thresholds that way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from cti.agi.server import AgiRouter, FastAgiServer
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.calls.model import CallModel
from cti.config import ConfigError, Settings
from cti.services import Services
from cti.store.db import Database
from cti.web.ws import WsHub
from cti.worker import WorkerMetrics

ENTRY_POINT_GROUP = "cti.features"
M = TypeVar("M", bound=BaseModel)


@dataclass
class FeatureContext:
    settings: Settings
    bus: EventBus
    db: Database
    ami: AmiClient
    app: web.Application
    registry: CollectorRegistry
    services: Services
    calls: CallModel
    hub: WsHub  # websocket pushes to desktops / wallboards (cti.web.ws)
    # FastAGI routes (the daemon's server; a fresh unstarted one when built elsewhere)
    agi: AgiRouter = field(default_factory=FastAgiServer)
    # /metrics of the features' queue workers (cti.worker); the daemon's is in its registry
    workers: WorkerMetrics = field(default_factory=WorkerMetrics)

    def section(self, name: str, model: type[M]) -> M:
        """The feature's own ``[name]`` config section, validated by ``model``."""
        raw: Any = (self.settings.model_extra or {}).get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"[{name}] must be a table")
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            lines = [
                f"  {name}.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
            ]
            raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


class Feature(Protocol):
    name: str
    # config sections this feature reads (unknown sections are configuration errors)
    sections: tuple[str, ...]

    def setup(self, ctx: FeatureContext) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def load_features() -> list[Feature]:
    """Instantiate every registered feature, in name order (deterministic)."""
    features: list[Feature] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        cls = ep.load()
        features.append(cls())
    return features


def offer_services(features: list[Feature], services: Services, db: Database, s: Settings) -> None:
    """Let every feature that offers a store-backed service set it (``offer``)."""
    for feature in features:
        offer = getattr(feature, "offer", None)
        if offer is not None:
            offer(services, db, s)


def offered_services(settings: Settings, db: Database) -> Services:
    """The services the registered features offer from the store alone (for commands)."""
    services = Services()
    offer_services(load_features(), services, db, settings)
    return services


def check_sections(settings: Settings, features: list[Feature]) -> None:
    known = {s for f in features for s in f.sections}
    unknown = sorted(set(settings.model_extra or {}) - known)
    if unknown:
        raise ConfigError(
            "invalid configuration:\n"
            + "\n".join(f"  {name}: unknown section (no feature reads it)" for name in unknown)
        )
