"""The hot path's writes (Database.write: Core statements compiled once, one transaction on
the writer path's own driver connection, no ORM session) write what the ORM wrote, on
SQLite and PostgreSQL: the same rows with the same values (the columns' defaults filled as
the ORM filled them), all or nothing, the driver's errors raised as SQLAlchemy's (so the
writers' retries judge them as before), on SQLite behind the one writer connection, and on
PostgreSQL past a connection whose server process went away (decision 0027, "Hot-path
writers off the ORM")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from acd.lost import LostCallers
from acd.models import LostCallerRow
from crm_bridge.access import SYSTEM
from crm_bridge.directory import StoreDirectory
from crm_bridge.interactions import Interactions, Offer
from crm_bridge.models import Customer, Interaction
from crm_bridge.schemas import CustomerIn
from crm_bridge.store import CrmStore
from cti.events import CallRecord
from cti.store.db import Database, is_data_error
from cti.store.hot_read import Statement
from cti.store.hot_write import Write, WritePlan, plan_of
from cti.store.models import utcnow
from recordings.models import Recording
from recordings.store import RecordingStore
from stats.models import LinkRow
from stats.store import StatsStore

NOW = datetime(2026, 11, 23, 12, 0, 0, 250_000, tzinfo=UTC)
LINKS = cast(sa.Table, LinkRow.__table__)
ADD_LINK = Write(sa.insert(LINKS), ("uniqueid", "linkedid"))
LINKS_OF = Statement(sa.select(LINKS.c.uniqueid, LINKS.c.linkedid).order_by(LINKS.c.uniqueid))


async def _links(db: Database) -> list[tuple[str, str]]:
    async with db.session() as s:
        return [tuple(r) for r in (await s.execute(sa.select(LINKS.c.uniqueid, LINKS.c.linkedid)))]


def _columns(row: Recording) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in Recording.__table__.columns}


async def test_recording_rows_are_the_rows_the_orm_wrote(db: Database) -> None:
    variants: list[dict[str, Any]] = [
        {"linkedid": "L-full", "uniqueid": "1.1", "channel": "PJSIP/a-1", "agent": "a101",
         "queue": "support", "caller_num": "+8613800138000", "customer_id": 7,
         "customer_name": "张三", "mode": "always", "started_at": NOW, "path": "a/b.wav",
         "node": "n1"},
        {"linkedid": "L-bare", "started_at": NOW},
        {"linkedid": "L-failed", "started_at": NOW, "status": "failed",
         "reason": "MixMonitor: no such channel", "ended_at": NOW + timedelta(seconds=3),
         "duration_s": 2.5, "size_bytes": 10_000},
    ]  # fmt: skip
    before = utcnow()
    async with db.session() as s:
        # a file has one row (uq_recordings_path): the ORM's copy names another file
        orm = [
            Recording(**{**v, "path": f"orm/{v['path']}"} if "path" in v else v) for v in variants
        ]
        s.add_all(orm)
        await s.commit()
    core = await RecordingStore(db)._insert([dict(v) for v in variants])
    after = utcnow()

    async with db.session() as s:
        stored = {r.id: _columns(r) for r in await s.scalars(sa.select(Recording))}
    for o, c in zip(orm, core, strict=True):
        assert c.id not in (o.id, None)
        returned, written, by_orm = _columns(c), stored[c.id], stored[o.id]
        assert returned == written  # the object returned is the row
        for key in ("created_at", "updated_at"):
            assert before <= written[key] <= after
            assert written[key].tzinfo is not None
        for row in (written, by_orm, returned):
            for key in ("id", "created_at", "updated_at"):
                row.pop(key)
        by_orm["path"] = by_orm["path"].removeprefix("orm/")
        assert written == by_orm  # the same values as the ORM's flush wrote


async def test_a_write_is_all_or_nothing_and_raises_sqlalchemys_errors(db: Database) -> None:
    def duplicate() -> WritePlan[None]:
        yield ADD_LINK.many([{"uniqueid": "u1", "linkedid": "l1"}])
        yield ADD_LINK(uniqueid="u1", linkedid="l2")  # the same primary key

    with pytest.raises(IntegrityError) as refused:
        await db.write(duplicate)
    assert is_data_error(refused.value)  # the writers give it up, not retry it forever
    assert await _links(db) == []  # nothing of it kept

    def plan() -> WritePlan[tuple[int, list[tuple[Any, ...]]]]:
        yield ADD_LINK.many([{"uniqueid": f"u{i}", "linkedid": "l1"} for i in range(3)])
        count: int = yield ADD_LINK(uniqueid="u9", linkedid="l9")
        rows: list[tuple[Any, ...]] = yield LINKS_OF()
        return count, rows

    count, rows = await db.write(plan)
    assert count == 1
    assert rows == [("u0", "l1"), ("u1", "l1"), ("u2", "l1"), ("u9", "l9")]
    assert sorted(await _links(db)) == rows

    with pytest.raises(ValueError, match="linkedid"):  # a missing value: a data error
        await db.write(plan_of(ADD_LINK(uniqueid="u10")))
    assert len(await _links(db)) == 4


async def test_onupdate_defaults_are_filled_as_core_fills_them(db: Database) -> None:
    (row,) = await RecordingStore(db)._insert([{"linkedid": "L-1", "started_at": NOW}])
    t = cast(sa.Table, Recording.__table__)
    set_status = Write(
        sa.update(t).where(t.c.id == sa.bindparam("row_id")).values(status=sa.bindparam("st")),
        ("row_id", "st"),
    )

    def plan() -> WritePlan[int]:
        count: int = yield set_status(row_id=row.id, st="processing")
        return count

    before = utcnow()
    count = await db.write(plan)
    assert count == 1
    async with db.session() as s:
        again = await s.get(Recording, row.id)
    assert again is not None and again.status == "processing"
    assert again.updated_at >= before > row.updated_at - timedelta(seconds=1)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_write_waits_for_the_one_writer_connection(db: Database) -> None:
    async with db.session() as s, s.begin():
        await s.execute(sa.insert(LINKS).values(uniqueid="first", linkedid="l"))
        write = asyncio.create_task(db.write(plan_of(ADD_LINK(uniqueid="second", linkedid="l"))))
        await asyncio.sleep(0.1)
        assert not write.done()  # queued behind the session, not beside it
    await write
    assert sorted(await _links(db)) == [("first", "l"), ("second", "l")]


async def test_in_memory_a_write_joins_the_session_holding_the_one_connection() -> None:
    """In memory every session shares the one connection (tests, tools): a write while a
    session's transaction is open is written with it, not refused."""
    db = Database.from_url("sqlite://")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(LINKS.create)
        await db.write(plan_of(ADD_LINK.many([])))  # nothing to write: nothing written
        async with db.session() as s, s.begin():
            await s.execute(sa.insert(LINKS).values(uniqueid="first", linkedid="l"))
            await db.write(plan_of(ADD_LINK(uniqueid="second", linkedid="l")))

        def rows() -> WritePlan[list[tuple[Any, ...]]]:
            found: list[tuple[Any, ...]] = yield LINKS_OF()
            return found

        assert await db.write(rows) == [("first", "l"), ("second", "l")]
        with pytest.raises(IntegrityError):
            await db.write(plan_of(ADD_LINK(uniqueid="first", linkedid="l2")))
        assert sorted(await _links(db)) == [("first", "l"), ("second", "l")]
    finally:
        await db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_connection_whose_server_process_went_away_is_given_up(db: Database) -> None:
    pid_of = Statement(sa.select(sa.func.pg_backend_pid()))

    def pid() -> WritePlan[int]:
        rows = yield pid_of()
        return int(rows[0][0])

    pids = set(await asyncio.gather(*(db.write(pid) for _ in range(3))))
    async with db.reader.connect() as other:
        for each in pids:
            await other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": each})
    await asyncio.sleep(0.2)
    failed = 0
    for i in range(len(pids) + 1):  # each broken connection fails one write, then goes
        try:
            await db.write(plan_of(ADD_LINK(uniqueid=f"u{i}", linkedid="l")))
        except DBAPIError as exc:
            assert not is_data_error(exc)  # retried by the writers, not given up
            failed += 1
    assert failed <= len(pids)
    await db.write(plan_of(ADD_LINK(uniqueid="last", linkedid="l")))
    assert ("last", "l") in await _links(db)


