"""What a graceful stop cannot drain in its bound is kept in the store and handled at the
next start, once (cti.pending with cti.worker's ``keep``), on SQLite and PostgreSQL:
the statistics facts worker's items against the real statistics store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from cti.pending import PendingStore
from cti.store.db import Database
from cti.store.models import PendingItem
from cti.worker import QueueWorker
from stats.feature import Fact
from stats.models import LinkRow
from stats.store import StatsStore

N = 40


async def count(db: Database, model: type[object]) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_stop_keeps_what_it_could_not_write_and_the_next_start_writes_it(
    db: Database,
) -> None:
    store = StatsStore(db, ZoneInfo("UTC"))
    gate = asyncio.Event()  # the store is slow: only the first 5 links get through in time
    seen: list[str] = []

    async def write(facts: Sequence[Fact]) -> None:
        for f in facts:
            seen.append(f.uniqueid)
            if len(seen) > 5:
                await gate.wait()
            await store.add_link(f.uniqueid, f.linkedid)

    facts = [Fact("link", f"L{i}", f"U{i}") for i in range(N)]
    first = QueueWorker("stats-facts", write, batch_size=3, keep=PendingStore(db, Fact))
    first.start()
    for f in facts:
        assert first.submit(f)
    await first.close(grace_s=0.5)  # the stop's bound runs out with the 6th link in hand
    # kept: the batch in hand (links 4 to 6; 4 and 5 are written already) and the queue
    assert first.kept == N - 3
    assert await count(db, LinkRow) == 5
    assert await count(db, PendingItem) == N - 3

    gate.set()  # the next start: the store is quick again
    second = QueueWorker("stats-facts", write, batch_size=3, keep=PendingStore(db, Fact))
    other = QueueWorker("other", write, keep=PendingStore(db, Fact))
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


async def test_kept_items_are_equal_to_the_submitted_ones(db: Database) -> None:
    from datetime import UTC, datetime

    from cti.events import CallRecord

    keep: PendingStore[object] = PendingStore(db, Fact)
    at = datetime(2026, 11, 29, 15, 0, 1, 250000, tzinfo=UTC)
    record = CallRecord(linkedid="x-1", started_at=at, ended_at=at, caller_num="+3312",
                        caller_name="Zoë 张", disposition="abandoned", queue="sales")  # fmt: skip
    items: list[object] = [Fact("held", "x-1", "x-2", at, "", ""), record]
    await keep.save("w", items)
    assert await keep.take("w") == items
    assert await keep.take("w") == []
