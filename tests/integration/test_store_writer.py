"""The SQLite writer path (decision 0027): one writer in order, readers beside it.

Real contention on a real SQLite file: many transactions that read and then write at the
same time (each of which, with deferred transactions on a pool of connections, can fail
at once with "database is locked" when another commits in between), a writer in another
"process" (a second Database on the same file) holding the lock, and readers while the
writer is busy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cti.store.db import Database


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> Database:
    db = Database.from_url(f"sqlite:///{tmp_path / 'cti.db'}")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, seen INTEGER)"))
    return db


async def test_read_then_write_transactions_never_see_database_is_locked(
    sqlite_db: Database,
) -> None:
    db = sqlite_db

    async def read_then_write() -> None:
        async with db.session() as s:
            seen = (await s.execute(text("SELECT count(*) FROM t"))).scalar_one()
            await asyncio.sleep(0)  # let the others run between the read and the write
            await s.execute(text("INSERT INTO t (seen) VALUES (:n)"), {"n": seen})
            await s.commit()

    try:
        await asyncio.gather(*(read_then_write() for _ in range(200)))
        async with db.read_session() as s:
            rows, distinct = (
                await s.execute(text("SELECT count(*), count(DISTINCT seen) FROM t"))
            ).one()
        # every transaction committed, and each read what all earlier ones wrote
        assert (rows, distinct) == (200, 200)
    finally:
        await db.dispose()


async def test_a_writer_in_another_process_is_waited_for(sqlite_db: Database) -> None:
    db, other = sqlite_db, Database.from_url(sqlite_db.url)
    try:
        async with other.session() as held:
            await held.execute(text("INSERT INTO t (seen) VALUES (1)"))

            async def ours() -> None:
                async with db.session() as s:
                    await s.execute(text("SELECT count(*) FROM t"))
                    await s.execute(text("UPDATE t SET seen = seen + 1"))
                    await s.commit()

            waiting = asyncio.create_task(ours())
            await asyncio.sleep(0.5)
            assert not waiting.done()  # queued behind the other writer, not failed
            await held.commit()
        await asyncio.wait_for(waiting, 10)
        async with db.read_session() as s:
            assert (await s.execute(text("SELECT seen FROM t"))).scalar_one() == 2
    finally:
        await other.dispose()
        await db.dispose()


async def test_readers_do_not_wait_behind_the_writer(sqlite_db: Database) -> None:
    db = sqlite_db
    try:
        async with db.session() as writer:
            await writer.execute(text("INSERT INTO t (seen) VALUES (7)"))
            # the one writer connection is taken and holds the write lock: a read goes on
            reads = [db.read_session() for _ in range(8)]
            try:
                counts = await asyncio.wait_for(
                    asyncio.gather(*(r.execute(text("SELECT count(*) FROM t")) for r in reads)),
                    5,
                )
                assert [c.scalar_one() for c in counts] == [0] * 8  # not yet committed
            finally:
                for r in reads:
                    await r.close()
            await writer.commit()
    finally:
        await db.dispose()


async def test_a_read_session_cannot_write(sqlite_db: Database) -> None:
    db = sqlite_db
    try:
        async with db.read_session() as s:
            with pytest.raises(OperationalError, match="readonly"):
                await s.execute(text("INSERT INTO t (seen) VALUES (1)"))
    finally:
        await db.dispose()


async def test_read_runs_in_one_hop_beside_the_writer(sqlite_db: Database) -> None:
    db = sqlite_db
    try:
        async with db.session() as writer:
            await writer.execute(text("INSERT INTO t (seen) VALUES (7)"))

            def count(s: Session) -> int:
                return int(s.execute(text("SELECT count(*) FROM t")).scalar_one())

            counts = await asyncio.wait_for(asyncio.gather(*(db.read(count) for _ in range(8))), 5)
            assert counts == [0] * 8  # not waiting for the writer, not seeing its work
            await writer.commit()
        assert await db.read(count) == 1
    finally:
        await db.dispose()
