"""Shared fixtures: real databases for integration and acceptance tests.

``db_url`` runs a test once on SQLite (a file under tmp_path) and once on PostgreSQL (a
fresh database ``cti_test_<hex>`` on the local server, dropped afterwards). Both are
empty: ``db`` is a :class:`~cti.store.db.Database` on the same URL with all migrations
applied. PostgreSQL is not optional: if it cannot be reached the test fails.

The PostgreSQL server is ``postgresql://postgres@127.0.0.1:5432/postgres`` unless
``CTI_TEST_PG_ADMIN_URL`` names another (it must allow CREATE/DROP DATABASE).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from cti.store.db import Database
from cti.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "CTI_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


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


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of an empty database, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'cti.db'}"
        return
    name = f"cti_test_{secrets.token_hex(6)}"
    admin = await _pg_admin()
    try:
        try:  # FILE_COPY (PostgreSQL 15+) is twice as fast as WAL_LOG for tiny databases
            await admin.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        except asyncpg.PostgresSyntaxError:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on ``db_url`` with every migration applied."""
    await asyncio.to_thread(upgrade, db_url)
    database = Database.from_url(db_url)
    try:
        yield database
    finally:
        await database.dispose()
