"""The desktop page's panels fed by other features, in real Chromium against the daemon
(ACD + CRM + desktop + quality on the session Asterisk): the agent reads its QA
evaluations and acknowledges one; today's CRM reminders are in its worklist.

The campaign tests run on SQLite only (harness.SQLITE_ONLY): the outbound store runs on
PostgreSQL in tests/integration/test_outbound_campaigns.py."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.async_api import Browser

from acd.feature import AcdFeature
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.events import CampaignLeadConnected
from cti.store.tokens import create_token
from messaging.feature import MessagingFeature
from outbound.feature import OutboundFeature
from quality.feature import QualityFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import (
    SQLITE_ONLY,
    free_port,
    originate_call,
    sign_in_page,
    start_sipp_uas,
    wait_for,
)
from tests.acceptance.test_acd import set_sim as acd_set_sim
from tests.acceptance.test_acd import setup_queue
from tests.acceptance.test_desktop_browser import Desk, open_desk
from tests.acceptance.test_outbound_dialer import ALWAYS, CARRIER, write_hello_pcap
from tests.acceptance.test_pop import Stack, running_stack, set_sim

__all__ = ["open_desk", "stack"]  # fixtures

HOSTILE = "<img src=x onerror=alert(1)>"


async def _open(browser: Browser, stack: Stack, token: str) -> Desk:
    """open_desk for a stack of this module's own (the page signed in as the agent)."""
    status, me = await stack.api("GET", "/api/v1/me", token)
    assert status == 200, me
    login = await stack.person(me["name"], "agent", agent=me["name"])
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    desk = Desk(page)
    await page.goto(stack.base + "/desktop/")
    await sign_in_page(page, login)
    await page.wait_for_selector("#conn.open")
    return desk


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


@pytest.fixture
async def outbound_stack(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient
) -> AsyncIterator[Stack]:
    """The test_pop stack with the outbound feature (campaigns, leads, outcomes)."""
    settings = daemon_settings(
        asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
        site={"timezone": "Asia/Shanghai", "default_region": "CN"},
    )  # fmt: skip
    async with running_stack(asterisk, settings, ami, OutboundFeature()) as s:
        yield s


@SQLITE_ONLY
async def test_campaign_lead_pops_and_the_agent_saves_the_outcome(
    outbound_stack: Stack, browser: Browser
) -> None:
    stack = outbound_stack
    status, campaign = await stack.api("POST", "/api/v1/outbound/campaigns", stack.admin, {
        "name": "renewals", "queue": "sales", "mode": "preview",
    })  # fmt: skip
    assert status == 201, campaign
    status, lst = await stack.api(
        "POST", f"/api/v1/outbound/campaigns/{campaign['id']}/lists", stack.admin,
        {"name": "today"},
    )  # fmt: skip
    assert status == 201, lst
    csv = f"phone,name,plan\n13800138051,{HOSTILE},Gold 2027\n".encode()
    async with stack.http.post(
        f"{stack.base}/api/v1/outbound/lists/{lst['id']}/import?phone=phone&name=name&keep=plan",
        data=csv, headers={"Authorization": f"Bearer {stack.admin}"},
    ) as resp:  # fmt: skip
        report = await resp.json()
        assert resp.status == 200 and report["kept"] == 1, report
    store = next(f for f in stack.daemon.features if isinstance(f, OutboundFeature)).store
    assert store is not None
    (lead,) = await store.leads(campaign_id=int(campaign["id"]))
    assert await store.update_lead(lead["id"], None, agent="a304", status="dialing")
    token = await stack.agent("a304", "304")
    desk = await _open(browser, stack, token)
    page = desk.page
    # the dialer's event when the campaign call reaches the agent (outbound/dialer.py)
    stack.daemon.bus.publish(CampaignLeadConnected(
        agent="a304", at=datetime.now(UTC), linkedid="camp-desk-1", campaign="renewals",
        lead_id=lead["id"], number=lead["number"], name=lead["name"], region=lead["region"],
        fields=tuple((str(k), str(v)) for k, v in sorted(lead["data"].items())),
    ))  # fmt: skip
    card = 'article.card[data-linkedid="camp-desk-1"]'
    await page.wait_for_selector(card + " .lead", timeout=10_000)
    assert await page.text_content(card + " .lead-campaign .value") == "renewals"
    assert await page.text_content(card + " .lead-number .value") == "+8613800138051"
    assert "Gold 2027" in (await page.text_content(card + " .lead-fields") or "")
    assert await page.text_content(card + " .lead-name .value") == lead["name"] == HOSTILE
    assert await page.locator(card + " img").count() == 0  # the hostile name is text
    await page.select_option(card + " select.lead-outcome", "not_interested")
    await page.fill(card + " input.lead-note", "has a contract until 2028")
    await page.click(card + " button.lead-save")
    await page.wait_for_selector(card + " .lead-status.ok", timeout=10_000)
    after = await store.lead(lead["id"])
    assert after is not None and after["disposition"] == "not_interested", after
    assert desk.errors == [] and desk.dialogs == []
    await page.context.close()


class Inbox:
    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(email.message_from_bytes(envelope.original_content))
        return "250 OK"


