"""The wallboard's live agent detail and alarms in headless Chromium (decision 0026), fed
as the daemon feeds it: the ACD's live model and the statistics get AMI-shaped events
(queue member events to the ACD, call events through the platform's call model onto the
bus). An agent on a call shows whom it talks to (number and 号码归属地), how long it is
in that state (counting on in the page), its calls handled and AHT today; the queue
shows its longest-waiting caller and raises the configured alarms; a hostile caller ID is
shown as text."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page
from prometheus_client import CollectorRegistry

from acd.feature import AcdFeature
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.calls.model import CallModel
from cti.config import AsteriskConfig, Settings
from cti.features import FeatureContext
from cti.services import Services
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.web.app import WebDeps, create_app
from cti.web.auth import ACCOUNTS
from cti.web.ws import WsHub
from stats.feature import StatsFeature
from tests.acceptance.harness import PAGE_PASSWORD, page_errors, sign_in_page, wait_for

Feed = Callable[[str, dict[str, str]], None]
EVIL = "<img src=x onerror=alert(1)>"
IFACE = "Local/101@cti-sim-agents/n"


class _NoCalls:
    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return {"ok": True}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, Feed]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    (tmp_path / "etc").mkdir()
    (tmp_path / "queue_log").write_text("")
    hub = WsHub(db)
    app = create_app(WebDeps(db=db, live=_NoCalls(), registry=CollectorRegistry(), hub=hub))
    ami = AmiClient("127.0.0.1", 1, "x", "y")  # never started: events come from the test
    settings = Settings(
        asterisk=AsteriskConfig(log_dir=tmp_path, etc_dir=tmp_path / "etc"),
        stats={"alarm_waiting": 2, "alarm_longest_wait_s": 600,
               "alarms_by_queue": {"sales": {"waiting": 0}}},
    )  # fmt: skip
    bus, model, services = EventBus(), CallModel(), Services()
    ctx = FeatureContext(
        settings=settings, bus=bus, db=db, ami=ami, app=app,
        registry=CollectorRegistry(), services=services, calls=model, hub=hub,
    )  # fmt: skip
    acd, stats = AcdFeature(), StatsFeature()
    acd.offer(services, db, settings)
    for f in (acd, stats):
        f.setup(ctx)
    await acd.start()
    await stats.start()

    def feed(event: str, headers: dict[str, str]) -> None:
        """One AMI event as the daemon reads it: member events to the ACD, call events
        through the call model onto the bus."""
        msg = {"Event": event, "Timestamp": f"{datetime.now(UTC).timestamp():.6f}", **headers}
        now = datetime.now(UTC)
        acd.live.handle(msg, now)
        for domain_event in model.handle(msg, now):
            bus.publish(domain_event)
        stats.schedule_push()

    await app[ACCOUNTS].create_user(
        "test", {"login": "sup", "password": PAGE_PASSWORD, "role": "supervisor"}
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", feed
    finally:
        await stats.stop()
        await acd.stop()
        await hub.close_all()
        await server.close()
        await db.dispose()


async def open_board(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(locale="en-GB")
    errors = page_errors(page)
    await page.goto(url + "/wallboard/")
    await sign_in_page(page, "sup")
    return page, errors


def member(queue: str, **kw: str) -> dict[str, str]:
    return {"Queue": queue, "Interface": IFACE, "MemberName": "a101", "Penalty": "0",
            "Paused": "0", "Membership": "dynamic", "Status": "1", **kw}  # fmt: skip


def caller(uid: str, number: str) -> dict[str, str]:
    return {"Queue": "support", "Uniqueid": uid, "Linkedid": uid, "Channel": f"PJSIP/t-{uid}",
            "CallerIDNum": number}  # fmt: skip


async def text_of(page: Page, selector: str) -> str:
    loc = page.locator(selector)
    return await loc.inner_text() if await loc.count() else ""


async def test_agent_detail_longest_caller_and_alarms(
    browser: Browser, site: tuple[str, Feed]
) -> None:
    base, feed = site
    page, errors = await open_board(browser, base)
    feed("QueueMemberAdded", member("support"))
    feed("QueueMemberAdded", member("sales"))
    card = "section.queue[data-queue=support]"
    row = f"{card} tr[data-agent=a101]"
    await page.locator(row).wait_for(timeout=10_000)

    # a Beijing caller is put through to a101
    a = {"Interface": IFACE, "MemberName": "a101"}
    feed("QueueCallerJoin", {**caller("c1", "13800138000"), "Position": "1"})
    feed("AgentCalled", {**caller("c1", "13800138000"), **a})
    feed("AgentConnect", {**caller("c1", "13800138000"), **a, "HoldTime": "4"})
    feed("QueueCallerLeave", caller("c1", "13800138000"))

    async def on_call() -> str:
        text = await text_of(page, row)
        return text if "13800138000" in text and "on call" in text else ""

    text = await wait_for(on_call, timeout=10, what="a101 on call with the caller")
    assert "Beijing" in text  # 号码归属地
    first = await text_of(page, f"{row} td.since")
    await asyncio.sleep(2.2)
    later = await text_of(page, f"{row} td.since")
    assert first != later and re.fullmatch(r"\d+:\d\d", later), (first, later)

    # two callers wait (one with a hostile caller ID): the waiting alarm, the longest caller
    feed("QueueCallerJoin", {**caller("c2", "02161234567"), "Position": "1"})
    await asyncio.sleep(1.1)
    feed("QueueCallerJoin", {**caller("c3", EVIL), "Position": "2"})

    async def alarmed() -> str:
        return await text_of(page, f"{card} .alarms [data-alarm=waiting]")

    assert "2 ≥ 2" in await wait_for(alarmed, timeout=10, what="the waiting alarm")
    assert "alarm" in (await page.locator(card).get_attribute("class") or "")
    longest = await text_of(page, f"{card} .longest-caller")
    assert "02161234567" in longest and "Shanghai" in longest, longest
    # sales has the waiting alarm switched off (per-queue setting) and nobody waiting
    assert await text_of(page, "section.queue[data-queue=sales] .alarms") == ""

    # the call ends: handled today 1, AHT = talk (hold and wrap-up none here)
    feed("AgentComplete", {**caller("c1", "13800138000"), **a, "HoldTime": "4",
                           "TalkTime": "30", "Reason": "agent"})  # fmt: skip

    async def handled() -> str:
        text = await text_of(page, f"{row} td.handled")
        return text if text == "1" else ""

    await wait_for(handled, timeout=10, what="the call counted for a101 today")
    assert await text_of(page, f"{row} td.aht") == "0:30"
    assert await page.locator("img").count() == 0  # the hostile caller ID is text

    await page.select_option("#lang", "zh")

    async def chinese() -> str:
        return await text_of(page, f"{card} .alarms")

    assert "排队人数" in await wait_for(chinese, timeout=5, what="the alarm in Chinese")
    assert "上海" in await text_of(page, f"{card} .longest-caller")
    assert errors == []
    await page.close()
