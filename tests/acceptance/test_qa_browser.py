"""QA scoring in headless Chromium (decision 0026), against the real HTTP app, store and
recordings feature: a supervisor defines a form, plays a call's recording and scores it
with a comment stamped at the playback position; a second reviewer scores the same call;
the report by agent and the calibration view show both; the agent sees its evaluations
(comments as text, never markup) and acknowledges one. Scores equal the form's formula
computed here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page
from prometheus_client import CollectorRegistry

from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.calls.model import CallModel
from cti.config import AsteriskConfig, Settings
from cti.features import FeatureContext
from cti.services import Services
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.auth import ACCOUNTS
from cti.web.ws import WsHub
from quality.feature import QualityFeature
from recordings.feature import RecordingsFeature
from recordings.models import Recording
from tests.acceptance.conftest import write_tone
from tests.acceptance.harness import PAGE_PASSWORD, page_errors, sign_in_page, wait_for

EVIL = "<img src=x onerror=alert(1)>"
LINKEDID = "qa-call-1"
REL = f"2026/11/29/cti-20261129T080000-{LINKEDID}-1.wav"  # the recordings' naming


class _NoCalls:
    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return {"ok": True}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, Database, int]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    root = tmp_path / "monitor"
    (root / REL).parent.mkdir(parents=True)
    write_tone(root / REL, 440.0, seconds=6.0, rate=8000)
    hub = WsHub(db)
    app = create_app(WebDeps(db=db, live=_NoCalls(), registry=CollectorRegistry(), hub=hub))
    settings = Settings(
        asterisk=AsteriskConfig(log_dir=tmp_path), recordings={"root": str(root)},
    )  # fmt: skip
    ctx = FeatureContext(
        settings=settings, bus=EventBus(), db=db, ami=AmiClient("127.0.0.1", 1, "x", "y"),
        app=app, registry=CollectorRegistry(), services=Services(), calls=CallModel(), hub=hub,
    )  # fmt: skip
    features: list[QualityFeature | RecordingsFeature] = [QualityFeature(), RecordingsFeature()]
    for f in features:
        f.setup(ctx)
    for f in features:
        await f.start()
    async with db.session() as s, s.begin():
        rec = Recording(
            linkedid=LINKEDID, agent="a101", queue="support", started_at=datetime.now(UTC),
            duration_s=6.0, format="wav", path=REL, status="ready",
        )  # fmt: skip
        s.add(rec)
        await s.flush()
        rec_id = int(rec.id)
    for login, role in (("sup1", "supervisor"), ("sup2", "supervisor"), ("a101", "agent")):
        await app[ACCOUNTS].create_user("test", {"login": login, "password": PAGE_PASSWORD,
                                                 "role": role})  # fmt: skip
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", db, rec_id
    finally:
        for f in features:
            await f.stop()
        await hub.close_all()
        await server.close()
        await db.dispose()


async def open_page(browser: Browser, url: str, login: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(locale="en-GB")
    errors = page_errors(page)
    await page.goto(url + "/qa/")
    await sign_in_page(page, login)
    return page, errors


def expected(points: dict[str, int]) -> float:
    """The form below: s1q1 weight 2 max 5, s1q2 weight 3 max 5."""
    return round(100 * (2 * points["s1q1"] / 5 + 3 * points["s1q2"] / 5) / 5, 2)


async def test_score_a_call_calibrate_and_the_agent_acknowledges(
    browser: Browser, site: tuple[str, Database, int]
) -> None:
    base, db, rec_id = site
    page, errors = await open_page(browser, base, "sup1")
    await page.locator("#supervisor").wait_for(timeout=10_000)
    await page.fill("#form-name", "Service 服务")
    await page.fill("#form-section", "Greeting")
    await page.fill("#form-questions", "Greets by name | 2 | 5\nSolves the problem | 3 | 5")
    await page.click("#form-create")
    await page.locator("#ev-form option").first.wait_for(state="attached", timeout=10_000)

    # score the call while its recording plays; a comment stamped at 2.5 s in
    await page.fill("#ev-linkedid", LINKEDID)
    await page.fill("#ev-agent", "a101")
    await page.fill("#ev-recording", str(rec_id))
    await page.click("#ev-load")
    await page.locator("#ev-questions select").nth(1).wait_for(timeout=10_000)

    async def playable() -> bool:
        return bool(await page.evaluate("document.getElementById('ev-audio').readyState >= 1"))

    try:
        await wait_for(playable, timeout=10, what="the recording loaded")
    except AssertionError:
        src = await page.evaluate(
            f"CTI.api('POST', '/api/v1/recordings/{rec_id}/play-url').catch(e => String(e.message))"
        )
        raise AssertionError(f"audio {src!r} not loaded: {errors}") from None
    duration = await page.evaluate("document.getElementById('ev-audio').duration")
    assert 5.5 < duration < 6.5, duration  # the real file, through play-url
    await page.evaluate("document.getElementById('ev-audio').currentTime = 2.5")
    await page.fill("#ev-comment", f"Warm greeting {EVIL}")
    await page.click("#ev-add-comment")
    await page.select_option("#ev-questions select[data-question=s1q1]", "4")
    await page.select_option("#ev-questions select[data-question=s1q2]", "5")
    await page.click("#ev-submit")
    first = expected({"s1q1": 4, "s1q2": 5})

    async def scored() -> str:
        return await page.inner_text("#ev-result")

    shown = await wait_for(scored, timeout=10, what="the score shown")
    assert float(shown.split(":")[1]) == first, shown

    # a second reviewer scores the same call (API)
    token = await create_token(db, "sup2", "supervisor")
    async with aiohttp.ClientSession() as http:
        forms = await (
            await http.get(
                f"{base}/api/v1/quality/forms", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
        form_id = forms["forms"][0]["id"]
        body: dict[str, Any] = {"form_id": form_id, "linkedid": LINKEDID, "agent": "a101",
                                "recording_id": rec_id, "answers": {"s1q1": 2, "s1q2": 5},
                                "comments": [{"at_s": 4.0, "text": "Name not used"}]}  # fmt: skip
        resp = await http.post(f"{base}/api/v1/quality/evaluations", json=body,
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert resp.status == 201, await resp.text()
        bad = await http.post(f"{base}/api/v1/quality/evaluations",
                              json={**body, "answers": {"s1q1": 9, "s1q2": 5}},
                              headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert bad.status == 400  # more points than the question has
    second = expected({"s1q1": 2, "s1q2": 5})

    # report by agent and the calibration view
    await page.click("#rep-show")
    await page.locator("#rep-table tr[data-key=a101]").wait_for(timeout=10_000)
    cells = await page.locator("#rep-table tr[data-key=a101] td").all_inner_texts()
    assert cells[:2] == ["a101", "2"] and float(cells[2]) == round((first + second) / 2, 2), cells
    await page.fill("#cal-linkedid", LINKEDID)
    await page.click("#cal-show")
    await page.locator("#cal-table tr[data-question=s1q1]").wait_for(timeout=10_000)
    q1 = await page.locator("#cal-table tr[data-question=s1q1] td").all_inner_texts()
    assert q1 == ["s1q1", "4", "2", "2"], q1  # each reviewer's points, the spread
    summary = await page.inner_text("#cal-summary")
    assert float(summary.split(":")[1]) == round(first - second, 2), summary
    assert errors == []
    await page.close()

    # the agent sees both, the comments as text, and acknowledges one
    page, errors = await open_page(browser, base, "a101")
    rows = page.locator("#mine-table tr[data-evaluation]")
    await rows.first.wait_for(timeout=10_000)
    assert await rows.count() == 2
    text = await page.inner_text("#mine-table")
    assert f"0:03 Warm greeting {EVIL}" in text  # 2.5 s in, shown as text
    assert await page.locator("#mine-table img").count() == 0
    await page.locator("#mine-table button.ack").first.click()

    async def acknowledged() -> int:
        return await page.locator("#mine-table .acknowledged").count()

    assert await wait_for(acknowledged, timeout=10, what="the acknowledgement") == 1
    agent_token = await create_token(db, "a101", "agent")
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {agent_token}"}
        mine = await (await http.get(f"{base}/api/v1/quality/evaluations", headers=auth)).json()
        assert sum(1 for e in mine["evaluations"] if e["acknowledged_at"]) == 1
        other = await http.get(f"{base}/api/v1/quality/report", headers=auth)
        assert other.status == 403  # reports are for supervisors
    assert errors == []
    await page.close()
