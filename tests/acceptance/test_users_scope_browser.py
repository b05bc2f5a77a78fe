"""Decision 0036 in the console, in real headless Chromium: an admin deleting a
supervisor's only team leaves that supervisor seeing nothing — the users table says
"no queue", not "all queues", and their open wallboard reconnects, still signed in, to
the empty scope — and "all queues" is given back only by choosing it in the form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, WebSocket

from cti.daemon import Daemon
from cti.store.tokens import create_token
from tests.acceptance.harness import (
    PAGE_PASSWORD,
    settings_without_asterisk,
    sign_in_page,
    wait_for,
)
from tests.acceptance.test_signin_browser import Site

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

SAM = '#users-table tr[data-login="sam"]'


async def sam(site: Site) -> dict[str, Any]:
    _, body = await site.api("GET", "/api/v1/users")
    return next(u for u in body["users"] if u["login"] == "sam")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """root (admin) and sam, a supervisor whose only team is north (queue sales)."""
    daemon = Daemon(settings_without_asterisk(f"sqlite:///{tmp_path / 'cti.db'}", tmp_path))
    await daemon.start()
    s = Site(daemon, await create_token(daemon.db, "ops", "admin"))
    for login, role in (("root", "admin"), ("sam", "supervisor")):
        person = {"login": login, "password": PAGE_PASSWORD, "role": role}
        status, body = await s.api("POST", "/api/v1/users", person)
        assert status == 201, body
    status, body = await s.api("PUT", "/api/v1/teams/north",
                               {"queues": ["sales"], "members": ["sam"]})  # fmt: skip
    assert status == 200, body
    yield s
    await daemon.stop()


async def signed_in(browser: Browser, site: Site, path: str, login: str) -> Page:
    ctx = await browser.new_context(locale="en-GB")
    page = await ctx.new_page()
    await page.goto(site.base + path)
    await sign_in_page(page, login)
    await page.wait_for_selector("#app:not([hidden])")
    return page


async def test_deleting_a_supervisors_only_team_in_the_console_leaves_them_no_queue(
    browser: Browser, site: Site
) -> None:
    wallboard = await signed_in(browser, site, "/wallboard/", "sam")
    sockets: list[WebSocket] = []
    wallboard.on("websocket", lambda ws: sockets.append(ws))
    await wallboard.reload()
    await wallboard.wait_for_selector("#conn:has-text('connected')")
    console = await signed_in(browser, site, "/console/", "root")
    await console.click("#nav-users")
    await console.wait_for_selector(f"{SAM} td.scope:has-text('Teams: north')")

    team = console.locator('#teams-table tr[data-team="north"] button')
    await team.click()
    await team.click()  # the second click confirms
    await console.wait_for_selector('#teams-table tr[data-team="north"]', state="detached")
    await console.wait_for_selector(f"{SAM} td.scope:has-text('no queue')")
    assert await console.inner_text(f"{SAM} td.scope") == "no queue"  # not "all queues"
    assert (await sam(site))["queues"] == []

    async def reconnected() -> bool:
        return len(sockets) >= 2 and sockets[0].is_closed()

    await wait_for(reconnected, timeout=10, what="the wallboard's second websocket")
    await wallboard.wait_for_selector("#conn:has-text('connected')")
    assert await wallboard.is_hidden("#signin")  # the session holds; the scope is empty

    # the form shows the empty list as such; "all queues" is a choice of its own
    await console.click(f"{SAM} button.edit")
    mode = '#user-form [name="scope_mode"]'
    assert await console.input_value(mode) == "list"
    assert await console.input_value('#user-form [name="queues"]') == ""
    await console.select_option(mode, "all")
    assert await console.is_disabled('#user-form [name="queues"]')
    await console.click("#user-form button[type=submit]")
    await console.wait_for_selector(f"{SAM} td.scope:has-text('all queues')")
    assert (await sam(site))["queues"] is None

    _, audit = await site.api("GET", "/api/v1/audit?action=user.")
    actions = [(e["action"], e["actor"], e["target_id"]) for e in audit["entries"]]
    assert actions[:3] == [("user.update", "root", "sam"), ("user.scope_emptied", "root", "sam"),
                           ("user.create", "ops", "sam")]  # fmt: skip
    await wallboard.context.close()
    await console.context.close()
