"""One node drives an Asterisk server at a time: a PostgreSQL session advisory lock.

Every node configured for a server runs a :class:`ServerLease`. It keeps its own
connection to PostgreSQL (not the store's pool) and asks ``pg_try_advisory_lock(key)``
every ``check_s`` until it holds the lock; then it calls ``on_acquired`` (the daemon
starts its AMI link: resync and recovery, exactly as after a restart) and confirms the
connection every ``check_s``.

- **The driver dies** (SIGKILL, crash, host down with the TCP connection reset): its
  backend ends, PostgreSQL releases the lock at once, the next standby's attempt wins
  within ``check_s``.
- **The driver is cut off** (network partition): it cannot confirm the lock within
  ``timeout_s`` and calls ``on_lost`` (the daemon stops driving: AMI closed) before
  PostgreSQL can let anyone else take it: the session's TCP keepalives
  (``tcp_keepalives_idle`` + ``interval`` x ``count``) and ``tcp_user_timeout`` end the
  backend of a silent client only after ``release_after_s`` > ``timeout_s`` + ``check_s``.
  A node back from a partition starts over as a standby.

The key is a 64-bit hash of the server's name: the same on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

__all__ = ["ServerLease", "lease_connection", "lease_key", "libpq_dsn", "release_after_s"]

log = logging.getLogger(__name__)


def libpq_dsn(database_url: str) -> str | None:
    """The store's SQLAlchemy URL as a plain PostgreSQL DSN (None: not PostgreSQL)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def lease_key(server: str) -> int:
    digest = hashlib.blake2b(b"cti-server\0" + server.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _keepalive_idle(timeout_s: float, check_s: float) -> int:
    return max(1, round(timeout_s + check_s + 0.5))


def release_after_s(timeout_s: float, check_s: float) -> float:
    """When PostgreSQL ends the session (and frees the locks) of a silent client of
    :func:`lease_connection`: after ``timeout_s + check_s`` at the earliest."""
    return _keepalive_idle(timeout_s, check_s) + 1 * 2


async def lease_connection(
    dsn: str, application: str, *, timeout_s: float, check_s: float
) -> asyncpg.Connection:
    """A session for advisory locks whose holder confirms it every ``check_s`` with a
    ``timeout_s`` limit: its TCP keepalives and ``tcp_user_timeout`` make PostgreSQL end
    it (freeing its locks) only after :func:`release_after_s`, when a holder that could
    not confirm has already let go."""
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, timeout=timeout_s,
        server_settings={
            "application_name": application[:63],
            "tcp_keepalives_idle": str(_keepalive_idle(timeout_s, check_s)),
            "tcp_keepalives_interval": "1",
            "tcp_keepalives_count": "2",
            "tcp_user_timeout": str(int(release_after_s(timeout_s, check_s) * 1000)),
        },
    )  # fmt: skip
    return conn


class ServerLease:
    def __init__(
        self,
        dsn: str,
        server: str,
        *,
        node: str,
        on_acquired: Callable[[], Awaitable[None]],
        on_lost: Callable[[], Awaitable[None]],
        check_s: float = 0.5,
        timeout_s: float = 2.0,
    ) -> None:
        self.dsn = dsn
        self.server = server
        self.node = node
        self.key = lease_key(server)
        self.check_s = check_s
        self.timeout_s = timeout_s
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self.held = False
        self.acquisitions = 0
        self._conn: asyncpg.Connection | None = None

    @property
    def release_after_s(self) -> float:
        """When PostgreSQL frees the lock of a silent client (:func:`lease_connection`)."""
        return release_after_s(self.timeout_s, self.check_s)

    async def run(self) -> None:
        """Acquire, hold, and acquire again after a loss, until cancelled."""
        try:
            while True:
                try:
                    await self._cycle()
                except (OSError, TimeoutError, asyncpg.PostgresError,
                        asyncpg.InterfaceError) as exc:  # fmt: skip
                    log.warning("lease on %s: %s", self.server, str(exc) or type(exc).__name__)
                await self._release_local()
                await asyncio.sleep(self.check_s)
        finally:
            await self._release_local()

    async def _cycle(self) -> None:
        self._conn = await lease_connection(
            self.dsn, f"cti-lease {self.node}", timeout_s=self.timeout_s, check_s=self.check_s
        )
        conn = self._conn
        while True:
            if await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self.key, timeout=self.timeout_s
            ):
                break
            await asyncio.sleep(self.check_s)
        self.held = True
        self.acquisitions += 1
        log.info("this node now drives Asterisk server %s", self.server)
        await self._on_acquired()
        while True:
            await asyncio.sleep(self.check_s)
            await conn.fetchval("SELECT 1", timeout=self.timeout_s)

    async def _release_local(self) -> None:
        """Stop driving first, then drop the connection (which frees the lock)."""
        if self.held:
            self.held = False
            log.warning("this node no longer drives Asterisk server %s", self.server)
            try:
                await self._on_lost()
            except Exception:
                log.exception("lease: stopping the server's link failed")
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()  # no round trip: the link may be gone
