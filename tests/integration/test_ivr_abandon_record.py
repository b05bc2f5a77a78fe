"""An IVR abandon marks the call's ``calls`` row (disposition ``ivr_abandon``), on real
SQLite and PostgreSQL, whichever of IvrAbandoned / CallCompleted arrives first, and
idempotently."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cti.bus import EventBus
from cti.calls.recorder import IVR_ABANDON, CallRecorder
from cti.events import CallCompleted, CallRecord, DomainEvent, IvrAbandoned
from cti.store.db import Database
from cti.store.models import Call

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
async def recorder(db: Database) -> AsyncIterator[tuple[EventBus, CallRecorder]]:
    bus = EventBus()
    rec = CallRecorder(db, default_region="CN", batch_size=1)
    rec.attach(bus)
    await rec.start()
    try:
        yield bus, rec
    finally:
        await rec.close()


def _events(linkedid: str) -> tuple[DomainEvent, DomainEvent]:
    completed = CallCompleted(
        CallRecord(
            linkedid=linkedid,
            started_at=T0,
            ended_at=T0 + timedelta(seconds=14),
            caller_num="13800138000",
            dnis="4008001234",
            disposition="hangup",  # what the call model says for an unqueued hang-up
            source="ami",
        )
    )
    abandoned = IvrAbandoned(
        linkedid=linkedid,
        at=T0 + timedelta(seconds=13.9),
        dnis="4008001234",
        caller_num="+8613800138000",
        path=("main",),
        menu="main",
    )
    return completed, abandoned


async def _row(db: Database, linkedid: str) -> tuple[object, ...]:
    async with db.session() as session:
        call = (await session.scalars(select(Call).where(Call.linkedid == linkedid))).one()
    return (
        call.disposition,
        call.started_at,
        call.ended_at,
        call.source,
        call.caller_num_raw,
        call.caller_num_e164,
        call.dnis,
    )


async def test_ivr_abandon_marks_the_row_in_any_order(
    db: Database, recorder: tuple[EventBus, CallRecorder]
) -> None:
    bus, rec = recorder
    rows = []
    orders = [(0, 1), (1, 0), (0, 1, 1, 0), (1, 1, 0, 0)]
    for n, order in enumerate(orders):
        linkedid = f"1772357400.{n}"
        events = _events(linkedid)
        for i in order:
            bus.publish(events[i])
            await rec.flush()  # one at a time: the order is the order written
        rows.append(await _row(db, linkedid))
    expected = (
        IVR_ABANDON,
        T0,
        T0 + timedelta(seconds=14),
        "ami",
        "13800138000",
        "+8613800138000",
        "4008001234",
    )
    assert rows == [expected] * len(orders)


async def test_both_in_one_batch_and_an_ivr_abandon_alone(db: Database) -> None:
    bus = EventBus()
    rec = CallRecorder(db, default_region="CN", batch_size=50)
    rec.attach(bus)
    for n, order in enumerate(itertools.permutations((0, 1))):
        events = _events(f"1772357500.{n}")
        for i in order:
            bus.publish(events[i])
    bus.publish(_events("1772357500.9")[1])  # no CallCompleted (yet): the row exists
    await rec.start()
    await rec.close()
    assert (await _row(db, "1772357500.0"))[0:4] == (await _row(db, "1772357500.1"))[0:4]
    assert (await _row(db, "1772357500.0"))[0] == IVR_ABANDON
    alone = await _row(db, "1772357500.9")
    assert alone[0:4] == (IVR_ABANDON, T0 + timedelta(seconds=13.9), alone[1], "ivr")


async def test_an_answered_call_is_not_marked(
    db: Database, recorder: tuple[EventBus, CallRecorder]
) -> None:
    bus, rec = recorder
    completed, _ = _events("1772357600.1")
    bus.publish(completed)
    await rec.flush()
    assert (await _row(db, "1772357600.1"))[0] == "hangup"
