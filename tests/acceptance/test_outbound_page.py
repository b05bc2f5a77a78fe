"""The outbound page (/outbound/) in real headless Chromium against the daemon: a
supervisor starts a campaign, sees it live and exports its report as CSV; an agent asks
for a lead in preview mode, sees its card and skips it. Customer and campaign text is
shown as text, never as markup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import Browser

from cti.web.auth import ACCOUNTS
from tests.acceptance.harness import PAGE_PASSWORD, sign_in_page, wait_for
from tests.acceptance.test_outbound_dialer import Stack, pytestmark, stack

__all__ = ["pytestmark", "stack"]  # the fixture and the database parametrisation

HOSTILE = '<img src=x onerror="document.title=1">'


async def test_supervisor_runs_a_campaign_and_an_agent_previews_a_lead(
    stack: Callable[..., Awaitable[Stack]], browser: Browser
) -> None:
    s = await stack()
    assert s.daemon._runner is not None
    accounts = s.daemon._runner.app[ACCOUNTS]
    for login, role in (("sup1", "supervisor"), ("a2001", "agent")):
        await accounts.create_user("test", {"login": login, "password": PAGE_PASSWORD,
                                            "role": role})  # fmt: skip
    cid = await s.campaign("spring", ["13800138031"], mode="preview", title=HOSTILE,
                           script=HOSTILE)  # fmt: skip
    base = f"http://127.0.0.1:{s.daemon.http_port}/outbound/"
    errors: list[str] = []
    sup = await browser.new_context(locale="en-GB", accept_downloads=True)
    agent = await browser.new_context(locale="en-GB")
    try:
        page = await sup.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(base)
        await sign_in_page(page, "sup1")
        row = f'#campaign-rows tr[data-id="{cid}"]'
        await page.wait_for_selector(row)
        assert await page.inner_text(f"{row} td:nth-child(2)") == HOSTILE
        assert await page.query_selector("img") is None
        await page.click(f"{row} button.start")

        async def running() -> bool:
            return await page.inner_text(f"{row} td.status") == "running"

        await wait_for(running, timeout=10, what="the campaign shown running")
        await page.click(f"{row} button.view")
        await page.wait_for_selector("#live-figures [data-figure=due]")
        assert await page.inner_text("#live-figures [data-figure=due] dd") == "1"
        await page.wait_for_selector("#report-rows tr.total")
        async with page.expect_download() as info:
            await page.click("#report-csv")
        download = await info.value
        path = await download.path()
        assert path is not None
        text = path.read_text()
        assert text.startswith("day,attempts,dialled,") and "total,0,0," in text

        mine = await agent.new_page()
        mine.on("pageerror", lambda exc: errors.append(str(exc)))
        await mine.goto(base)
        await sign_in_page(mine, "a2001")
        await mine.wait_for_selector("#app:not([hidden])")
        assert await mine.is_hidden("#campaigns-panel")  # agents do not run campaigns
        await mine.wait_for_selector(f'#my-campaign option[value="{cid}"]', state="attached")
        await mine.click("#next-lead")
        await mine.wait_for_selector("#lead-card:not([hidden])")
        assert await mine.inner_text("#lead-number") == "+8613800138031"
        assert await mine.inner_text("#lead-region") == "北京市"
        assert await mine.inner_text("#lead-script") == HOSTILE
        assert await mine.query_selector("img") is None
        await mine.click("#lead-skip")
        await mine.wait_for_selector("#lead-card", state="hidden")
        (lead,) = await s.store.leads(campaign_id=cid)
        assert lead["status"] == "retry" and lead["last_outcome"] == "skipped"
        assert await page.title() != "1" and await mine.title() != "1"
    finally:
        await sup.close()
        await agent.close()
    assert errors == [], errors
