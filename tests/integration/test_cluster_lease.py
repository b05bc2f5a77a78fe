"""The lease on an Asterisk server, on the real PostgreSQL: one holder at a time; when the
holder's process dies (SIGKILL) a standby holds it within a second or two; a holder whose
session PostgreSQL ended stops driving at its next check (within ``check_s``) and becomes
a standby."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cti.cluster.lease import ServerLease, lease_key
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.postgres


class Node:
    """A lease and what the daemon would do with it: drive while held."""

    def __init__(self, name: str, server: str, log: list[tuple[str, str, float]]) -> None:
        self.name = name
        self.log = log
        self.driving = False
        self.lease = ServerLease(
            PG_ADMIN_URL, server, node=name, on_acquired=self.drive, on_lost=self.stop,
            check_s=0.2, timeout_s=1.0,
        )  # fmt: skip
        self.task: asyncio.Task[None] | None = None

    async def drive(self) -> None:
        self.driving = True
        self.log.append((self.name, "drive", time.monotonic()))

    async def stop(self) -> None:
        self.driving = False
        self.log.append((self.name, "stop", time.monotonic()))

    def start(self) -> None:
        self.task = asyncio.create_task(self.lease.run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task


@pytest.fixture
def server() -> str:
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    yield conn
    await conn.close()


async def until(cond: object, timeout: float = 10.0) -> float:
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def steps(log: list[tuple[str, str, float]]) -> list[tuple[str, str]]:
    return [(name, what) for name, what, _ in log]


def at(log: list[tuple[str, str, float]], step: tuple[str, str]) -> float:
    return next(t for name, what, t in log if (name, what) == step)


async def test_one_node_drives_and_the_other_takes_over_when_its_session_ends(
    server: str, admin: asyncpg.Connection
) -> None:
    log: list[tuple[str, str, float]] = []
    a, b = Node("a", server, log), Node("b", server, log)
    a.start()
    await until(lambda: a.driving)
    b.start()
    await asyncio.sleep(1.0)
    assert (a.driving, b.driving) == (True, False)
    # PostgreSQL ends a's session (as it does for a client it found dead): the lock is free
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        "cti-lease a",
    )
    took = await until(lambda: b.driving)
    assert took < 3.0
    await until(lambda: not a.driving, timeout=2)
    # a learns it at its next check: the overlap is at most one check interval
    assert at(log, ("a", "stop")) - at(log, ("b", "drive")) < 0.2 + 0.15
    await asyncio.sleep(0.6)
    assert a.driving is False  # a is a standby now
    await b.close()
    await until(lambda: a.driving)  # b gone: a drives again
    await a.close()
    assert sorted(steps(log)[1:3]) == [("a", "stop"), ("b", "drive")]
    assert steps(log)[3:] == [("b", "stop"), ("a", "drive"), ("a", "stop")]


HOLDER = """
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", int(sys.argv[2]))
    print("held", flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


async def test_a_sigkilled_holder_loses_the_server_at_once(server: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, PG_ADMIN_URL, str(lease_key(server)),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"held"
        log: list[tuple[str, str, float]] = []
        b = Node("b", server, log)
        b.start()
        await asyncio.sleep(1.0)
        assert not b.driving
        proc.send_signal(signal.SIGKILL)
        took = await until(lambda: b.driving, timeout=5)
        assert took < 2.0
        await b.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
