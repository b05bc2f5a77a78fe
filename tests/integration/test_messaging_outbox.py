"""The outbox (messaging.service), on SQLite and PostgreSQL, against the local Aliyun SMS
gateway (tests/acceptance/sms_gateway.py, which checks every request's signature):

- a missed-call SMS claimed and queued by a node that stops before sending (killed
  between the commit and the send), and one a dead node left ``sending``, are sent by
  another node (its own store pool), each exactly once; the stale one only after
  ``sending_stale_s``;
- two senders draining the same queue at once send every message once;
- a gateway that keeps failing is tried ``attempts`` times, then the message is
  ``failed`` with the gateway's answer as the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from cti.bus import EventBus
from cti.events import CallCompleted, CallRecord
from cti.store.db import Database
from messaging.config import AliyunSmsConfig, MessagingConfig, MissedCallRule, SmsConfig
from messaging.mail import SmtpSender
from messaging.models import Message, Template
from messaging.rules import MissedCallSms
from messaging.service import Messenger
from messaging.sms import AliyunSms
from tests.acceptance.harness import wait_for
from tests.acceptance.sms_gateway import KEY_ID, SECRET, Gateway, sms_gateway


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with sms_gateway() as gw:
        yield gw


def _config(gw: Gateway, **outbox: float) -> MessagingConfig:
    return MessagingConfig(
        sms=SmsConfig(
            provider="aliyun",
            aliyun=AliyunSmsConfig.model_validate(
                {"endpoint": gw.url, "access_key_id": KEY_ID,
                 "access_key_secret": SECRET, "sign_name": "测试客服"}
            ),
        ),
        missed_call=MissedCallRule(enabled=True, per_number_cooldown_s=0),
        **outbox,
    )  # fmt: skip


async def _template(messenger: Messenger) -> Template:
    await messenger.save_template(
        {"name": "missed_call", "channel": "sms", "provider_template": "SMS_200",
         "body": "我们错过了您的来电,稍后回电。"}, None,
    )  # fmt: skip
    t = await messenger.template_by_name("missed_call")
    assert t is not None
    return t


def _abandoned(linkedid: str, caller: str) -> CallCompleted:
    now = datetime.now(UTC)
    return CallCompleted(
        CallRecord(
            linkedid=linkedid, started_at=now, ended_at=now, caller_num=caller,
            queue="support", wait_s=12.0, disposition="abandoned",
        )
    )  # fmt: skip


async def _rows(db: Database) -> list[Message]:
    async with db.session() as s:
        return list((await s.scalars(select(Message).order_by(Message.id))).all())


async def test_a_claimed_sms_of_a_node_that_died_is_sent_by_another_once(
    db: Database, db_url: str, gateway: Gateway
) -> None:
    config = _config(gateway, sending_stale_s=1.0, outbox_poll_s=0.2)
    sms_a, sms_b = AliyunSms(config.sms.aliyun), AliyunSms(config.sms.aliyun)
    # node A: its rule claims and queues; its sender never runs (killed before sending)
    a = Messenger(db, config, sms=sms_a, smtp=SmtpSender(config.smtp), node="a")
    rule_a = MissedCallSms(a, config.missed_call, "CN")
    bus_a = EventBus()
    rule_a.attach(bus_a)
    rule_a.start()
    other = Database.from_url(db_url)  # node B's own pool
    b = Messenger(other, config, sms=sms_b, smtp=SmtpSender(config.smtp), node="b")
    rule_b = MissedCallSms(b, config.missed_call, "CN")
    bus_b = EventBus()
    rule_b.attach(bus_b)
    try:
        await _template(a)
        bus_a.publish(_abandoned("srv-a-1.1", "13912345670"))
        bus_a.publish(_abandoned("srv-a-1.2", "13912345671"))

        async def queued() -> bool:
            return len(await _rows(db)) == 2

        await wait_for(queued, timeout=10, what="both SMS queued by node A")
        await rule_a.stop()
        first, second = await _rows(db)
        assert (first.status, second.status) == ("queued", "queued")
        # A claimed the second and died before the gateway took it
        # (the clock starts before the claim: the claim stamps its time before it waits for
        # the store, so a clock started after it returns runs late by that wait)
        claimed_at = time.monotonic()
        claimed = await a.claim(second.id)
        assert claimed is not None and claimed.claimed_by.startswith("a:")
        assert gateway.accepted == []

        # node B starts: it sends the queued one at once and takes the other over once stale
        rule_b.start()
        b.start()
        for call in (
            _abandoned("srv-a-1.1", "13912345670"),
            _abandoned("srv-a-1.2", "13912345671"),
        ):
            bus_b.publish(call)  # B handles the same calls: claimed already, nothing new

        async def sent(n: int) -> bool:
            return len(gateway.accepted) >= n

        await wait_for(lambda: sent(1), timeout=10, what="the queued SMS sent by node B")
        assert gateway.accepted[0]["PhoneNumbers"] == "13912345670"
        await wait_for(lambda: sent(2), timeout=10, what="the stale SMS taken over by node B")
        assert time.monotonic() - claimed_at >= 1.0  # not before sending_stale_s
        await asyncio.sleep(0.6)  # three more polls of B: nothing is sent twice
        assert [f["PhoneNumbers"] for f in gateway.accepted] == ["13912345670", "13912345671"]
        rows = await _rows(db)
        assert [(m.status, m.linkedid, m.attempts) for m in rows] == [
            ("sent", "srv-a-1.1", 1),
            ("sent", "srv-a-1.2", 2),
        ]
        assert all(m.claimed_by.startswith("b:") and m.provider_id for m in rows)
    finally:
        await rule_b.stop()
        await b.stop()
        await sms_a.close()
        await sms_b.close()
        await other.dispose()


async def test_two_senders_draining_one_queue_send_each_message_once(
    db: Database, db_url: str, gateway: Gateway
) -> None:
    config = _config(gateway, outbox_poll_s=0.2)
    queuer = Messenger(db, config, sms=None, smtp=SmtpSender(config.smtp))
    template = await _template(queuer)
    numbers = [f"+86139000000{i:02d}" for i in range(16)]
    for n in numbers:
        await queuer.send_to_number(n, template, by="test", reason="manual")
    other = Database.from_url(db_url)
    gateways = [AliyunSms(config.sms.aliyun) for _ in range(2)]
    senders = [
        Messenger(store, config, sms=sms, smtp=SmtpSender(config.smtp))
        for store, sms in zip((db, other), gateways, strict=True)
    ]
    try:
        for s in senders:
            s.start()

        async def all_sent() -> bool:
            return all(m.status == "sent" for m in await _rows(db))

        await wait_for(all_sent, timeout=20, what="every message sent")
        await asyncio.sleep(0.5)  # more polls of both: nothing is sent again
        assert sorted(f["PhoneNumbers"] for f in gateway.accepted) == [n[3:] for n in numbers]
        assert {m.attempts for m in await _rows(db)} == {1}
    finally:
        for s in senders:
            await s.stop()
        for sms in gateways:
            await sms.close()
        await other.dispose()


async def test_a_failing_gateway_is_retried_then_the_message_fails_with_the_reason(
    db: Database, gateway: Gateway
) -> None:
    config = _config(gateway)
    sms = AliyunSms(config.sms.aliyun)
    messenger = Messenger(db, config, sms=sms, smtp=SmtpSender(config.smtp), retry_s=0.01)
    try:
        template = await _template(messenger)
        gateway.fail_with = 503
        queued = await messenger.send_to_number(
            "+8613912345678", template, by="test", reason="manual"
        )
        assert queued is not None and queued["status"] == "queued"
        await asyncio.wait_for(messenger.flush(), 10)
        [row] = await _rows(db)
        assert (row.status, row.error) == ("failed", "SmsError: gateway answered 503")
        assert gateway.failed == messenger.attempts == 3 and gateway.accepted == []
        await asyncio.wait_for(messenger.flush(), 10)  # a failed message is not tried again
        assert gateway.failed == 3
    finally:
        await sms.close()