async def test_channel_links_keep_the_first_linkedid_of_a_channel(db: Database) -> None:
    store = StatsStore(db, ZoneInfo("UTC"))
    await store.add_links([("u1", "l1"), ("u2", "l1"), ("u1", "lX")])
    await store.add_links([("u2", "l2"), ("u3", "l3"), ("u" * 80, "l" * 80)])
    await store.add_links([])
    assert sorted(await _links(db)) == sorted(
        [("u1", "l1"), ("u2", "l1"), ("u3", "l3"), ("u" * 64, "l" * 64)]
    )


async def test_offers_clear_the_cached_history_of_the_customers_they_touch(
    db: Database,
) -> None:
    """The interaction writer's offers go through Database.write, outside an ORM session:
    the card cache's history of the customers they touch still goes once they commit (as
    a session's commit cleared it), and only theirs."""
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    mine = await store.create_customer(
        CustomerIn.model_validate({"name": "Caller", "phones": ["13800138000"]}), SYSTEM
    )
    other = await store.create_customer(
        CustomerIn.model_validate({"name": "Other", "phones": ["13900139000"]}), SYSTEM
    )
    assert await directory.recent_interactions(mine["id"]) == []
    assert await directory.recent_interactions(other["id"]) == []
    misses = directory.cache.history.misses
    interactions = Interactions(store)
    await interactions.record_offers([Offer("L-1", "a1", NOW, False, "13800138000", "sales")])
    assert [i["linkedid"] for i in await directory.recent_interactions(mine["id"])] == ["L-1"]
    assert await directory.recent_interactions(other["id"]) == []  # still cached
    assert directory.cache.history.misses == misses + 1
    # the answer of that call (no number given): its customer's history goes again
    await interactions.record_offers([Offer("L-1", "a1", NOW, True, "", "sales")])
    (answered,) = await directory.recent_interactions(mine["id"])
    assert answered["agent"] == "a1"
    assert directory.cache.history.misses == misses + 2


