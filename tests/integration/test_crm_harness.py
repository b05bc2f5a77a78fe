"""Shared CRM test server (no tests here): a CRM feature on a real database behind a real
aiohttp server (127.0.0.1), with tokens for two agents, a supervisor and an admin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from crm_bridge.feature import CrmFeature
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.calls.model import CallModel
from cti.config import Settings
from cti.features import FeatureContext
from cti.services import Services
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub


class _NoLiveCalls:
    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return {"ok": True}


@dataclass
class Crm:
    client: TestClient[Any, Any]
    feature: CrmFeature
    bus: EventBus
    services: Services
    tokens: dict[str, str]
    db: Database

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(self, who: str | None, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers.update(self.auth(who))
        resp = await self.client.request(method, path, headers=headers, **kw)
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.read()


@asynccontextmanager
async def crm_server(
    db: Database,
    crm_section: dict[str, Any] | None = None,
    *,
    sections: dict[str, Any] | None = None,
    features: Sequence[Any] = (),
) -> AsyncIterator[Crm]:
    """``features``: more features set up and started beside the CRM (their config in
    ``sections``)."""
    settings = Settings(crm=crm_section or {}, **(sections or {}))
    bus = EventBus()
    registry = CollectorRegistry()
    hub = WsHub(db)
    app = create_app(WebDeps(db=db, live=_NoLiveCalls(), registry=registry, hub=hub))
    services = Services()
    ctx = FeatureContext(
        settings=settings,
        bus=bus,
        db=db,
        ami=AmiClient("127.0.0.1", 9, "cti", "unused"),
        app=app,
        registry=registry,
        services=services,
        calls=CallModel(),
        hub=hub,
    )
    feature = CrmFeature()
    feature.setup(ctx)
    for other in features:
        other.setup(ctx)
    tokens = {
        "agent1": await create_token(db, "agent1", "agent"),
        "agent2": await create_token(db, "agent2", "agent"),
        "sup": await create_token(db, "sup", "supervisor"),
        "admin": await create_token(db, "admin", "admin"),
    }
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    await feature.start()
    for other in features:
        await other.start()
    try:
        yield Crm(client, feature, bus, services, tokens, db)
    finally:
        for other in reversed(features):
            await other.stop()
        await feature.stop()
        await client.close()
