"""Side effects once per cause across nodes (cti.cluster.once), on SQLite and PostgreSQL:

- many concurrent claims of one key from two separate connection pools (two nodes'
  stores): exactly one wins;
- two nodes' missed-call rules (each its own store pool, bus, messenger) get the same
  abandoned call at the same moment, as when two nodes consume one event: the local SMS
  gateway (which checks Aliyun's signature) receives one SMS, and the store holds one
  message for the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from cti.bus import EventBus
from cti.cluster.once import fire_once
from cti.events import CallCompleted, CallRecord
from cti.store.db import Database
from messaging.config import AliyunSmsConfig, MessagingConfig, MissedCallRule, SmsConfig
from messaging.mail import SmtpSender
from messaging.models import Message
from messaging.rules import MissedCallSms
from messaging.service import Messenger
from messaging.sms import AliyunSms
from tests.acceptance.harness import wait_for
from tests.acceptance.sms_gateway import KEY_ID, SECRET, Gateway, sms_gateway


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with sms_gateway() as gw:
        yield gw


async def test_one_claim_wins_among_concurrent_nodes(db: Database, db_url: str) -> None:
    other = Database.from_url(db_url)  # a second node's own pool
    try:
        claims = [
            fire_once(node, "missed_call", "srv-a-1700000000.1")
            for _ in range(8)
            for node in (db, other)
        ]
        won = await asyncio.gather(*claims)
        assert sum(won) == 1
        assert await fire_once(db, "missed_call", "srv-a-1700000000.2")  # another key
        assert await fire_once(other, "survey", "srv-a-1700000000.1")  # another scope
    finally:
        await other.dispose()


async def test_two_nodes_with_the_same_abandoned_call_send_one_sms(
    db: Database, db_url: str, gateway: Gateway
) -> None:
    config = MessagingConfig(
        sms=SmsConfig(
            provider="aliyun",
            aliyun=AliyunSmsConfig.model_validate(
                {"endpoint": gateway.url, "access_key_id": KEY_ID,
                 "access_key_secret": SECRET, "sign_name": "测试客服"}
            ),
        ),
        missed_call=MissedCallRule(enabled=True, per_number_cooldown_s=0),
    )  # fmt: skip
    other = Database.from_url(db_url)
    nodes: list[tuple[EventBus, Messenger, MissedCallSms, AliyunSms]] = []
    try:
        for store in (db, other):
            sms = AliyunSms(config.sms.aliyun)
            messenger = Messenger(store, config, sms=sms, smtp=SmtpSender(config.smtp))
            rule = MissedCallSms(messenger, config.missed_call, "CN")
            bus = EventBus()
            rule.attach(bus)
            messenger.start()
            rule.start()
            nodes.append((bus, messenger, rule, sms))
        await nodes[0][1].save_template(
            {"name": "missed_call", "channel": "sms", "provider_template": "SMS_200",
             "body": "我们错过了您的来电,稍后回电。"}, None,
        )  # fmt: skip
        now = datetime.now(UTC)
        for i in range(5):
            call = CallCompleted(
                CallRecord(
                    linkedid=f"srv-a-1700000000.{i}", started_at=now, ended_at=now,
                    caller_num=f"1391234567{i}", queue="support", wait_s=12.0,
                    disposition="abandoned",
                )
            )  # fmt: skip
            for bus, *_ in nodes:  # both nodes handle the same call at the same moment
                bus.publish(call)

        async def five() -> bool:
            return len(gateway.accepted) >= 5

        await wait_for(five, timeout=30, what="the missed-call SMS")
        await asyncio.sleep(1.0)  # a second SMS for a call would have arrived by now
        numbers = sorted(f["PhoneNumbers"] for f in gateway.accepted)
        assert numbers == [f"1391234567{i}" for i in range(5)]
        async with db.session() as s:
            rows = await s.scalar(select(func.count()).select_from(Message))
        assert rows == 5
    finally:
        for _, messenger, rule, sms in nodes:
            await rule.stop()
            await messenger.stop()
            await sms.close()
        await other.dispose()
