"""SMS and e-mail in Chromium against the real CRM and messaging features (SQLite and
PostgreSQL): a real SMTP server (aiosmtpd) and a local SMS gateway that verifies Aliyun's
request signature; a template with fields sent from the customer page lands on the
timeline with its delivery status; opt-out honoured; a mass send from the customer list
with its preview count, throttled; a missed (abandoned) call texts the caller within a
minute."""

from __future__ import annotations

import asyncio
import email
import email.header
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import Message as EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.async_api import Browser, Page

from crm_bridge.feature import CrmFeature
from cti.events import CallCompleted, CallRecord, IvrCompleted
from cti.store.db import Database
from messaging.feature import MessagingFeature
from tests.acceptance.crm_site import Site, crm_site, open_page
from tests.acceptance.harness import free_port, wait_for
from tests.acceptance.sms_gateway import KEY_ID, SECRET, Gateway, sms_gateway

EVIL = "<img src=x onerror=alert(1)>"


class Inbox:
    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(email.message_from_bytes(envelope.original_content))
        return "250 OK"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with sms_gateway() as gw:
        yield gw


@pytest.fixture
async def site(db: Database, smtp: tuple[Inbox, int], gateway: Gateway) -> AsyncIterator[Site]:
    sections = {
        "messaging": {
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp[1],
                "security": "none",
                "sender": "Service <service@example.cn>",
            },
            "sms": {
                "provider": "aliyun",
                "aliyun": {
                    "endpoint": gateway.url,
                    "access_key_id": KEY_ID,
                    "access_key_secret": SECRET,
                    "sign_name": "测试客服",
                },
            },
            "missed_call": {"enabled": True, "per_number_cooldown_s": 3600},
            "mass_per_second": 20,
        }
    }
    async with crm_site(db, [CrmFeature(), MessagingFeature()], sections) as s:
        for body in (
            {
                "name": "hello_sms",
                "channel": "sms",
                "provider_template": "SMS_100",
                "body": "您好 {name},我是 {agent},请回电。",
            },
            {
                "name": "hello_mail",
                "channel": "email",
                "subject": "Hello {name}",
                "body": "Dear {name} of {company},\n{agent} will call you.\n{{not a field}}",
            },
            {
                "name": "missed_call",
                "channel": "sms",
                "provider_template": "SMS_200",
                "body": "{name}您好,我们错过了您的来电,稍后回电。",
            },
        ):
            await s.ok("sup", "POST", "/api/v1/message-templates", json=body)
        yield s


async def _statuses(site: Site, customer_id: int) -> list[tuple[str, str]]:
    data = await site.ok("agent1", "GET", "/api/v1/messages", params={"customer_id": customer_id})
    return [(m["channel"], m["status"]) for m in data["messages"]]


async def test_sms_and_email_from_the_customer_page_on_the_timeline(
    browser: Browser, site: Site, smtp: tuple[Inbox, int], gateway: Gateway
) -> None:
    inbox = smtp[0]
    c = await site.ok(
        "agent1",
        "POST",
        "/api/v1/customers",
        json={
            "name": "王小明",
            "company": EVIL,
            "phones": ["138 0013 8000"],
            "emails": ["xiaoming@example.cn"],
        },
    )
    page, errors = await open_page(
        browser, site.base + f"/crm/customer.html?id={c['id']}", "agent1"
    )
    await page.locator("#msg-form").wait_for()
    await page.locator("#msg-template").select_option(label="hello_sms (SMS)")
    await page.click("#msg-form button[type=submit]")
    await page.locator("#timeline li.message .status", has_text="sent").wait_for(timeout=10_000)
    sms = gateway.accepted[-1]
    assert sms["PhoneNumbers"] == "13800138000" and sms["TemplateCode"] == "SMS_100"
    timeline = await page.locator("#timeline li.message").first.inner_text()
    assert "您好 王小明,我是 agent1,请回电。" in timeline
    # the handset's receipt, asked of the gateway: delivered
    messenger = site.features[1].messenger
    assert await messenger.poll_receipts() == 1
    await page.reload()
    await page.locator("#timeline li.message .status", has_text="delivered").wait_for()
    await page.locator("#msg-template").select_option(label="hello_mail (E-mail)")
    await page.click("#msg-form button[type=submit]")
    await wait_for(
        lambda: _has(page, "Hello 王小明"), timeout=10, what="the e-mail on the timeline"
    )
    await wait_for(lambda: _sent(site, c["id"], 1), timeout=10, what="the e-mail sent")
    await page.locator("#timeline li.message .status", has_text="queued").wait_for(state="detached")
    [mail] = inbox.mails
    subject = email.header.make_header(email.header.decode_header(mail["Subject"]))
    assert str(subject) == "Hello 王小明"
    body = mail.get_payload(decode=True).decode().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert f"Dear 王小明 of {EVIL},\nagent1 will call you.\n{{not a field}}" in body
    assert mail["To"] == "xiaoming@example.cn"
    assert await page.locator("img").count() == 0
    # opted out: recorded, never sent
    await site.ok(
        "agent1",
        "POST",
        "/api/v1/opt-outs",
        json={"channel": "email", "address": "XiaoMing@example.cn"},
    )
    await page.click("#msg-form button[type=submit]")
    await page.locator("#timeline li.message .status", has_text="opted_out").wait_for()
    await asyncio.sleep(0.5)
    assert len(inbox.mails) == 1
    # another agent's customer: no sending to it, no reading its messages
    status, _ = await site.call(
        "agent2", "GET", "/api/v1/messages", params={"customer_id": c["id"]}
    )
    assert status == 404
    assert errors == []
    await page.close()


