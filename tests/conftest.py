"""Shared fixtures: real databases for integration and acceptance tests.

``db_url`` runs a test once on SQLite (a file under tmp_path) and once on PostgreSQL (a
fresh database ``cti_test_<hex>`` on the local server, dropped afterwards). It is empty,
unless the test also asks for ``db`` or ``migrated_db`` (the acceptance tests all do):
then it is already migrated, and ``db`` is a :class:`~cti.store.db.Database` on it.
A migrated database is a copy of the session's template (every migration applied once per
session: a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL) instead of
a run of every migration per test; the copy is the same schema, revision and rows.
PostgreSQL is not optional: if it cannot be reached the test fails.

The PostgreSQL server is ``postgresql://postgres@127.0.0.1:5432/postgres`` unless
``CTI_TEST_PG_ADMIN_URL`` names another (it must allow CREATE/DROP DATABASE).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from cti.store.db import Database
from cti.store.migrate import upgrade

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "CTI_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _pg_url(name: str) -> str:
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {_shown(PG_ADMIN_URL)} "
            f"({type(exc).__name__}: {exc}). "
            "Integration tests need it (CI tests both SQLite and PostgreSQL): start the "
            "server or set CTI_TEST_PG_ADMIN_URL.",
            pytrace=False,
        )


async def _pg_create(name: str, template: str | None = None) -> None:
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = await _pg_admin()
    try:
        try:  # FILE_COPY (PostgreSQL 15+) is twice as fast as WAL_LOG for tiny databases
            await admin.execute(f'CREATE DATABASE "{name}"{copy} STRATEGY FILE_COPY')
        except asyncpg.PostgresSyntaxError:
            await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await admin.close()


async def _pg_drop(name: str) -> None:
    admin = await _pg_admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread of its own: the templates are made on demand from inside an
    async fixture, and migrations (like any blocking call) refuse a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every migration applied, checkpointed (a copy of the file alone
    is the whole database)."""
    path = tmp_path_factory.mktemp("template") / "cti.db"

    def make() -> None:
        upgrade(f"sqlite+aiosqlite:///{path}")
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    _in_thread(make)
    return path


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    """The name of a PostgreSQL database with every migration applied (nobody connects to
    it after that: it is only copied)."""
    name = f"cti_template_{secrets.token_hex(6)}"

    def make() -> None:
        asyncio.run(_pg_create(name))
        upgrade(_pg_url(name))

    try:
        _in_thread(make)
        yield name
    finally:
        _in_thread(lambda: asyncio.run(_pg_drop(name)))


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of a database on SQLite and on PostgreSQL: empty, or migrated when the test
    asks for ``db``."""
    migrated = not {"db", "migrated_db"}.isdisjoint(request.fixturenames)
    if request.param == "sqlite":
        path = tmp_path / "db" / "cti.db"
        if migrated:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"cti_test_{secrets.token_hex(6)}"
    await _pg_create(name, request.getfixturevalue("_pg_template") if migrated else None)
    try:
        yield _pg_url(name)
    finally:
        await _pg_drop(name)


@pytest.fixture
def migrated_db() -> None:
    """Asked for, ``db_url`` comes migrated (for tests whose daemon would otherwise run
    every migration at start; that start on an empty database is proved by
    tests/acceptance/test_daemon_process.py and tests/integration/test_openapi.py)."""


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on ``db_url`` with every migration applied."""
    database = Database.from_url(db_url)
    try:
        yield database
    finally:
        await database.dispose()
