"""The CRM feature behind a real HTTP server for the page tests (no tests here): a real
store (SQLite or PostgreSQL, the ``db`` fixture), accounts that sign in on the pages
(``agent1``, ``agent2``, ``sup``, ``admin``, password :data:`PAGE_PASSWORD`) and the
same people as bearer tokens for direct API calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page
from prometheus_client import CollectorRegistry

from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.calls.model import CallModel
from cti.config import Settings
from cti.features import FeatureContext
from cti.services import Services
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.auth import ACCOUNTS
from cti.web.ws import WsHub
from tests.acceptance.harness import PAGE_PASSWORD, page_errors, sign_in_page

PEOPLE = {"agent1": "agent", "agent2": "agent", "sup": "supervisor", "admin": "admin"}


class _NoCalls:
    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return {"ok": True}


@dataclass
class Site:
    base: str
    db: Database
    bus: EventBus
    services: Services
    features: list[Any]
    tokens: dict[str, str]
    http: aiohttp.ClientSession

    async def call(self, who: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.read()

    async def ok(self, who: str, method: str, path: str, **kw: Any) -> Any:
        status, data = await self.call(who, method, path, **kw)
        assert status < 300, (status, data)
        return data


@asynccontextmanager
async def crm_site(
    db: Database, features: list[Any], sections: dict[str, Any] | None = None
) -> AsyncIterator[Site]:
    hub = WsHub(db)
    app = create_app(WebDeps(db=db, live=_NoCalls(), registry=CollectorRegistry(), hub=hub))
    bus, services = EventBus(), Services()
    ctx = FeatureContext(
        settings=Settings(**(sections or {})), bus=bus, db=db,
        ami=AmiClient("127.0.0.1", 9, "x", "y"), app=app, registry=CollectorRegistry(),
        services=services, calls=CallModel(), hub=hub,
    )  # fmt: skip
    for f in features:
        f.setup(ctx)
    for f in features:
        await f.start()
    for login, role in PEOPLE.items():
        await app[ACCOUNTS].create_user(
            "test", {"login": login, "password": PAGE_PASSWORD, "role": role}
        )
    tokens = {who: await create_token(db, who, role) for who, role in PEOPLE.items()}
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    try:
        yield Site(f"http://127.0.0.1:{server.port}", db, bus, services, features, tokens, http)
    finally:
        await http.close()
        for f in reversed(features):
            await f.stop()
        await hub.close_all()
        await server.close()


async def open_page(browser: Browser, url: str, login: str) -> tuple[Page, list[str]]:
    """A signed-in page and the list its errors land in (script errors, console errors,
    HTTP answers >= 400)."""
    page = await browser.new_page(locale="en-GB")
    # (a site without the messaging feature answers 404 for a customer's messages: the
    # timeline shows none)
    errors = page_errors(
        page,
        expected=lambda r: (
            r.status == 404
            and ("/api/v1/messages?" in r.url or r.url.endswith("/api/v1/message-templates"))
        ),
    )
    await page.goto(url)
    await sign_in_page(page, login)
    return page, errors
