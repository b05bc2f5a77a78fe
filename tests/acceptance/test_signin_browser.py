"""Signing in on the pages in real headless Chromium (issue #15): a password signs in and
a wrong one is refused; a session that expires, a user who is disabled, close the open
desktop (its websocket ends at once and the page asks to sign in again); a change of
what the session may see (a team) reconnects the desktop, still signed in; a state-changing
request from another origin, or without the session's CSRF token, is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, WebSocket
from sqlalchemy import update

from cti.daemon import Daemon
from cti.store.models import User, WebSession, utcnow
from cti.store.tokens import create_token
from tests.acceptance.harness import (
    PAGE_PASSWORD,
    settings_without_asterisk,
    sign_in_page,
    wait_for,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Site:
    def __init__(self, daemon: Daemon, admin: str) -> None:
        self.daemon = daemon
        self.admin = admin
        self.base = f"http://127.0.0.1:{daemon.http_port}"

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(
            method, self.base + path, json=body,
            headers={"Authorization": f"Bearer {self.admin}"},
        ) as resp:  # fmt: skip
            return resp.status, await resp.json()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = settings_without_asterisk(f"sqlite:///{tmp_path / 'cti.db'}", tmp_path)
    daemon = Daemon(settings)
    await daemon.start()
    s = Site(daemon, await create_token(daemon.db, "ops", "admin"))
    status, body = await s.api("PUT", "/api/v1/acd/agents/agent101",
                               {"devices": [{"kind": "local", "address": "101"}]})  # fmt: skip
    assert status == 200, body
    anna = {"login": "anna", "password": PAGE_PASSWORD, "role": "agent", "agent": "agent101"}
    status, body = await s.api("POST", "/api/v1/users", anna)
    assert status == 201, body
    yield s
    await daemon.stop()


async def open_desktop(browser: Browser, site: Site, **context: Any) -> Page:
    ctx = await browser.new_context(locale="en-GB", **context)
    page = await ctx.new_page()
    await page.goto(site.base + "/desktop/")
    await page.wait_for_selector("#signin:not([hidden])")
    return page


async def test_password_signs_in_and_a_wrong_one_is_refused(browser: Browser, site: Site) -> None:
    page = await open_desktop(browser, site)
    await sign_in_page(page, "anna", "not the password")
    await page.wait_for_selector("#signin-error:has-text('wrong login or password')")
    assert await page.is_hidden("#app")
    await sign_in_page(page, "anna")
    await page.wait_for_selector("#app:not([hidden])")
    await page.wait_for_selector("#conn.open")  # the websocket rides on the session cookie
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "cti_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # the page cannot read it
    # a reload keeps the session; signing out ends it
    await page.reload()
    await page.wait_for_selector("#app:not([hidden])")
    await page.click("#signout")
    await page.wait_for_selector("#signin:not([hidden])")
    _, entries = await site.api("GET", "/api/v1/audit?action=auth.")
    actions = [e["action"] for e in entries["entries"]]
    assert actions[:3] == ["auth.sign_out", "auth.sign_in", "auth.sign_in_failed"]
    await page.context.close()


async def test_an_expired_session_closes_the_open_desktop(browser: Browser, site: Site) -> None:
    page = await open_desktop(browser, site)
    await sign_in_page(page, "anna")
    await page.wait_for_selector("#conn.open")
    async with site.daemon.db.session() as s, s.begin():  # an hour without use
        await s.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(hours=2)))
    # the hub's sweep ends the websocket; the page asks to sign in again
    await page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    assert "session ended" in await page.inner_text("#signin-error")
    await page.reload()
    await page.wait_for_selector("#signin:not([hidden])")
    await page.context.close()


async def test_a_disabled_users_open_desktop_is_closed(browser: Browser, site: Site) -> None:
    page = await open_desktop(browser, site)
    await sign_in_page(page, "anna")
    await page.wait_for_selector("#conn.open")
    _, users = await site.api("GET", "/api/v1/users")
    anna = next(u for u in users["users"] if u["login"] == "anna")
    status, _ = await site.api("POST", f"/api/v1/users/{anna['id']}/disable")
    assert status == 200
    await page.wait_for_selector("#signin:not([hidden])", timeout=3_000)  # at once
    await sign_in_page(page, "anna")
    await page.wait_for_selector("#signin-error:has-text('wrong login or password')")
    await page.context.close()


async def test_a_team_change_reconnects_the_open_desktop_with_the_session_kept(
    browser: Browser, site: Site
) -> None:
    """What a session may see changed but the session holds: the websocket closes (4005)
    within the hub's sweep and the page reconnects on its own, still signed in."""
    page = await open_desktop(browser, site)
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    await sign_in_page(page, "anna")
    await page.wait_for_selector("#conn.open")
    assert len(sockets) == 1
    status, body = await site.api("PUT", "/api/v1/teams/north",
                                  {"queues": ["sales"], "members": ["anna"]})  # fmt: skip
    assert status == 200, body

    async def reconnected() -> bool:
        return len(sockets) == 2 and sockets[0].is_closed()

    await wait_for(reconnected, timeout=10, what="the page's second websocket")
    await page.wait_for_selector("#conn.open")
    assert await page.is_hidden("#signin")  # not signed out: the session holds
    await page.context.close()


