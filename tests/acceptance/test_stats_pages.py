"""The wallboard and reports pages in headless Chromium against the statistics feature
(real HTTP server, websocket hub and store; the data comes from a queue_log file): the
wallboard fills from the websocket snapshot and updates from AMI-shaped events without
polling, the reports page draws the charts (ECharts) and the tables, shows the satisfaction
survey figures and the report by caller region equal to the API's, caller/agent text is
shown as text (never markup), Chinese strings switch in place, no console errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, Request
from prometheus_client import CollectorRegistry

from cti.ami.client import AmiClient
from cti.ami.protocol import Message
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

Inject = Callable[[Message], None]
EVIL = "<img src=x onerror=alert(1)>"


class _NoCalls:
    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return {"ok": True}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, str, StatsFeature, Inject]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    t = [str(int((now + timedelta(seconds=s)).timestamp())) for s in range(0, 60, 5)]
    (tmp_path / "queue_log").write_text(
        f"{t[0]}|p1|support|NONE|ENTERQUEUE||13800138000|1\n"  # Beijing mobile
        f"{t[1]}|p1|support|{EVIL}|CONNECT|5|x|1\n"
        f"{t[3]}|p1|support|{EVIL}|COMPLETEAGENT|5|10|1\n"
        f"{t[4]}|p1|support|NONE|SURVEY|4\n"  # the caller's satisfaction score
        f"{t[5]}|p2|support|NONE|ENTERQUEUE||02161234567|1\n"  # Shanghai landline
        f"{t[6]}|p2|support|NONE|ABANDON|1|1|8\n"
    )
    hub = WsHub(db)
    app = create_app(WebDeps(db=db, live=_NoCalls(), registry=CollectorRegistry(), hub=hub))
    ami = AmiClient("127.0.0.1", 1, "x", "y")  # never started
    settings = Settings(asterisk=AsteriskConfig(log_dir=tmp_path))
    bus, model = EventBus(), CallModel()
    ctx = FeatureContext(
        settings=settings, bus=bus, db=db, ami=ami, app=app,
        registry=CollectorRegistry(), services=Services(), calls=model, hub=hub,
    )  # fmt: skip

    def inject(msg: Message) -> None:
        """An AMI event as the daemon reads it: through the call model onto the bus."""
        for event in model.handle(msg, datetime.now(UTC)):
            bus.publish(event)

    feature = StatsFeature()
    feature.setup(ctx)
    await feature.start()
    await app[ACCOUNTS].create_user(
        "test", {"login": "sup", "password": PAGE_PASSWORD, "role": "supervisor"}
    )
    token = "sup"  # the login the pages sign in with
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", token, feature, inject
    finally:
        await feature.stop()
        await hub.close_all()
        await server.close()
        await db.dispose()


async def signed_in(browser: Browser, url: str, token: str) -> tuple[Page, list[str], list[str]]:
    page = await browser.new_page(locale="en-GB")
    errors = page_errors(page)
    requests: list[str] = []

    def on_request(req: Request) -> None:
        requests.append(req.url)

    page.on("request", on_request)
    await page.goto(url)
    await sign_in_page(page, token)
    return page, errors, requests


def ami_event(text: str) -> Message:
    return Message(tuple(line.split(": ", 1)) for line in text.splitlines())  # type: ignore[misc]


async def test_wallboard_live_without_polling(
    browser: Browser, site: tuple[str, str, StatsFeature, Inject]
) -> None:
    base, token, _, inject = site
    page, errors, requests = await signed_in(browser, base + "/wallboard/", token)
    card = page.locator("section.queue[data-queue=support]")
    await card.wait_for(timeout=10_000)
    assert "Offered" in await card.inner_text()

    async def offered(n: int) -> bool:
        text = await card.inner_text()
        return f"Offered\n{n}" in text or f"Offered\t{n}" in text

    await wait_for(lambda: offered(2), timeout=10, what="today's figures from the snapshot")
    api_calls = len([u for u in requests if "/api/v1/stats" in u])
    # an AMI caller joins: the board shows a third offered call without any request
    inject(ami_event("Event: QueueCallerJoin\nQueue: support\nUniqueid: live1\n"
                     "Linkedid: live1\nChannel: Local/x;2\nPosition: 1"))  # fmt: skip
    await wait_for(lambda: offered(3), timeout=10, what="the frame pushed after an AMI event")
    assert len([u for u in requests if "/api/v1/stats" in u]) == api_calls == 0
    await page.select_option("#lang", "zh")
    await wait_for(lambda: _has(page, "呼入"), timeout=5, what="Chinese labels")
    await _screenshot(page, "wallboard")
    assert errors == []
    await page.close()


async def _screenshot(page: Page, name: str) -> None:
    """CTI_SCREENSHOTS=DIR keeps a picture of each page (for a human look)."""
    where = os.environ.get("CTI_SCREENSHOTS")
    if where:
        await page.screenshot(path=str(Path(where) / f"stats-{name}.png"), full_page=True)


async def _has(page: Page, text: str) -> bool:
    return text in await page.inner_text("body")


async def test_reports_charts_tables_and_escaping(
    browser: Browser, site: tuple[str, str, StatsFeature, Inject]
) -> None:
    base, token, _, _ = site
    page, errors, _ = await signed_in(browser, base + "/reports/", token)
    await wait_for(lambda: _has(page, EVIL), timeout=10, what="the agent table")
    # drawn by ECharts: every hour of the day on the axis, today's two calls in their hour
    volume = await page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('chart-volume')).getOption()"
    )
    assert len(volume["xAxis"][0]["data"]) == 24 and volume["dataZoom"]
    offered, answered, abandoned = (s["data"] for s in volume["series"])
    assert (sum(offered), sum(answered), sum(abandoned)) == (2, 1, 1)
    sl = await page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('chart-sl')).getOption().series[0].data"
    )
    assert len(sl) == 24 and [x for x in sl if x is not None] != []
    assert await page.locator("#chart-volume canvas").count() == 1
    # the wide hourly table scrolls inside its card instead of overflowing it
    fits = await page.evaluate(
        """() => { const panel = document.getElementById('tables').getBoundingClientRect();
                   return [...document.querySelectorAll('#tables .table-wrap')].every(
                     (w) => w.getBoundingClientRect().right <= panel.right + 0.5); }"""
    )
    assert fits
    assert await page.locator("img").count() == 0  # shown as text, never as markup
    tables = await page.locator("#tables h2").all_inner_texts()
    assert len(tables) == 6 and all("CSV" in t for t in tables)
    # the satisfaction survey figures and the report by caller region equal the API's
    day = await page.input_value("#from")
    api = await page.evaluate(
        """async (day) => {
             const q = `from=${day}&to=${day}`;
             const [s, r] = await Promise.all([CTI.api("GET", `/api/v1/stats/summary?${q}`),
                                               CTI.api("GET", `/api/v1/stats/regions?${q}`)]);
             return { total: s.rows.find((x) => x.queue === "*"), regions: r.rows }; }""",
        day,
    )
    assert (api["total"]["survey_count"], api["total"]["survey_avg"]) == (1, 4.0)
    assert await page.inner_text("#survey-count") == str(api["total"]["survey_count"])
    assert await page.inner_text("#survey-avg") == f"{api['total']['survey_avg']:.2f}"
    assert {r["region_en"] for r in api["regions"]} == {"Beijing", "Shanghai"}
    shown = await page.evaluate(
        """() => { const h = [...document.querySelectorAll('#tables h2')]
                     .find((x) => x.textContent.startsWith('By caller region'));
                   const rows = [...h.parentElement.querySelectorAll('tr')].slice(1);
                   return rows.map((tr) => [...tr.cells].map((c) => c.textContent)); }"""
    )
    assert [(r[1], r[2], r[3], r[4]) for r in shown] == [
        (r["region_en"], str(r["offered"]), str(r["answered"]), str(r["abandoned"]))
        for r in api["regions"]
    ]
    regions = await page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('chart-regions')).getOption()"
    )
    assert regions["xAxis"][0]["data"] == [r["region_en"] for r in api["regions"]]
    assert regions["series"][0]["data"] == [r["offered"] for r in api["regions"]]
    await _screenshot(page, "reports")
    assert errors == []
    await page.close()
