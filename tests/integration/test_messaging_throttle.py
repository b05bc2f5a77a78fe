"""Mass sends are throttled across the cluster, not per node (issue #18), on SQLite and
PostgreSQL:

- senders of two nodes (each its own store pool) taking permits of the shared rate in
  one time slot, ten of them at once, get exactly the slot's capacity between them; the
  next slot has room again;
- two nodes draining one mass send (24 SMS, ``mass_per_second`` 4) through the local
  Aliyun gateway send every SMS once and, together, no faster than 4 a second: the
  gateway's first and last SMS are at least 4 s apart (6 slots of 4; with the rate per
  node, as before, the two nodes took 2.95 s), and both nodes sent some.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from cti.store.db import Database
from messaging.config import AliyunSmsConfig, MessagingConfig, SmsConfig
from messaging.mail import SmtpSender
from messaging.models import Batch, Message, SendSlot
from messaging.service import Messenger
from messaging.sms import AliyunSms
from messaging.throttle import SharedRate
from tests.acceptance.harness import wait_for
from tests.acceptance.sms_gateway import KEY_ID, SECRET, Gateway, sms_gateway


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with sms_gateway() as gw:
        yield gw


async def test_two_nodes_share_each_slots_permits(db: Database, db_url: str) -> None:
    other = Database.from_url(db_url)  # the other node's pool
    now = [1_000_000.25]
    try:
        rates = [SharedRate(store, "mass", 5.0, clock=lambda: now[0]) for store in (db, other)]
        assert await rates[0].take() and await rates[1].take()  # one each, then at once:
        got = await asyncio.gather(*(rates[i % 2].take() for i in range(10)))
        assert sum(got) == 3  # the slot's capacity (5), between both nodes
        assert not await rates[0].take() and not await rates[1].take()
        now[0] += 1.0  # the next slot
        assert await rates[1].take()
        async with db.session() as s:
            used = {r.slot: r.used for r in await s.scalars(select(SendSlot))}
        assert used == {1_000_000: 5, 1_000_001: 1}
        # a slow rate: one send per slot of 1 / rate seconds
        slow = SharedRate(db, "slow", 0.5, clock=lambda: now[0])
        assert (slow.slot_s, slow.capacity) == (2.0, 1)
    finally:
        await other.dispose()


async def test_two_nodes_draining_a_mass_send_keep_the_rate_together(
    db: Database, db_url: str, gateway: Gateway
) -> None:
    config = MessagingConfig(
        sms=SmsConfig(provider="aliyun", aliyun=AliyunSmsConfig.model_validate(
            {"endpoint": gateway.url, "access_key_id": KEY_ID,
             "access_key_secret": SECRET, "sign_name": "测试客服"})),
        mass_per_second=4, outbox_poll_s=0.2,
    )  # fmt: skip
    queuer = Messenger(db, config, sms=None, smtp=SmtpSender(config.smtp))
    await queuer.save_template({"name": "promo", "channel": "sms", "body": "新品上市",
                                "provider_template": "SMS_300"}, None)  # fmt: skip
    template = await queuer.template_by_name("promo")
    assert template is not None
    numbers = [f"+86139000001{i:02d}" for i in range(24)]
    for n in numbers:
        await queuer.send_to_number(n, template, by="test", reason="mass")
    async with db.session() as s, s.begin():  # one mass send (what mass_send records)
        batch = Batch(template_id=template.id, channel="sms", created_by="sup", total=24)
        s.add(batch)
        await s.flush()
        await s.execute(update(Message).values(batch_id=batch.id))
    other = Database.from_url(db_url)
    gateways = [AliyunSms(config.sms.aliyun) for _ in range(2)]
    nodes = [
        Messenger(store, config, sms=sms, smtp=SmtpSender(config.smtp), node=name)
        for store, sms, name in zip((db, other), gateways, ("a", "b"), strict=True)
    ]
    seen: list[float] = []  # when the gateway received each SMS

    async def watch() -> None:
        while True:
            seen.extend([time.monotonic()] * (len(gateway.accepted) - len(seen)))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        for node in nodes:
            node.start()

        async def all_sent() -> bool:
            async with db.session() as s:
                return all(m.status == "sent" for m in await s.scalars(select(Message)))

        await wait_for(all_sent, timeout=30, what="every SMS of the mass send sent")
        await asyncio.sleep(0.05)
        span = seen[-1] - seen[0]
        print(f"mass send across two nodes at 4/s: 24 SMS in {span:.2f} s")
        assert sorted(f["PhoneNumbers"] for f in gateway.accepted) == [n[3:] for n in numbers]
        assert span >= 4.0, span
        async with db.session() as s:
            rows = list(await s.scalars(select(Message)))
        assert {m.attempts for m in rows} == {1}
        assert {m.claimed_by.split(":")[0] for m in rows} == {"a", "b"}  # both sent
    finally:
        watcher.cancel()
        for node in nodes:
            await node.stop()
        for sms in gateways:
            await sms.close()
        await other.dispose()
