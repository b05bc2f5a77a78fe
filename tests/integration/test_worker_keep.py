"""What a graceful stop cannot drain in its bound is kept in the store and handled at the
next start, once (cti.pending with cti.worker's ``keep``), on SQLite and PostgreSQL:
the statistics facts, crm_bridge's interaction writer, the ACD's lost callers and the
call recorder, the missed-call SMS rule, each against its real tables. A worker with a
journal keeps its items in the store while it runs, so that a process that dies without
a stop loses none of them (beyond the last interval)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

import acd.lost as lost_module
from acd.lost import LostCallers
from acd.models import LostCallerRow
from crm_bridge import interactions
from crm_bridge.interactions import Interactions, InteractionWriter
from crm_bridge.models import CallAgent, Interaction
from crm_bridge.store import CrmStore
from cti.bus import EventBus
from cti.calls.recorder import CallRecorder
from cti.events import CallAnswered, CallCompleted, CallOffered, CallRecord, IvrCompleted
from cti.pending import PendingStore
from cti.store.db import Database
from cti.store.models import Call, PendingItem
from cti.worker import QueueWorker
from messaging import rules
from messaging.config import AliyunSmsConfig, MessagingConfig, MissedCallRule, SmsConfig
from messaging.mail import SmtpSender
from messaging.models import Message
from messaging.rules import MissedCallSms
from messaging.service import Messenger
from messaging.sms import AliyunSms
from stats.feature import Fact
from stats.models import LinkRow
from stats.store import StatsStore
from tests.acceptance.sms_gateway import KEY_ID, SECRET, sms_gateway

N = 40
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


async def count(db: Database, model: type[object]) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_stop_keeps_what_it_could_not_write_and_the_next_start_writes_it(
    db: Database,
) -> None:
    store = StatsStore(db, ZoneInfo("UTC"))
    gate = asyncio.Event()  # the store is slow: only the first 5 links get through in time
    stuck = asyncio.Event()  # the writer holds the 6th link
    seen: list[str] = []

    async def write(facts: Sequence[Fact]) -> None:
        for f in facts:
            seen.append(f.uniqueid)
            if len(seen) > 5:
                stuck.set()
                await gate.wait()
            await store.add_link(f.uniqueid, f.linkedid)

    facts = [Fact("link", f"L{i}", f"U{i}") for i in range(N)]
    first: QueueWorker[Fact] = QueueWorker(
        "stats-facts", write, batch_size=3, keep=PendingStore(db, Fact)
    )
    first.start()
    for f in facts:
        assert first.submit(f)
    await asyncio.wait_for(stuck.wait(), 30)  # however loaded the machine, 5 are written
    await first.close(grace_s=0.5)  # the stop's bound runs out with the 6th link in hand
    # kept: the batch in hand (links 4 to 6; 4 and 5 are written already) and the queue
    assert first.kept == N - 3
    assert await count(db, LinkRow) == 5
    assert await count(db, PendingItem) == N - 3

    gate.set()  # the next start: the store is quick again
    second: QueueWorker[Fact] = QueueWorker(
        "stats-facts", write, batch_size=3, keep=PendingStore(db, Fact)
    )
    other: QueueWorker[Fact] = QueueWorker("other", write, keep=PendingStore(db, Fact))
    assert await other.resume() == 0  # a worker takes back only its own items
    assert await second.resume() == N - 3
    second.start()
    await second.flush()
    await second.close()
    async with db.session() as s:
        rows = dict((await s.execute(select(LinkRow.uniqueid, LinkRow.linkedid))).all())
    assert rows == {f.uniqueid: f.linkedid for f in facts}  # every link, once
    assert await count(db, PendingItem) == 0
    # taken back in order; links 4 and 5 written again, harmlessly (insert-or-ignore)
    assert seen == [f"U{i}" for i in range(6)] + [f"U{i}" for i in range(3, N)]


async def until(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, f"not in {timeout} s: {what}"
        await asyncio.sleep(0.02)


async def die(worker: QueueWorker[Fact]) -> None:
    """The process dies: the worker's tasks end where they are, no stop runs (nothing
    more reaches the store); what it had in memory is gone with it."""
    await worker._tasks.stop()
    await worker._journal_task.stop()


async def test_a_worker_with_a_journal_loses_nothing_when_its_process_dies(
    db: Database,
) -> None:
    stuck = asyncio.Event()  # the dependency is away: the first item never gets through
    seen: list[str] = []

    async def away(facts: Sequence[Fact]) -> None:
        stuck.set()
        await asyncio.Event().wait()

    async def write(facts: Sequence[Fact]) -> None:
        seen.extend(f.uniqueid for f in facts)

    facts = [Fact("link", f"L{i}", f"U{i}") for i in range(N)]
    first: QueueWorker[Fact] = QueueWorker(
        "stats-facts", away, keep=PendingStore(db, Fact), journal_s=0.05
    )
    first.start()
    assert all(first.submit(f) for f in facts)  # in memory only, at once

    async def all_in_the_store() -> bool:
        return await count(db, PendingItem) == N

    await until(all_in_the_store, f"{N} items journaled")  # within journal_s, one write
    await stuck.wait()
    await die(first)

    second: QueueWorker[Fact] = QueueWorker(
        "stats-facts", write, batch_size=7, keep=PendingStore(db, Fact), journal_s=0.05
    )
    assert await second.resume() == N  # read back; the rows stay until handled
    assert await count(db, PendingItem) == N
    second.start()
    await second.flush()
    assert seen == [f.uniqueid for f in facts]  # every item, once, in order

    async def store_empty() -> bool:
        return await count(db, PendingItem) == 0

    await until(store_empty, "the handled items' rows deleted")  # while it runs
    assert second.submit(Fact("link", "late", "late"))  # handled before its write:
    await second.flush()
    await second.close()  # ... never in the store
    assert await count(db, PendingItem) == 0 and second.kept == 0


class Counted(PendingStore[Fact]):
    """The real store, counting the journal's transactions."""

    writes = 0

    async def write(self, *args: Any, **kwargs: Any) -> list[int]:
        self.writes += 1
        return await super().write(*args, **kwargs)


