"""The CRM interaction writer through a database outage (issue #12 item 9): interactions
wait in the writer's queue worker and land once the database is back; none is dropped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm_bridge.access import Actor
from crm_bridge.interactions import BATCH, Interactions, InteractionWriter
from crm_bridge.models import CallAgent, Interaction
from crm_bridge.schemas import CustomerIn
from crm_bridge.store import CrmStore
from cti.bus import EventBus
from cti.events import CallAnswered, CallCompleted, CallOffered, CallRecord, IvrCompleted
from cti.store.db import Database
from cti.store.migrate import upgrade
from tests.integration.transactions import count_transactions

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


async def test_a_database_outage_loses_no_interaction(db_url: str) -> None:
    db = Database.from_url(db_url)  # not migrated yet: every write fails like an outage
    bus = EventBus()
    writer = InteractionWriter(
        Interactions(CrmStore(db, "CN")), retry_base_s=0.01, retry_max_s=0.05
    )
    writer.attach(bus)
    await writer.start()
    try:
        for i in range(5):
            lid = f"L{i}"
            bus.publish(
                IvrCompleted(
                    lid, T0, "4008001234", "+8613800138000", "PJSIP/trunk-1", ("main",),
                    "queue", "sales", "choice",
                )
            )  # fmt: skip
            bus.publish(CallOffered(lid, T0, "sales", "Local/1@x", "a1", "13800138000"))
            bus.publish(CallAnswered(lid, T0 + timedelta(seconds=5), "sales", "Local/1@x", "a1", 5))
            bus.publish(
                CallCompleted(
                    CallRecord(
                        lid, T0, T0 + timedelta(seconds=60), caller_num="13800138000",
                        answered_at=T0 + timedelta(seconds=5), queue="sales", agent="a1",
                        wait_s=5.0, talk_s=55.0, disposition="answered",
                    )
                )
            )  # fmt: skip
        for _ in range(500):
            if writer.worker.errors >= 3:
                break
            await asyncio.sleep(0.01)
        assert writer.worker.errors >= 3  # the outage is being retried
        assert writer.dropped == 0 and writer.failed == 0
        await asyncio.to_thread(upgrade, db_url)  # the database is back
        async with asyncio.timeout(20):
            await writer.flush()
        assert writer.dropped == 0 and writer.failed == 0
        async with db.session() as s:
            rows = (await s.scalars(select(Interaction).order_by(Interaction.linkedid))).all()
            agents = (await s.scalars(select(CallAgent))).all()
        assert [r.linkedid for r in rows] == [f"L{i}" for i in range(5)]
        assert all(r.outcome == "answered" and r.talk_s == 55.0 for r in rows)
        assert all(r.ivr_path == "main" and r.agent == "a1" for r in rows)
        assert {(a.linkedid, a.agent) for a in agents} == {(f"L{i}", "a1") for i in range(5)}
    finally:
        await writer.stop()
        await db.dispose()


async def test_a_burst_of_offers_is_written_in_few_transactions(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 0027: offers queued together share a transaction; each call still gets
    its interaction (agent who answered, queue, the caller's customer) and every agent
    offered it a row, ring before answer."""
    store = CrmStore(db, "CN")
    created = await store.create_customer(
        CustomerIn(name="Known Caller", phones=[{"number": "13800138077"}]),
        Actor("sup", "supervisor"),
    )
    bus = EventBus()
    writer = InteractionWriter(Interactions(store))
    writer.attach(bus)
    begins = count_transactions(db, monkeypatch)
    try:
        for i in range(20):  # queued before the worker runs: one burst
            lid, caller = f"B{i:02}", "13800138077" if i == 7 else f"1390000{i:04}"
            bus.publish(CallOffered(lid, T0, "sales", "Local/1@x", "a1", caller))
            bus.publish(CallOffered(lid, T0, "sales", "Local/2@x", "a2", caller))
            bus.publish(CallAnswered(lid, T0 + timedelta(seconds=2), "sales", "Local/2@x", "a2", 2))
        await writer.start()
        async with asyncio.timeout(20):
            await writer.flush()
        assert writer.failed == 0 and writer.dropped == 0
        # 60 offers in batches of BATCH, and the start's resume; one transaction each before
        assert -(-60 // BATCH) <= len(begins) <= -(-60 // BATCH) + 1, len(begins)
        async with db.session() as s:
            rows = (await s.scalars(select(Interaction).order_by(Interaction.linkedid))).all()
            agents = (await s.scalars(select(CallAgent))).all()
        assert [r.linkedid for r in rows] == [f"B{i:02}" for i in range(20)]
        assert all(r.agent == "a2" and r.queue == "sales" for r in rows)
        assert [r.customer_id for r in rows if r.customer_id] == [created["id"]]
        assert rows[7].caller_num == "+8613800138077"
        by_key = {(a.linkedid, a.agent): a for a in agents}
        assert len(by_key) == 40
        assert all(by_key[(f"B{i:02}", "a1")].answered_at is None for i in range(20))
        assert all(by_key[(f"B{i:02}", "a2")].answered_at is not None for i in range(20))
    finally:
        await writer.stop()
