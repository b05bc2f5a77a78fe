"""The supervisor recordings page in real headless Chromium against the daemon and the
real Asterisk: a live call's Listen button makes ChanSpy spy on it, a finished call's
recording is found by the search and plays in the page with seeking (Range requests on a
signed URL: no token in any URL)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Request

from cti.ami.client import AmiClient
from tests.acceptance.harness import PAGE_PASSWORD, sign_in_page, wait_for
from tests.acceptance.test_recordings import (
    Events,
    RecDaemonFactory,
    agent,
    call_queue,
    rec_daemon,
    settled,
    sim,
    spy_channels,
)

__all__ = ["rec_daemon"]  # the fixture


async def test_page_monitors_live_calls_and_plays_with_seek(
    ami: AmiClient, rec_daemon: RecDaemonFactory, browser: Browser
) -> None:
    from cti.web.auth import ACCOUNTS

    daemon = await rec_daemon()
    assert daemon._runner is not None
    await daemon._runner.app[ACCOUNTS].create_user(
        "test", {"login": "sup1", "password": PAGE_PASSWORD, "role": "supervisor"}
    )
    base = f"http://127.0.0.1:{daemon.http_port}"
    await sim(ami, ring=0.3, talk=8)
    await agent(ami, "101")
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    urls: list[tuple[str, dict[str, str]]] = []

    def on_request(req: Request) -> None:
        urls.append((req.url, req.headers))

    page.on("request", on_request)
    try:
        await page.goto(base + "/supervisor/recordings/")
        await sign_in_page(page, "sup1")
        await page.wait_for_selector("#app:not([hidden])")
        with Events(ami) as events:
            lid = await call_queue(ami)
            connect = await events.wait("AgentConnect", lid)
            row = f'#live-rows tr[data-linkedid="{lid}"]'
            await page.wait_for_selector(row, timeout=10000)
            await page.click(f'{row} button.spy[data-mode="listen"]')

            async def spying() -> list[Any]:
                return [m for m in await spy_channels(ami)
                        if m["ApplicationData"] == f"{connect['DestChannel']},qE"]  # fmt: skip

            [chan] = await wait_for(spying, timeout=15, what="the page's listen spy channel")
            await ami.send_action("Hangup", {"Channel": chan["Channel"]})
            await events.ended(lid)
        [rec] = await settled(daemon, lid)
        assert rec.status == "ready"

        await page.fill("#f-agent", "a101")
        await page.click("#search-form button[type=submit]")
        result = f'#result-rows tr[data-id="{rec.id}"]'
        await page.wait_for_selector(result)
        await page.click(f"{result} button.play")

        async def played() -> bool:
            t = await page.eval_on_selector("#player", "a => a.currentTime")
            return bool(t > 0.5)

        await wait_for(played, timeout=15, what="the page to play the recording")
        await page.eval_on_selector("#player", "a => { a.pause(); a.currentTime = 5; }")

        async def seeked() -> bool:
            state = await page.eval_on_selector(
                "#player", "a => [a.currentTime, a.readyState, a.error && a.error.code]"
            )
            return bool(state[0] >= 5 and state[1] >= 2 and not state[2])

        await wait_for(seeked, timeout=15, what="the player to seek")
        # the listen is in the recording's history, shown in the page
        await page.click(f"{result} button.history")
        await page.wait_for_selector("#audit-panel:not([hidden])")
        history = await page.inner_text("#audit-rows")
        assert "sup1 (supervisor)" in history and "listen" in history, history
    finally:
        await context.close()
    media = [(u, h) for u, h in urls if "/recordings/media/" in u]
    assert media, urls
    # no credential travels in a URL (the session is an HttpOnly cookie)
    assert all("token" not in u and PAGE_PASSWORD not in u for u, _ in urls)
    assert errors == [], errors
