"""Health endpoints for a load balancer, over a real socket: /livez answers while the
process serves; /readyz is 200 for a node that can take clients (a standby included) and
503 naming why not (database gone, broker link down, shutting down); /healthz keeps saying
whether the node's Asterisk link is up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from cti.store.db import Database
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from tests.local_http import serving


class Node:
    def __init__(self) -> None:
        self.state: dict[str, object] = {"ok": True, "role": "driver", "draining": False}

    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return dict(self.state)


@pytest.fixture
async def node(db: Database) -> AsyncIterator[tuple[str, Node, Database]]:
    live = Node()
    hub = WsHub(db)
    app = create_app(WebDeps(db=db, live=live, registry=CollectorRegistry(), hub=hub))
    async with serving(app) as base:
        yield base, live, db


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_a_ready_node_and_a_standby_are_ready(node: tuple[str, Node, Database]) -> None:
    base, live, _ = node
    assert await get(f"{base}/livez") == (200, {"ok": True})
    assert await get(f"{base}/readyz") == (200, {"ready": True, "problems": [], "role": "driver"})
    live.state.update(ok=True, role="standby", bus={"kind": "nats", "connected": True})
    status, body = await get(f"{base}/readyz")
    assert (status, body["role"]) == (200, "standby")


async def test_not_ready_says_why(node: tuple[str, Node, Database]) -> None:
    base, live, _ = node
    live.state.update(bus={"kind": "nats", "connected": False}, draining=True)
    status, body = await get(f"{base}/readyz")
    assert status == 503
    assert body["problems"] == ["broker", "draining"]
    live.state.update(bus={"kind": "in-process"}, draining=False, ok=False)
    status, body = await get(f"{base}/healthz")
    assert status == 503  # the Asterisk link is down ...
    assert (await get(f"{base}/livez"))[0] == 200  # ... the process lives
    assert (await get(f"{base}/readyz"))[0] == 200  # ... and serves its clients


async def test_a_node_without_its_database_is_not_ready() -> None:
    gone = Database.from_url("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    app = create_app(WebDeps(db=gone, live=Node(), registry=CollectorRegistry(), hub=WsHub(gone)))
    async with serving(app) as base:
        status, body = await get(f"{base}/readyz")
        assert (status, body["problems"]) == (503, ["database"])
        await gone.dispose()
