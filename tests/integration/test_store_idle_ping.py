"""PostgreSQL connections are pinged when they sat idle, not at every check-out
(decision 0027: the pre-ping was a third of a recording row's insert under a burst).

A connection in use is handed out without a ping; one idle past ``IDLE_PING_S`` is
pinged, and if its server process is gone (killed here with pg_terminate_backend, as a
restart or failover would) the pool replaces it and the statement succeeds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

import cti.store.db as store_db
from cti.store.db import Database

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
async def test_busy_connection_is_not_pinged_idle_one_is_replaced(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_db, "IDLE_PING_S", 0.5)
    db = Database.from_url(db_url)
    pings: list[int] = []
    dialect = db.engine.dialect
    real_ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    try:
        async with db.engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        for _ in range(20):  # a burst: the same connection, straight back, no ping
            async with db.engine.connect() as conn:
                assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid
        assert pings == []

        # the server process goes away while the connection sits idle in the pool
        async with db.reader.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await asyncio.sleep(0.6)
        async with db.engine.connect() as conn:  # pinged, replaced, and it works
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
        assert len(pings) >= 1
    finally:
        await db.dispose()