async def _has(page: Page, text: str) -> bool:
    return text in await page.inner_text("#timeline")


async def _sent(site: Site, customer_id: int, n: int) -> bool:
    return [s for _, s in await _statuses(site, customer_id)].count("sent") == n


async def test_mass_send_preview_count_throttled_and_opt_out(
    browser: Browser, site: Site, gateway: Gateway
) -> None:
    ids = []
    for i in range(6):
        c = await site.ok(
            "sup",
            "POST",
            "/api/v1/customers",
            json={"name": f"Mass {i}", "tags": ["spring"], "phones": [f"1390000000{i}"]},
        )
        ids.append(c["id"])
    await site.ok(
        "sup", "POST", "/api/v1/customers", json={"name": "Mass no phone", "tags": ["spring"]}
    )
    await site.ok(
        "sup", "POST", "/api/v1/customers", json={"name": "Other", "phones": ["13700000009"]}
    )
    await site.ok(
        "sup", "POST", "/api/v1/opt-outs", json={"channel": "sms", "address": "+8613900000003"}
    )
    page, errors = await open_page(browser, site.base + "/crm/", "sup")
    await page.locator("#mass-panel").wait_for()
    await page.fill("#tag", "spring")
    await page.click("#filters button[type=submit]")
    await page.locator("#rows tr").nth(6).wait_for()
    await page.locator("#mass-template").select_option(label="hello_sms (SMS)")
    await page.click("#mass-preview")
    await page.locator("#mass-state", has_text="to send: 5").wait_for()
    text = await page.locator("#mass-state").inner_text()
    assert "opted out: 1" in text and "no address: 1" in text
    started = datetime.now(UTC)
    await page.click("#mass-send")
    await page.locator("#mass-state", has_text="Batch").wait_for()
    batch_id = await page.locator("#mass-state").get_attribute("data-batch")

    async def done() -> bool:
        b = await site.ok("sup", "GET", f"/api/v1/messages/batches/{batch_id}")
        return b["sent"] == 5

    await wait_for(done, timeout=20, what="the batch sent")
    took = (datetime.now(UTC) - started).total_seconds()
    assert took >= 4 / 20  # 20 a second: five messages need at least 0.2 s
    numbers = sorted(f["PhoneNumbers"] for f in gateway.accepted)
    assert numbers == [f"1390000000{i}" for i in (0, 1, 2, 4, 5)]
    assert await _statuses(site, ids[3]) == [("sms", "opted_out")]
    assert errors == []
    await page.close()


async def test_missed_calls_text_the_caller_within_a_minute(site: Site, gateway: Gateway) -> None:
    c = await site.ok(
        "sup", "POST", "/api/v1/customers", json={"name": "李四", "phones": ["13912345678"]}
    )
    now = datetime.now(UTC)
    abandoned = CallRecord(
        linkedid="m1",
        started_at=now,
        ended_at=now,
        caller_num="13912345678",
        queue="support",
        wait_s=12.0,
        disposition="abandoned",
    )
    site.bus.publish(CallCompleted(abandoned))
    site.bus.publish(CallCompleted(abandoned))  # a replay sends nothing more
    # after hours, an unknown caller: texted too, on no customer's timeline
    site.bus.publish(
        IvrCompleted(
            linkedid="m2",
            at=now,
            dnis="400",
            caller_num="+8613700000001",
            channel="PJSIP/x",
            path=("main",),
            action="hangup",
            target="",
            reason="closed",
        )
    )
    answered = CallRecord(
        linkedid="m3",
        started_at=now,
        ended_at=now,
        caller_num="13600000000",
        disposition="answered",
    )
    site.bus.publish(CallCompleted(answered))

    async def two() -> bool:
        return len(gateway.accepted) == 2

    await wait_for(two, timeout=60, what="the missed-call SMS")
    assert sorted(f["PhoneNumbers"] for f in gateway.accepted) == ["13700000001", "13912345678"]
    assert {f["TemplateCode"] for f in gateway.accepted} == {"SMS_200"}
    await wait_for(lambda: _sent_sup(site, c["id"]), timeout=10, what="on the timeline")
    # the same number again within the cooldown: nothing
    site.bus.publish(
        CallCompleted(
            CallRecord(
                linkedid="m4",
                started_at=now,
                ended_at=now,
                caller_num="+8613912345678",
                wait_s=30.0,
                disposition="abandoned",
            )
        )
    )
    await asyncio.sleep(1.0)
    assert len(gateway.accepted) == 2


async def _sent_sup(site: Site, customer_id: int) -> bool:
    data = await site.ok("sup", "GET", "/api/v1/messages", params={"customer_id": customer_id})
    return [(m["reason"], m["status"]) for m in data["messages"]] == [("missed_call", "sent")]