async def test_a_supervisor_demoted_with_the_wallboard_open_loses_the_wallboard(
    browser: Browser, site: Site
) -> None:
    """A role changed outside the accounts code (an operator's SQL: the session holds):
    the websocket closes (4005), the page reconnects, sees the new role in the hello and
    loads itself again, which refuses the wallboard to an agent."""
    status, body = await site.api("POST", "/api/v1/users", {"login": "sam", "password":
                                  PAGE_PASSWORD, "role": "supervisor"})  # fmt: skip
    assert status == 201, body
    ctx = await browser.new_context(locale="en-GB")
    page = await ctx.new_page()
    await page.goto(site.base + "/wallboard/")
    await page.wait_for_selector("#signin:not([hidden])")
    await sign_in_page(page, "sam")
    await page.wait_for_selector("#app:not([hidden])")
    await page.wait_for_selector("#conn:has-text('connected')")
    async with site.daemon.db.session() as s, s.begin():
        await s.execute(update(User).where(User.login == "sam").values(role="agent"))
    await page.wait_for_selector("#app[hidden]", state="attached", timeout=10_000)
    await page.wait_for_selector("#signin:not([hidden])")
    await ctx.close()


ATTACK = """<!doctype html><html><body>
<form id="f" method="post" action="{target}/api/v1/users" enctype="text/plain">
<input name='{{"login":"mallory","password":"mallory password 1","role":"admin","x":"' value='"}}'>
</form>
<script src="attack.js"></script></body></html>"""
ATTACK_JS = """
fetch("{target}/api/v1/users", {{method: "POST", credentials: "include",
  headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{login: "eve", password: "eve password 123", role: "admin"}})}})
  .then((r) => {{ document.title = "fetch:" + r.status; }})
  .catch(() => {{ document.title = "fetch:blocked"; }})
  .finally(() => document.getElementById("f").submit());
"""


async def test_cross_origin_and_tokenless_writes_are_refused(browser: Browser, site: Site) -> None:
    # the attacker's page: same host, another port (same site, so the cookie travels)
    async def attack_page(_: web.Request) -> web.Response:
        return web.Response(text=ATTACK.format(target=site.base), content_type="text/html")

    async def attack_js(_: web.Request) -> web.Response:
        js = ATTACK_JS.format(target=site.base)
        return web.Response(text=js, content_type="application/javascript")

    app = web.Application()
    app.router.add_get("/", attack_page)
    app.router.add_get("/attack.js", attack_js)
    runner = web.AppRunner(app)
    await runner.setup()
    evil = web.TCPSite(runner, "127.0.0.1", 0)
    await evil.start()
    evil_port = evil._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        status, _ = await site.api("POST", "/api/v1/users", {
            "login": "boss", "password": PAGE_PASSWORD, "role": "admin"})  # fmt: skip
        assert status == 201
        page = await open_desktop(browser, site, bypass_csp=True)
        await sign_in_page(page, "boss")
        await page.wait_for_selector("#app:not([hidden])")
        # same origin, but without the session's CSRF token: refused
        answer = await page.evaluate("""async () => {
            const r = await fetch("/api/v1/users", {method: "POST", credentials: "same-origin",
              headers: {"Content-Type": "application/json"},
              body: JSON.stringify({login: "trudy", password: "trudy password 1", role: "admin"})});
            return [r.status, (await r.json()).code];
        }""")
        assert answer == [403, "csrf"]
        # another origin: its form post and its fetch carry the cookie, and are refused
        responses: list[tuple[str, int]] = []
        page.on("response", lambda r: responses.append((r.url, r.status)))
        await page.goto(f"http://127.0.0.1:{evil_port}/")
        await page.wait_for_load_state("networkidle")
        refused = [s for u, s in responses if u.endswith("/api/v1/users")]
        assert refused and all(s == 403 for s in refused), responses
        _, users = await site.api("GET", "/api/v1/users")
        logins = {u["login"] for u in users["users"]}
        assert logins.isdisjoint({"mallory", "eve", "trudy"}), logins
        await page.context.close()
    finally:
        await runner.cleanup()
