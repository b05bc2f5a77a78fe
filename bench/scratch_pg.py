"""A throw-away PostgreSQL database for a benchmark run (created, yielded, dropped).

The server is the local one the tests use (``CTI_TEST_PG_ADMIN_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``; it must allow CREATE DATABASE).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get(
    "CTI_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def _admin(sql: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_postgres() -> AsyncIterator[str]:
    """The SQLAlchemy URL of a new empty database, dropped on exit."""
    name = f"cti_bench_{secrets.token_hex(6)}"  # quoted below: hex only, never input
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