@pytest.fixture
async def messaging_stack(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient
) -> AsyncIterator[tuple[Stack, Inbox]]:
    """The test_pop stack with messaging, e-mail through a real SMTP server (aiosmtpd)."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    smtp = {"host": "127.0.0.1", "port": port, "security": "none",
            "sender": "Service <service@example.cn>"}  # fmt: skip
    settings = daemon_settings(
        asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
        messaging={"smtp": smtp},
    )  # fmt: skip
    try:
        async with running_stack(asterisk, settings, ami, MessagingFeature()) as s:
            yield s, inbox
    finally:
        controller.stop()


async def test_agent_emails_the_callers_customer_from_the_card_and_opt_out_refuses(
    messaging_stack: tuple[Stack, Inbox], ami: AmiClient, browser: Browser
) -> None:
    stack, inbox = messaging_stack
    status, customer = await stack.api(
        "POST", "/api/v1/customers", stack.admin,
        {"name": "王芳", "phones": ["13900139222"], "emails": ["fang@example.cn"]},
    )  # fmt: skip
    assert status == 201, customer
    status, template = await stack.api("POST", "/api/v1/message-templates", stack.admin, {
        "name": "thanks", "channel": "email", "subject": "Thank you",
        "body": "Thank you for your call.",
    })  # fmt: skip
    assert status == 201, template
    token = await stack.agent("a305", "305")
    desk = await _open(browser, stack, token)
    page = desk.page
    await set_sim(ami, ring=2, talk=30)
    linkedid = await originate_call(ami, caller="13900139222", caller_name="Wang", hold_s=40)
    card = f'article.card[data-linkedid="{linkedid}"]'
    await page.wait_for_selector(card + '[data-state="answered"] .customer-name', timeout=30_000)
    await page.click(card + " details.message summary")
    await page.click(card + " button.msg-send")
    await page.wait_for_selector(card + " .msg-status.ok", timeout=10_000)

    async def delivered() -> list[EmailMessage]:
        return inbox.mails

    (mail,) = await wait_for(delivered, timeout=15, what="the e-mail")
    assert mail["To"] == "fang@example.cn" and mail["Subject"] == "Thank you"
    # the customer opts out of e-mail: the next send is refused, and the card says so
    status, body = await stack.api(
        "POST", "/api/v1/opt-outs", stack.admin,
        {"channel": "email", "address": "fang@example.cn", "reason": "asked"},
    )  # fmt: skip
    assert status == 201, body
    await page.click(card + " button.msg-send")
    await page.wait_for_selector(card + " .msg-status.refused", timeout=10_000)
    assert "opted out" in (await page.text_content(card + " .msg-status") or "")
    await asyncio.sleep(1)
    assert len(inbox.mails) == 1
    assert desk.errors == [] and desk.dialogs == []
    await page.context.close()


@SQLITE_ONLY
async def test_a_real_preview_campaign_call_pops_the_lead_on_the_desk(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient, browser: Browser, tmp_path: Path
) -> None:
    """End to end: the agent previews and dials a lead, the SIPp carrier answers, the
    dialer connects the call to the agent and its desktop pops the lead card."""
    port = free_port()
    write_hello_pcap(tmp_path / "hello.pcap")
    sipp = await start_sipp_uas(CARRIER, port, cwd=tmp_path)
    await ami.send_action("Setvar", {"Variable": "CTI_CARRIER_URI",
                                     "Value": f"127.0.0.1:{port}"})  # fmt: skip
    await acd_set_sim(ami, 0, 20)
    settings = daemon_settings(
        asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
        site={"timezone": "Asia/Shanghai", "default_region": "CN"},
    )  # fmt: skip
    try:
        async with running_stack(asterisk, settings, ami, OutboundFeature()) as stack:
            acd = next(f for f in stack.daemon.features if isinstance(f, AcdFeature))
            assert acd.service is not None
            await setup_queue(acd.service, "sales", {"2001": 0}, wrapup_s=0)
            sup = await create_token(stack.daemon.db, "sup", "supervisor")
            status, campaign = await stack.api("POST", "/api/v1/outbound/campaigns", sup, {
                "name": "look", "queue": "sales", "ring_s": 6, "mode": "preview",
                "window": {"days": ALWAYS},
            })  # fmt: skip
            assert status == 201, campaign
            cid = campaign["id"]
            status, lst = await stack.api(
                "POST", f"/api/v1/outbound/campaigns/{cid}/lists", sup, {"name": "today"}
            )
            assert status == 201, lst
            async with stack.http.post(
                f"{stack.base}/api/v1/outbound/lists/{lst['id']}/import?phone=phone&keep=plan",
                data=b"phone,plan\n13800138061,Gold 2027\n",
                headers={"Authorization": f"Bearer {sup}"},
            ) as resp:  # fmt: skip
                assert resp.status == 200, await resp.text()
            status, _ = await stack.api("POST", f"/api/v1/outbound/campaigns/{cid}/start", sup)
            assert status == 200
            token = await create_token(stack.daemon.db, "a2001", "agent")
            desk = await _open(browser, stack, token)
            page = desk.page
            status, body = await stack.api("POST", f"/api/v1/outbound/campaigns/{cid}/next", token)
            assert status == 200, body
            lead = body["lead"]
            status, body = await stack.api(
                "POST", f"/api/v1/outbound/leads/{lead['id']}/dial", token
            )
            assert status == 202, body
            item = f'#pops article.card .lead[data-lead-id="{lead["id"]}"]'
            await page.wait_for_selector(item, timeout=30_000)
            assert await page.text_content(item + " .lead-campaign .value") == "look"
            assert "Gold 2027" in (await page.text_content(item + " .lead-fields") or "")
            assert desk.errors == [] and desk.dialogs == []
            await page.context.close()
    finally:
        await ami.send_action("Setvar", {"Variable": "CTI_CARRIER_URI", "Value": ""})
        if sipp.returncode is None:
            sipp.kill()
        await sipp.wait()