async def test_a_recording_update_returns_the_row_as_the_orm_refresh_did(db: Database) -> None:
    store = RecordingStore(db)
    (row,) = await store._insert([{"linkedid": "L-1", "started_at": NOW, "path": "a.wav"}])
    before = utcnow()
    done = await store.update(
        row.id, status="processing", ended_at=NOW + timedelta(seconds=9), duration_s=8.5,
        reason="x" * 300,
    )  # fmt: skip
    assert done is not None
    async with db.session() as s:
        stored = await s.get(Recording, row.id)
    assert stored is not None
    assert _columns(done) == _columns(stored)  # every column, as the row now is
    assert done.status == "processing" and done.duration_s == 8.5
    assert done.reason == "x" * 256  # clipped to the column
    assert done.updated_at >= before and done.created_at == row.created_at
    got = await store.get(row.id)
    assert got is not None and _columns(got) == _columns(stored)
    assert await store.get(row.id + 1000) is None
    assert await store.update(row.id + 1000, status="ready") is None
    with pytest.raises(TypeError):
        await store.update(row.id, no_such_column=1)

    # a claim: once, until released or stale; only while the file may be processed
    assert await store.claim(row.id)
    assert not await store.claim(row.id)
    await store.update(row.id, claimed_at=NOW - timedelta(hours=1))
    assert await store.claim(row.id, stale_s=60)
    await store.update(row.id, claimed_at=None, status="ready")
    assert not await store.claim(row.id)


async def test_a_lost_caller_is_closed_by_a_later_call_only(db: Database) -> None:
    lost = cast(sa.Table, LostCallerRow.__table__)
    async with db.session() as s, s.begin():
        await s.execute(
            sa.insert(lost),
            [
                {"linkedid": f"L{i}", "caller_key": key, "reason": "abandon", "lost_at": at}
                for i, (key, at) in enumerate(
                    [("k1", NOW), ("k1", NOW + timedelta(minutes=5)), ("k2", NOW)]
                )
            ],
        )
    callers = LostCallers(db, region="CN")
    assert await callers.close_key("k1", NOW + timedelta(minutes=1), "L9", "callback") == 1
    assert await callers.close_key("k1", NOW + timedelta(minutes=9), "L1", "agent") == 0
    assert await callers.close_key("", NOW, "L9", "agent") == 0
    async with db.session() as s:
        rows = (
            await s.execute(
                sa.select(lost.c.linkedid, lost.c.closed_at, lost.c.closed_by,
                          lost.c.closed_linkedid).order_by(lost.c.linkedid)
            )
        ).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [
        ("L0", NOW + timedelta(minutes=1), "callback", "L9"),
        ("L1", None, "", ""),  # its own call does not close it
        ("L2", None, "", ""),
    ]


