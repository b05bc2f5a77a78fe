"""The desktop page's panels fed by other features, in real Chromium against the daemon
(ACD + CRM + desktop + quality on the session Asterisk): the agent reads its QA
evaluations and acknowledges one; today's CRM reminders are in its worklist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from quality.feature import QualityFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.test_desktop_browser import open_desk
from tests.acceptance.test_pop import Stack, running_stack

__all__ = ["open_desk", "stack"]  # fixtures

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def stack(asterisk: ChrootAsterisk, db_url: str, ami: AmiClient) -> AsyncIterator[Stack]:
    """The test_pop stack with the quality feature (QA evaluations) added."""
    settings = daemon_settings(asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)})
    async with running_stack(asterisk, settings, ami, QualityFeature()) as s:
        yield s


async def test_agent_reads_and_acknowledges_its_qa_evaluation(stack: Stack, open_desk: Any) -> None:
    status, form = await stack.api("POST", "/api/v1/quality/forms", stack.admin, {
        "name": "Phone manner", "sections": [{"title": "Call", "questions": [
            {"text": "Greets by name", "weight": 1, "max_points": 5}]}],
    })  # fmt: skip
    assert status == 201, form
    evals = []
    for agent, points in (("a301", 4), ("a302", 1)):  # a302's must not show on a301's desk
        status, ev = await stack.api("POST", "/api/v1/quality/evaluations", stack.admin, {
            "form_id": form["id"], "linkedid": f"qa-desk-{agent}", "agent": agent,
            "answers": {"s1q1": points}, "comments": [{"at_s": 3, "text": HOSTILE}],
        })  # fmt: skip
        assert status == 201, ev
        evals.append(ev)
    token = await stack.agent("a301", "301")
    desk = await open_desk(token)
    page = desk.page
    item = f'#qa-list li.qa-item[data-id="{evals[0]["id"]}"]'
    await page.wait_for_selector(item, timeout=10_000)
    assert await page.locator("#qa-list li.qa-item").count() == 1  # only its own
    assert "80" in (await page.text_content(item + " .qa-score") or "")
    assert await page.text_content(item + " .qa-comment") == HOSTILE  # text, not markup
    assert await page.locator("#qa-list img").count() == 0
    await page.click(item + " button.qa-ack")
    await page.wait_for_selector(item + " .qa-acked", timeout=10_000)
    status, row = await stack.api(
        "GET", f"/api/v1/quality/evaluations/{evals[0]['id']}", stack.admin
    )
    assert status == 200 and row["acknowledged_at"], row
    assert desk.errors == [] and desk.dialogs == []


async def test_crm_reminders_in_the_worklist(stack: Stack, open_desk: Any) -> None:
    status, customer = await stack.api(
        "POST", "/api/v1/customers", stack.admin,
        {"name": HOSTILE, "company": "Pearl River Co", "phones": ["13800138111"]},
    )  # fmt: skip
    assert status == 201, customer
    today = datetime.now(UTC).date().isoformat()
    status, lead = await stack.api("POST", "/api/v1/leads", stack.admin, {
        "customer_id": customer["id"], "title": "Renewal 2027", "owner": "a303",
        "follow_up_on": today,
    })  # fmt: skip
    assert status == 201, lead
    token = await stack.agent("a303", "303")
    desk = await open_desk(token)
    page = desk.page
    item = f'#reminders li.reminder[data-kind="follow_up"][data-customer-id="{customer["id"]}"]'
    await page.wait_for_selector(item, timeout=10_000)
    assert await page.text_content(item + " .reminder-customer") == HOSTILE
    assert await page.text_content(item + " .reminder-title") == "Renewal 2027"
    assert await page.locator("#reminders img").count() == 0
    assert desk.errors == [] and desk.dialogs == []
