"""Named work held by one node at a time (cti.cluster.locks), on the real PostgreSQL: one
holder per name; the holder's session ending (its process killed, or PostgreSQL ending
it) lets the next node hold it at its next try and the old holder learns at its next
``hold``; a released name goes to the next node."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cti.cluster.locks import NamedLocks
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[NamedLocks, NamedLocks]]:
    a = NamedLocks(PG_ADMIN_URL, node="a", timeout_s=1.0, check_s=0.2)
    b = NamedLocks(PG_ADMIN_URL, node="b", timeout_s=1.0, check_s=0.2)
    yield a, b
    await a.close()
    await b.close()


async def test_one_holder_and_the_next_takes_over_when_its_session_ends(
    nodes: tuple[NamedLocks, NamedLocks],
) -> None:
    a, b = nodes
    name = f"campaign:{secrets.randbelow(10**9)}"
    other = name + "-other"
    assert await a.hold(name)
    assert await a.hold(name)  # confirmed, still a's
    assert not await b.hold(name)
    assert await b.hold(other)  # another name: b's
    assert not await a.hold(other)
    # a's process dies: PostgreSQL ends its session and frees what it held
    assert a._conn is not None
    pid = a._conn.get_server_pid()
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)
    assert await b.hold(name)  # b takes over at its next try
    assert not await a.hold(name)  # a learns its session is gone: it holds nothing
    assert a.held == set()
    assert not await a.hold(name)  # a new session: b holds it
    # b lets go (the work is over there): a gets it
    await b.release(name)
    assert await a.hold(name)
    assert b.held == {other}


async def test_free_says_whether_anyone_holds_a_name_and_asking_takes_nothing(
    nodes: tuple[NamedLocks, NamedLocks],
) -> None:
    a, b = nodes
    name = f"journal:{secrets.randbelow(10**9)}"
    # two nodes asking at the same moment both see it free (neither takes it)
    assert all(await asyncio.gather(a.free(name), b.free(name)))
    assert await a.hold(name)
    assert not await b.free(name)  # held by a
    assert await a.free(name)  # a's own exclusive hold does not block its shared look
    await a.release(name)
    assert await b.free(name)
    assert await b.hold(name) and b.held == {name}