async def test_a_journal_whose_items_are_handled_before_their_turn_writes_nothing(
    db: Database,
) -> None:
    """With a dependency that answers, items are handled before the interval ends: the
    journal opens no transaction for them (the store sees nothing)."""
    seen: list[str] = []

    async def write(facts: Sequence[Fact]) -> None:
        seen.extend(f.uniqueid for f in facts)

    keep = Counted(db, Fact)
    w: QueueWorker[Fact] = QueueWorker("stats-facts", write, keep=keep, journal_s=0.05)
    w.start()
    for i in range(N):
        w.submit(Fact("link", f"L{i}", f"U{i}"))
        await w.flush()  # handled at once
    await asyncio.sleep(0.2)  # four intervals
    await w.close()
    assert len(seen) == N and keep.writes == 0


async def test_a_stop_of_a_worker_with_a_journal_keeps_what_is_unhandled_once(
    db: Database,
) -> None:
    """Its stop leaves in the store what is queued or in hand, written or not yet, one
    row each, and nothing of what was handled."""
    gate = asyncio.Event()
    seen: list[str] = []

    async def slow(facts: Sequence[Fact]) -> None:
        seen.extend(f.uniqueid for f in facts)
        if len(seen) > 3:
            await gate.wait()

    first: QueueWorker[Fact] = QueueWorker(
        "stats-facts", slow, keep=PendingStore(db, Fact), journal_s=0.05
    )
    first.start()
    for i in range(N // 2):
        first.submit(Fact("link", f"L{i}", f"U{i}"))

    async def written() -> bool:
        return await count(db, PendingItem) == N // 2 - 3

    await until(written, "the unhandled items journaled, the handled ones gone")
    for i in range(N // 2, N):  # submitted just before the stop: not written yet
        first.submit(Fact("link", f"L{i}", f"U{i}"))
    await first.close(grace_s=0.1)
    assert first.kept == N - 3
    second: QueueWorker[Fact] = QueueWorker(
        "stats-facts", slow, keep=PendingStore(db, Fact), journal_s=0.05
    )
    gate.set()
    assert await second.resume() == N - 3
    second.start()
    await second.flush()
    await second.close()
    # the 4th was in hand at the stop: handled again (the handler is idempotent)
    assert seen == [f"U{i}" for i in range(4)] + [f"U{i}" for i in range(3, N)]
    assert await count(db, PendingItem) == 0


async def test_kept_items_are_equal_to_the_submitted_ones(db: Database) -> None:
    keep: PendingStore[object] = PendingStore(db, Fact)
    at = datetime(2026, 11, 29, 15, 0, 1, 250000, tzinfo=UTC)
    record = CallRecord(linkedid="x-1", started_at=at, ended_at=at, caller_num="+3312",
                        caller_name="Zoë 张", disposition="abandoned", queue="sales")  # fmt: skip
    items: list[object] = [Fact("held", "x-1", "x-2", at, "", ""), record]
    await keep.save("w", items)
    assert await keep.take("w") == items
    assert await keep.take("w") == []


def call(i: int, disposition: str, num: str = "") -> CallRecord:
    at = T0 + timedelta(minutes=i)
    answered = at + timedelta(seconds=5) if disposition == "answered" else None
    return CallRecord(
        f"L{i}", at, at + timedelta(seconds=60), caller_num=num or f"1380013{i:04d}",
        answered_at=answered, queue="sales", agent="a1" if answered else "",
        wait_s=5.0, talk_s=55.0 if answered else None, disposition=disposition,
    )  # fmt: skip


async def test_crm_interactions_left_at_a_stop_are_written_at_the_next_start(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(interactions, "STOP_GRACE_S", 0.0)  # the bound runs out at once
    bus = EventBus()
    writer = InteractionWriter(Interactions(CrmStore(db, "CN")))
    writer.attach(bus)
    await writer.start()
    for i in range(30):
        lid = f"L{i}"
        bus.publish(IvrCompleted(lid, T0, "4008001234", "+8613800138000", "PJSIP/trunk-1",
                                 ("main", "sales"), "queue", "sales", "choice"))  # fmt: skip
        bus.publish(CallOffered(lid, T0, "sales", "Local/1@x", "a1", "13800138000"))
        bus.publish(CallAnswered(lid, T0 + timedelta(seconds=5), "sales", "Local/1@x", "a1", 5))
        bus.publish(CallCompleted(call(i, "answered")))
    await writer.stop()
    assert writer.worker.kept > 0 and writer.dropped == 0

    again = InteractionWriter(Interactions(CrmStore(db, "CN")))
    await again.start()
    await again.flush()
    await again.stop()
    async with db.session() as s:
        rows = (await s.execute(select(Interaction))).scalars().all()
        agents = (await s.execute(select(CallAgent.linkedid, CallAgent.agent))).all()
    assert sorted(str(r.linkedid) for r in rows) == sorted(f"L{i}" for i in range(30))  # once
    assert all(r.outcome == "answered" and r.ended_at is not None for r in rows)
    assert all(r.ivr_path == "main>sales" and r.agent == "a1" for r in rows)
    assert sorted(agents) == sorted((f"L{i}", "a1") for i in range(30))
    assert await count(db, PendingItem) == 0


async def test_lost_callers_left_at_a_stop_are_listed_at_the_next_start(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lost_module, "STOP_GRACE_S", 0.0)
    lost = LostCallers(db, "CN")
    await lost.start()
    for i in range(30):
        lost.on_completed(CallCompleted(call(i, "abandoned")))
    lost.on_completed(CallCompleted(call(40, "answered", num=call(0, "x").caller_num)))
    await lost.stop()
    assert lost.worker.kept > 0 and lost.dropped == 0

    again = LostCallers(db, "CN")
    await again.start()
    await again.flush()
    await again.stop()
    async with db.session() as s:
        rows = (await s.execute(select(LostCallerRow))).scalars().all()
    assert sorted(r.linkedid for r in rows) == sorted(f"L{i}" for i in range(30))  # once each
    closed = {r.linkedid: r.closed_linkedid for r in rows if r.closed_at is not None}
    assert closed == {"L0": "L40"}  # the later answered call closed its number, in order
    assert await count(db, PendingItem) == 0


async def test_call_records_left_at_a_stop_are_written_at_the_next_start(db: Database) -> None:
    bus = EventBus()
    recorder = CallRecorder(db, default_region="CN", batch_size=7)
    recorder.attach(bus)
    await recorder.start()
    for i in range(50):
        bus.publish(CallCompleted(call(i, "abandoned" if i % 2 else "answered")))
    await recorder.close(grace_s=0)  # the bound runs out at once
    assert recorder.worker.kept > 0 and recorder.dropped == 0

    again = CallRecorder(db, default_region="CN")
    await again.start()
    await again.flush()
    await again.close()
    async with db.session() as s:
        rows = dict((await s.execute(select(Call.linkedid, Call.disposition))).all())
    assert rows == {f"L{i}": "abandoned" if i % 2 else "answered" for i in range(50)}
    assert await count(db, PendingItem) == 0


async def test_missed_call_sms_left_at_a_stop_are_queued_at_the_next_start(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "STOP_GRACE_S", 0.0)
    async with sms_gateway() as gw:
        config = MessagingConfig(
            sms=SmsConfig(
                provider="aliyun",
                aliyun=AliyunSmsConfig.model_validate(
                    {"endpoint": gw.url, "access_key_id": KEY_ID,
                     "access_key_secret": SECRET, "sign_name": "测试客服"}
                ),
            ),
            missed_call=MissedCallRule(enabled=True, per_number_cooldown_s=0),
        )  # fmt: skip
        messenger = Messenger(db, config, sms=AliyunSms(config.sms.aliyun),
                              smtp=SmtpSender(config.smtp), node="a")  # fmt: skip
        await messenger.save_template(
            {"name": "missed_call", "channel": "sms", "provider_template": "SMS_200",
             "body": "我们错过了您的来电"}, None,
        )  # fmt: skip
        bus = EventBus()
        rule = MissedCallSms(messenger, config.missed_call, "CN")
        rule.attach(bus)
        rule.start()
        for i in range(20):
            bus.publish(CallCompleted(call(i, "abandoned")))
        await rule.stop()  # the messenger's sender never runs: the messages stay queued
        assert rule.worker.kept > 0 and rule.worker.dropped == 0

        again = MissedCallSms(messenger, config.missed_call, "CN")
        await again.resume()
        again.start()
        await again.worker.flush()
        await again.stop()
        async with db.session() as s:
            sent = (await s.execute(select(Message.linkedid))).scalars().all()
        assert sorted(sent) == sorted(f"L{i}" for i in range(20))  # one SMS per call
        assert await count(db, PendingItem) == 0
