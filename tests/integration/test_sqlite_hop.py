"""One thread hop a statement (cti.store.sqlite_hop): what SQLAlchemy sees is what plain
aiosqlite gave it, on a real SQLite file, and the hops are fewer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from cti.store import sqlite_hop
from cti.store.db import Database

ROWS = sqlite_hop.FIRST_ROWS * 3 + 7  # more than one hop's rows: the rest is streamed


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database.from_url(f"sqlite:///{tmp_path / 'cti.db'}")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER UNIQUE)"))
        await conn.execute(text("INSERT INTO t (x) VALUES (:x)"), [{"x": i} for i in range(ROWS)])
    yield db
    await db.engine.dispose()


def count_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = sqlite_hop.OneHopConnection.hop

    async def hop(self: sqlite_hop.OneHopConnection, fn: Any, *args: Any) -> Any:
        seen.append(getattr(fn, "__name__", type(fn).__name__))
        return await real(self, fn, *args)

    monkeypatch.setattr(sqlite_hop.OneHopConnection, "hop", hop)
    return seen


async def test_a_statement_is_one_hop(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    hops = count_hops(monkeypatch)
    async with db.session() as session, session.begin():
        rows = (await session.execute(text("SELECT x FROM t WHERE x < 3 ORDER BY x"))).all()
    assert [r.x for r in rows] == [0, 1, 2]
    assert len(hops) == 2  # BEGIN IMMEDIATE and the SELECT (COMMIT is the driver's own)


async def test_large_results_whole_and_streamed(db: Database) -> None:
    async with db.session() as session:
        whole = (await session.execute(text("SELECT x FROM t ORDER BY x"))).scalars().all()
        assert whole == list(range(ROWS))
        streamed = await session.stream(text("SELECT x FROM t ORDER BY x"))
        parts = [list(part) async for part in streamed.partitions(100)]
    assert [r.x for part in parts for r in part] == list(range(ROWS))
    assert max(len(p) for p in parts) == 100


async def test_one_row_at_a_time(db: Database) -> None:
    async with db.session() as session:
        streamed = await session.stream(text("SELECT x FROM t ORDER BY x"))
        got = [row.x async for row in streamed]
    assert got == list(range(ROWS))


async def test_writes_rowcount_returning_and_errors(db: Database) -> None:
    async with db.session() as session, session.begin():
        updated = await session.execute(text("UPDATE t SET x = x + 100000 WHERE x < 10"))
        assert updated.rowcount == 10  # type: ignore[attr-defined]
        new_id = (
            await session.execute(text("INSERT INTO t (x) VALUES (-1) RETURNING id"))
        ).scalar()
        assert new_id == ROWS + 1
    with pytest.raises(IntegrityError):
        async with db.session() as session, session.begin():
            await session.execute(text("INSERT INTO t (x) VALUES (-1)"))
    async with db.session() as session:  # the failed transaction was rolled back whole
        n = (await session.execute(text("SELECT count(*) FROM t WHERE x = -1"))).scalar()
    assert n == 1


async def test_no_rollback_after_a_commit(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    rollbacks: list[bool] = []
    real = aiosqlite.Connection.rollback

    async def rollback(self: Any) -> None:
        rollbacks.append(True)
        await real(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", rollback)
    async with db.session() as session, session.begin():
        await session.execute(text("UPDATE t SET x = x WHERE id = 1"))
    assert rollbacks == []  # the pool's reset found no transaction
    async with db.session() as session:
        await session.execute(text("UPDATE t SET x = x WHERE id = 1"))
        await session.rollback()
    assert rollbacks == [True]  # an open transaction is rolled back as before
