"""CallRecorder and API tokens on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cti.bus import EventBus
from cti.calls.recorder import CallRecorder, list_calls
from cti.events import CallCompleted, CallRecord
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import ApiToken, Call
from cti.store.tokens import Principal, create_token, revoke_token, verify_token

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)

FULL = CallRecord(
    linkedid="1740821400.42",
    started_at=T0,
    ended_at=T0 + timedelta(seconds=95),
    caller_num="0086-138-0013-8000",
    caller_name="张伟 <b>VIP</b>",
    dnis="4008001234",
    answered_at=T0 + timedelta(seconds=12.5),
    queue="sales",
    agent="PJSIP/1001",
    wait_s=12.5,
    talk_s=80.25,
    disposition="answered",
    hangup_cause="16",
    source="ami",
    legs=("1740821400.42", "1740821400.43"),
)


def _record(i: int, **kw: Any) -> CallRecord:
    return replace(
        FULL, linkedid=f"1740821400.{1000 + i}", started_at=T0 + timedelta(seconds=i), **kw
    )


async def _rows(db: Database) -> list[Call]:
    async with db.session() as session:
        return list((await session.scalars(select(Call).order_by(Call.id))).all())


async def _count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Call)) or 0)


@pytest.fixture
async def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def recorder(db: Database, bus: EventBus) -> AsyncIterator[CallRecorder]:
    rec = CallRecorder(db, default_region="CN", retry_base_s=0.01, retry_max_s=0.05)
    rec.attach(bus)
    await rec.start()
    try:
        yield rec
    finally:
        await rec.close(grace_s=10)


# --- recording ---------------------------------------------------------------------------


async def test_call_completed_becomes_one_row(
    db: Database, bus: EventBus, recorder: CallRecorder
) -> None:
    bus.publish(CallCompleted(FULL))
    await recorder.flush()
    [row] = await _rows(db)
    assert row.linkedid == FULL.linkedid
    assert row.caller_num_raw == "0086-138-0013-8000"
    assert row.caller_num_e164 == "+8613800138000"
    assert row.caller_name == "张伟 <b>VIP</b>"
    assert row.dnis == "4008001234"
    assert row.started_at == T0
    assert row.answered_at == T0 + timedelta(seconds=12.5)
    assert row.ended_at == T0 + timedelta(seconds=95)
    assert row.queue == "sales"
    assert row.agent == "PJSIP/1001"
    assert row.wait_s == 12.5
    assert row.talk_s == 80.25
    assert row.disposition == "answered"
    assert row.hangup_cause == "16"
    assert row.source == "ami"
    assert row.created_at.tzinfo is not None and row.updated_at >= row.created_at
    assert recorder.written == 1
    assert recorder.dropped == recorder.failed == recorder.errors == 0


CDR_LATER = CallRecord(
    linkedid=FULL.linkedid,
    started_at=T0,
    ended_at=T0 + timedelta(seconds=96),
    caller_num="",
    caller_name="",
    queue="",
    answered_at=None,
    wait_s=None,
    talk_s=81.0,
    disposition="unknown",
    hangup_cause="",
    source="cdr",
)


def _assert_merged(row: Call) -> None:
    # kept from the AMI write (the CDR write had them empty)
    assert row.caller_name == FULL.caller_name
    assert row.caller_num_e164 == "+8613800138000"
    assert row.dnis == FULL.dnis
    assert row.queue == "sales"
    assert row.agent == "PJSIP/1001"
    assert row.answered_at == FULL.answered_at
    assert row.wait_s == 12.5
    assert row.disposition == "answered"
    assert row.hangup_cause == "16"
    # non-empty values of the later write win
    assert row.talk_s == 81.0
    assert row.ended_at == T0 + timedelta(seconds=96)
    assert row.source == "cdr"


async def test_same_linkedid_in_two_batches_merges(
    db: Database, bus: EventBus, recorder: CallRecorder
) -> None:
    bus.publish(CallCompleted(FULL))
    await recorder.flush()
    [first] = await _rows(db)
    bus.publish(CallCompleted(CDR_LATER))
    await recorder.flush()
    [row] = await _rows(db)
    _assert_merged(row)
    assert row.id == first.id and row.created_at == first.created_at
    assert recorder.written == 2 and recorder.errors == 0


async def test_same_linkedid_in_one_batch_merges(db: Database, bus: EventBus) -> None:
    rec = CallRecorder(db, default_region="CN")
    rec.attach(bus)
    bus.publish(CallCompleted(FULL))
    bus.publish(CallCompleted(CDR_LATER))
    await rec.start()  # both are taken as one batch
    await rec.close()
    [row] = await _rows(db)
    _assert_merged(row)
    assert rec.errors == 0


async def test_cdr_first_then_ami_fills_in(
    db: Database, bus: EventBus, recorder: CallRecorder
) -> None:
    bus.publish(CallCompleted(CDR_LATER))
    await recorder.flush()
    bus.publish(CallCompleted(FULL))
    await recorder.flush()
    [row] = await _rows(db)
    assert row.caller_name == FULL.caller_name and row.queue == "sales"
    assert row.disposition == "answered" and row.source == "ami"


async def test_burst_of_500_then_close_writes_all(db: Database, bus: EventBus) -> None:
    rec = CallRecorder(db, default_region="CN")
    rec.attach(bus)
    await rec.start()
    for i in range(500):
        bus.publish(CallCompleted(_record(i)))
    assert rec.enqueued == 500 and rec.written == 0  # nothing awaited while publishing
    await rec.close()
    assert await _count(db) == 500
    assert rec.written == 500 and rec.pending == 0
    assert rec.dropped == rec.errors == 0
    # closed: later events are not taken, and closing again is harmless
    bus.publish(CallCompleted(_record(500)))
    assert rec.submit(_record(501)) is False
    await rec.close()
    assert await _count(db) == 500


async def test_publish_never_waits_full_queue_drops(
    db: Database, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    rec = CallRecorder(db, default_region="CN", queue_size=3)
    rec.attach(bus)
    with caplog.at_level(logging.ERROR, logger="cti.worker"):
        for i in range(5):  # worker not started: nothing drains the queue
            assert bus.publish(CallCompleted(_record(i))) is None  # type: ignore[func-returns-value]
    assert (rec.enqueued, rec.dropped) == (3, 2)
    assert "queue full" in caplog.text
    await rec.start()
    await rec.flush()
    assert await _count(db) == 3
    await rec.close()


async def test_hostile_record_values(db: Database, bus: EventBus, recorder: CallRecorder) -> None:
    hostile = replace(
        _record(1),
        caller_num="anonymous",
        caller_name="N" * 64 * 1024,
        dnis="'; DROP TABLE calls; --",
        queue="q\r\nAction: Logoff",
        agent="a\ud800\x00b",
        wait_s=float("nan"),
        talk_s=float("inf"),
        disposition="",
    )
    bus.publish(CallCompleted(hostile))
    bus.publish(CallCompleted(replace(_record(2), linkedid="")))
    bus.publish(CallCompleted(replace(_record(3), linkedid="L" * 65)))
    await recorder.flush()
    [row] = await _rows(db)
    assert row.caller_num_raw == "anonymous" and row.caller_num_e164 == ""
    assert row.caller_name == "N" * 256
    assert row.dnis == "'; DROP TABLE calls; --"
    assert row.queue == "q\r\nAction: Logoff"
    assert row.agent == "a\ufffd\ufffdb"
    assert row.wait_s is None and row.talk_s is None
    assert row.disposition == "unknown"
    assert recorder.rejected == 2 and recorder.failed == 0


async def test_database_outage_keeps_records_until_it_is_back(db_url: str, bus: EventBus) -> None:
    """Not migrated yet = every write fails; the record waits, then lands."""
    db = Database.from_url(db_url)
    rec = CallRecorder(db, default_region="CN", retry_base_s=0.01, retry_max_s=0.05)
    rec.attach(bus)
    await rec.start()
    try:
        bus.publish(CallCompleted(FULL))
        for _ in range(500):
            if rec.errors >= 2:
                break
            await asyncio.sleep(0.01)
        assert rec.errors >= 2
        assert rec.written == 0 and rec.pending == 1
        await asyncio.to_thread(upgrade, db_url)
        async with asyncio.timeout(5):
            await rec.flush()
        assert rec.written == 1 and rec.failed == 0
        [row] = await _rows(db)
        assert row.linkedid == FULL.linkedid
    finally:
        await rec.close(grace_s=5)
        await db.dispose()


async def test_close_gives_up_after_grace_and_names_what_is_lost(
    db_url: str, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database.from_url(db_url)  # never migrated: the database stays "down"
    rec = CallRecorder(db, default_region="CN", retry_base_s=0.01, retry_max_s=0.05)
    rec.attach(bus)
    await rec.start()
    bus.publish(CallCompleted(FULL))
    bus.publish(CallCompleted(_record(1)))
    try:
        with caplog.at_level(logging.ERROR, logger="cti.worker"):
            async with asyncio.timeout(5):
                await rec.close(grace_s=0.2)
    finally:
        await db.dispose()
    assert rec.written == 0
    assert "2 item(s) unhandled" in caplog.text
    assert FULL.linkedid in caplog.text and _record(1).linkedid in caplog.text
    with pytest.raises(RuntimeError, match="unhandled"):
        await rec.flush()


async def test_record_the_database_refuses_is_isolated_and_logged(
    db: Database, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    rec = CallRecorder(db, default_region="CN", retry_base_s=0.01, data_error_attempts=1)
    rec.attach(bus)
    bad = replace(_record(2), started_at=None)  # type: ignore[arg-type]  # NOT NULL
    for record in (_record(1), bad, _record(3)):
        bus.publish(CallCompleted(record))
    with caplog.at_level(logging.ERROR, logger="cti.worker"):
        await rec.start()
        await rec.close(grace_s=10)
    assert rec.written == 2 and rec.failed == 1
    assert bad.linkedid in caplog.text
    assert sorted(r.linkedid for r in await _rows(db)) == [_record(1).linkedid, _record(3).linkedid]


# --- list_calls --------------------------------------------------------------------------


async def test_list_calls_newest_first_paged(
    db: Database, bus: EventBus, recorder: CallRecorder
) -> None:
    for i in (3, 1, 4, 0, 2):  # written out of start order
        bus.publish(CallCompleted(_record(i)))
    await recorder.flush()
    page1 = await list_calls(db, limit=2)
    assert [c["linkedid"] for c in page1] == [_record(4).linkedid, _record(3).linkedid]
    page2 = await list_calls(db, limit=2, before_id=page1[-1]["id"])
    assert [c["linkedid"] for c in page2] == [_record(2).linkedid, _record(1).linkedid]
    page3 = await list_calls(db, limit=2, before_id=page2[-1]["id"])
    assert [c["linkedid"] for c in page3] == [_record(0).linkedid]
    since = await list_calls(db, since=T0 + timedelta(seconds=3))
    assert [c["linkedid"] for c in since] == [_record(4).linkedid, _record(3).linkedid]
    assert await list_calls(db, before_id=10**9) == []
    assert len(await list_calls(db, limit=0)) == 1

    item = page1[0]
    json.dumps(page1)  # JSON-ready
    assert item["started_at"] == (T0 + timedelta(seconds=4)).isoformat()
    assert item["caller_num_e164"] == "+8613800138000"
    assert item["caller_name"] == FULL.caller_name
    assert item["answered_at"] == FULL.answered_at.isoformat()  # type: ignore[union-attr]


# --- API tokens --------------------------------------------------------------------------


async def test_token_create_verify_revoke(db: Database) -> None:
    token = await create_token(db, "alice", "supervisor")
    assert len(token) >= 43
    principal = await verify_token(db, token)
    assert isinstance(principal, Principal)
    assert (principal.name, principal.role) == ("alice", "supervisor")

    async with db.session() as session:
        row = await session.scalar(select(ApiToken))
    assert row is not None
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.name)
    first_use = row.last_used_at
    assert first_use is not None

    assert await verify_token(db, token) == principal  # within a minute: no new write
    async with db.session() as session:
        assert await session.scalar(select(ApiToken.last_used_at)) == first_use

    other = await create_token(db, "bob", "agent")
    assert await revoke_token(db, "alice") == 1
    assert await verify_token(db, token) is None
    assert await revoke_token(db, "alice") == 0
    bob = await verify_token(db, other)
    assert bob is not None and bob.role == "agent"


@pytest.mark.parametrize("bad", ["", "x", "nope" * 100, "tök€n", "\ud800", "' OR '1'='1"])
async def test_token_garbage_is_refused(db: Database, bad: str) -> None:
    await create_token(db, "carol", "admin")
    assert await verify_token(db, bad) is None


@pytest.mark.parametrize("role", ["root", "Admin", "", "agent "])
async def test_token_unknown_role_refused(db: Database, role: str) -> None:
    with pytest.raises(ValueError, match="role"):
        await create_token(db, "mallory", role)
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ApiToken)) == 0


async def test_token_name_required(db: Database) -> None:
    with pytest.raises(ValueError):
        await create_token(db, "  ", "agent")
    with pytest.raises(ValueError):
        await create_token(db, "n" * 129, "agent")
