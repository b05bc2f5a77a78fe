"""The store on real SQLite and PostgreSQL: URLs, migrations, schema, hostile text."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, String, inspect, select, text
from sqlalchemy.exc import StatementError

from cti.features import load_features
from cti.store.db import Database, StoreConfigError, to_async_url
from cti.store.migrate import applied, current, include_object, shipped, upgrade
from cti.store.models import Base, Call, TextTooLongError

T0 = datetime(2025, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def _diff(conn: Connection, metadata: MetaData) -> list[Any]:
    ctx = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include_object}
    )
    return list(compare_metadata(ctx, metadata))


def _call(linkedid: str = "1700000000.1", **kw: Any) -> Call:
    values: dict[str, Any] = {
        "linkedid": linkedid,
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=90),
    }
    values.update(kw)
    return Call(**values)


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///var/cti.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///var/cti.db", "sqlite+aiosqlite"),
        ("sqlite://", "sqlite+aiosqlite"),
        ("postgresql://cti:secret@db.example/cti", "postgresql+asyncpg"),
        ("postgresql+asyncpg://cti@db.example/cti", "postgresql+asyncpg"),
        ("postgres://cti@db.example/cti", "postgresql+asyncpg"),
    ],
)
def test_urls_map_to_async_drivers(url: str, driver: str) -> None:
    assert to_async_url(url).drivername == driver


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2@localhost/cti",
        "postgresql+psycopg2://u:hunter2@localhost/cti",
        "sqlite+pysqlcipher:///x.db",
        "not a url",
        "",
    ],
)
def test_unsupported_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        Database.from_url(url)
    assert isinstance(info.value, ValueError)
    assert "hunter2" not in str(info.value)


def test_upgrade_refuses_unsupported_url() -> None:
    with pytest.raises(StoreConfigError):
        upgrade("mysql://localhost/cti")


async def test_sync_migrate_api_refuses_running_loop(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="to_thread"):
        upgrade(f"sqlite:///{tmp_path}/x.db")


# --- SQLite connection settings ---------------------------------------------------------


async def test_sqlite_pragmas_and_parent_dir(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "cti.db"
    db = Database.from_url(f"sqlite:///{path}")
    try:
        assert db.dialect == "sqlite"
        async with db.engine.connect() as conn:
            pragma = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert path.exists()
        assert pragma == {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": 5000,
            "synchronous": 1,  # NORMAL
        }
    finally:
        await db.dispose()


# --- migrations --------------------------------------------------------------------------


async def test_upgrade_empty_database(db_url: str) -> None:
    assert await asyncio.to_thread(current, db_url) == ()
    await asyncio.to_thread(upgrade, db_url)
    assert await asyncio.to_thread(applied, db_url) == shipped()
    db = Database.from_url(db_url)
    try:
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"calls", "api_tokens", "alembic_version"} <= tables
    finally:
        await db.dispose()


async def test_upgrade_twice_is_a_noop(db: Database, db_url: str) -> None:
    async with db.session() as session, session.begin():
        session.add(_call())
    await asyncio.to_thread(upgrade, db_url)
    assert await asyncio.to_thread(applied, db_url) == shipped()
    async with db.session() as session:
        assert (await session.scalars(select(Call.linkedid))).all() == ["1700000000.1"]


async def test_models_match_migrations(db: Database) -> None:
    load_features()  # every registered feature's models join Base.metadata
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_diff, Base.metadata) == []
        # ... and the comparison does see a difference when there is one
        changed = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.tables.values():
            table.to_metadata(changed)
        changed.tables["calls"].append_column(Column("extra", String(8)))
        diffs = await conn.run_sync(_diff, changed)
    assert [d[0] for d in diffs] == ["add_column"]


async def test_constraint_names_follow_convention(db: Database) -> None:
    async with db.engine.connect() as conn:

        def names(c: Connection) -> set[str]:
            insp = inspect(c)
            out = {str(insp.get_pk_constraint("calls")["name"])}
            out |= {str(u["name"]) for u in insp.get_unique_constraints("calls")}
            out |= {str(i["name"]) for i in insp.get_indexes("calls")}
            return out

        found = await conn.run_sync(names)
    assert {
        "pk_calls",
        "uq_calls_linkedid",
        "ix_calls_started_at",
        "ix_calls_queue",
        "ix_calls_caller_num_e164",
    } <= found


# --- values ------------------------------------------------------------------------------

HOSTILE = [
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "'; DROP TABLE calls; --",
    "Robert'); DELETE FROM api_tokens WHERE ('1'='1",
    '" OR 1=1 --',
    "line one\r\nAction: Originate\r\n\r\n",
    "tab\tand\x1b[31mANSI",
    "张伟 🙂 \u202eevil\u202c",
    b"\xff\xfe caf\xc3\xa9 \xc3".decode("utf-8", errors="replace"),
    "x" * 256,
    "%s %(name)s ? :name $1",
]


async def test_hostile_text_round_trips(db: Database) -> None:
    async with db.session() as session, session.begin():
        for i, value in enumerate(HOSTILE):
            session.add(_call(f"h.{i}", caller_name=value, caller_num_raw=value[:256]))
    async with db.session() as session:
        rows = (await session.scalars(select(Call).order_by(Call.id))).all()
        assert [r.caller_name for r in rows] == HOSTILE
        # the SQL fragments did nothing
        assert (await session.execute(text("SELECT count(*) FROM calls"))).scalar() == len(HOSTILE)


async def test_unstorable_characters_are_replaced(db: Database) -> None:
    async with db.session() as session, session.begin():
        session.add(_call("s.1", caller_name="a\ud800b\udfffc\x00d"))
    async with db.session() as session:
        name = await session.scalar(select(Call.caller_name).where(Call.linkedid == "s.1"))
    assert name == "a\ufffdb\ufffdc\ufffdd"


async def test_overlong_text_is_refused_clearly(db: Database) -> None:
    """Decision: the store refuses text over the column limit on both databases (SQLite
    would keep it, PostgreSQL would fail obscurely); writers of untrusted text (the call
    recorder) truncate first."""
    huge = "A" * 64 * 1024
    with pytest.raises(StatementError) as info:
        async with db.session() as session, session.begin():
            session.add(_call("big.1", caller_name=huge))
    assert isinstance(info.value.orig, TextTooLongError)
    assert "exceeds the column limit of 256" in str(info.value.orig)
    async with db.session() as session:
        assert await session.scalar(select(Call.id).where(Call.linkedid == "big.1")) is None
        # looking up an over-long value is no error, it just finds nothing
        assert (await session.scalars(select(Call).where(Call.caller_name == huge))).all() == []


async def test_datetimes_are_aware_utc(db: Database) -> None:
    tokyo = timezone(timedelta(hours=9))
    started = datetime(2025, 3, 1, 18, 30, tzinfo=tokyo)
    async with db.session() as session, session.begin():
        session.add(_call("t.1", started_at=started, answered_at=datetime(2025, 3, 1, 9, 31)))
    async with db.session() as session:
        row = await session.scalar(select(Call).where(Call.linkedid == "t.1"))
        assert row is not None
        assert row.started_at == started
        assert row.started_at.utcoffset() == timedelta(0)
        # naive input is taken as UTC
        assert row.answered_at == datetime(2025, 3, 1, 9, 31, tzinfo=UTC)
        assert row.created_at.tzinfo is not None
        # comparisons against aware values work on both databases
        found = await session.scalar(
            select(Call.linkedid).where(Call.started_at >= datetime(2025, 3, 1, 9, 29, tzinfo=UTC))
        )
        assert found == "t.1"