async def test_a_finished_call_upserts_its_interaction_as_the_orm_did(db: Database) -> None:
    """The CallCompleted upsert through Database.write: a new row gets the columns'
    defaults for what is unknown, the same record again writes nothing (updated_at stays),
    the owner's last contact moves forward only, and the card cache is told as a
    session's commit told it (the customer's history; every card when a customer
    changed)."""
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    owned = await store.create_customer(
        CustomerIn.model_validate({"name": "A", "owner": "a1", "phones": ["13800138000"]}), SYSTEM
    )
    interactions = Interactions(store)
    record = CallRecord(
        linkedid="U-1", started_at=NOW, ended_at=NOW + timedelta(seconds=40),
        caller_num="13800138000", agent="a1", queue="sales", wait_s=3.5, talk_s=30.25,
        disposition="answered",
    )  # fmt: skip
    bare = await interactions.upsert_call(CallRecord(linkedid="U-0", started_at=NOW, ended_at=NOW))
    assert (bare["caller_num"], bare["agent"], bare["queue"], bare["outcome"]) == (
        "", "", "", "unknown",
    )  # fmt: skip
    assert bare["created"] and bare["customer_id"] is None

    card = await directory.lookup_number("+8613800138000")
    assert await directory.recent_interactions(owned["id"]) == []
    misses = (directory.cache.cards.misses, directory.cache.history.misses)
    first = await interactions.upsert_call(record)
    assert first["created"] and first["customer_id"] == owned["id"]
    assert (first["wait_s"], first["talk_s"], first["outcome"]) == (3.5, 30.25, "answered")
    async with db.session() as s:
        customer = await s.get(Customer, owned["id"])
    assert customer is not None and customer.last_contact_at == record.ended_at
    # the owner's customer changed: every card goes; the customer's history too
    assert await directory.lookup_number("+8613800138000") is not card
    assert [i["linkedid"] for i in await directory.recent_interactions(owned["id"])] == ["U-1"]
    assert directory.cache.cards.misses == misses[0] + 1  # (its history read with it)

    again = await interactions.upsert_call(record)  # CDR recovery after AMI: the same
    assert not again["created"] and again == {**first, "created": False}
    earlier = await interactions.upsert_call(
        CallRecord(linkedid="U-1", started_at=NOW, ended_at=NOW + timedelta(seconds=20),
                   agent="a1", disposition="unknown")
    )  # fmt: skip
    assert earlier["outcome"] == "answered" and earlier["wait_s"] == 3.5  # kept
    assert earlier["updated_at"] > first["updated_at"]
    (seen,) = await directory.recent_interactions(owned["id"])  # not the cached one
    assert seen["ended_at"] == earlier["ended_at"] != first["ended_at"]
    async with db.session() as s:
        customer = await s.get(Customer, owned["id"])
    assert customer is not None and customer.last_contact_at == record.ended_at  # not back


async def test_the_ivr_path_and_survey_score_write_the_calls_interaction(db: Database) -> None:
    """IvrCompleted / SurveyAnswered through Database.write: the call's interaction is
    created if missing (linked by the caller's number), an existing one keeps its number
    and customer, and the customer's cached history goes."""
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    known = await store.create_customer(
        CustomerIn.model_validate({"name": "A", "phones": ["13800138000"]}), SYSTEM
    )
    assert await directory.recent_interactions(known["id"]) == []
    interactions = Interactions(store)
    await interactions.set_ivr_path("V-1", ("main", "sales"), "13800138000", NOW)
    (seen,) = await directory.recent_interactions(known["id"])  # not the cached []
    assert (seen["linkedid"], seen["ivr_path"], seen["caller_num"]) == (
        "V-1", "main>sales", "+8613800138000",
    )  # fmt: skip
    assert seen["started_at"] == NOW.isoformat() and seen["agent"] == ""
    await interactions.set_survey_score("V-1", 4, NOW + timedelta(minutes=5))
    await interactions.set_ivr_path("V-1", ("other",), "13900000000", NOW + timedelta(hours=1))
    (seen,) = await directory.recent_interactions(known["id"])
    assert (seen["survey_score"], seen["ivr_path"], seen["caller_num"]) == (
        4, "other", "+8613800138000",  # the first number stays
    )  # fmt: skip
    assert seen["started_at"] == NOW.isoformat()  # an existing row keeps its start
    await interactions.set_survey_score("V-2", 5, NOW)
    async with db.session() as s:
        bare = await s.scalar(sa.select(Interaction).where(Interaction.linkedid == "V-2"))
    assert bare is not None and (bare.survey_score, bare.caller_num, bare.customer_id) == (
        5, "", None,
    )  # fmt: skip


async def test_a_recording_is_attached_to_the_calls_interaction(db: Database) -> None:
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    known = await store.create_customer(
        CustomerIn.model_validate({"name": "A", "phones": ["13800138000"]}), SYSTEM
    )
    interactions = Interactions(store)
    await interactions.record_offers([Offer("R-1", "a1", NOW, True, "13800138000", "q")])
    assert [i["recording"] for i in await directory.recent_interactions(known["id"])] == [""]
    await interactions.attach_recording("R-1", "2026/11/30/R-1.mp3")
    (seen,) = await directory.recent_interactions(known["id"])  # not the cached one
    assert seen["recording"] == "2026/11/30/R-1.mp3" and seen["agent"] == "a1"
    await interactions.attach_recording("R-2", "r" * 600)  # no interaction yet: made
    async with db.session() as s:
        made = await s.scalar(sa.select(Interaction).where(Interaction.linkedid == "R-2"))
    assert made is not None and made.recording == "r" * 512 and made.kind == "call"
