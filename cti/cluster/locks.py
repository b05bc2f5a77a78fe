"""Named work held by one node of a cluster at a time: PostgreSQL session advisory locks.

What one node must do alone (pacing a campaign: two pacers would each fill the agents'
free lines, doubling the calls in flight) asks :meth:`NamedLocks.hold` before each round
of that work. All of a node's locks live on one PostgreSQL session of their own (not the
store's pool), opened by :func:`cti.cluster.lease.lease_connection`:

- ``hold(name)`` is True while this node holds ``name``: a name not held yet is tried
  (``pg_try_advisory_lock``, never waits); a name held is confirmed by a round trip
  within ``timeout_s``. Any failure (the session ended, PostgreSQL unreachable, no answer
  within ``timeout_s``) drops every name this node held, at once, and the session is
  opened again at the next ``hold``: the caller stops the work before PostgreSQL can free
  the locks for another node (the session's keepalives end it only after
  ``release_after_s`` > ``timeout_s`` + ``check_s``), as the server lease does.
- The holder dies: its session ends, PostgreSQL frees its locks, the next node's ``hold``
  gets them.
- ``release(name)``: the work is over here (a campaign stopped), another node may take it.
- ``free(name)``: whether no session holds ``name`` now (a shared lock tried and let go
  at once: two nodes asking at the same moment do not see each other as the holder).

Keys are 64-bit hashes of the names (a namespace apart from the server leases').
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

import asyncpg

from cti.cluster.lease import lease_connection

__all__ = ["NamedLocks", "lock_key"]

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    digest = hashlib.blake2b(b"cti-work\0" + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class NamedLocks:
    def __init__(
        self, dsn: str, *, node: str, timeout_s: float = 2.0, check_s: float = 1.0
    ) -> None:
        """``check_s``: how often the caller asks :meth:`hold` (the dialer's tick)."""
        self.dsn = dsn
        self.node = node
        self.timeout_s = timeout_s
        self.check_s = check_s
        self.held: set[str] = set()
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def hold(self, name: str) -> bool:
        async with self._lock:
            try:
                conn = await self._connection()
                if name in self.held:  # still on the session that took it
                    await conn.fetchval("SELECT 1", timeout=self.timeout_s)
                    return True
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", lock_key(name), timeout=self.timeout_s
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._lost(str(exc) or type(exc).__name__)
                return False
            if got:
                self.held.add(name)
                log.info("this node now holds %s", name)
            return bool(got)

    async def free(self, name: str) -> bool:
        """True when no session holds ``name`` exclusively (:meth:`hold`) now; False also
        when PostgreSQL does not answer (this node's names are then dropped, as in
        :meth:`hold`)."""
        async with self._lock:
            try:
                conn = await self._connection()
                got = await conn.fetchval(
                    "SELECT CASE WHEN pg_try_advisory_lock_shared($1)"
                    " THEN pg_advisory_unlock_shared($1) ELSE false END",
                    lock_key(name), timeout=self.timeout_s,
                )  # fmt: skip
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._lost(str(exc) or type(exc).__name__)
                return False
            return bool(got)

    async def release(self, name: str) -> None:
        async with self._lock:
            if name not in self.held:
                return
            self.held.discard(name)
            conn = self._conn
            if conn is None:
                return
            try:
                await conn.fetchval(
                    "SELECT pg_advisory_unlock($1)", lock_key(name), timeout=self.timeout_s
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._lost(str(exc) or type(exc).__name__)

    async def close(self) -> None:
        async with self._lock:
            self._lost("")

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and self._conn.is_closed():
            self._lost("the session ended")  # a new session holds none of the old locks
        if self._conn is None:
            self._conn = await lease_connection(
                self.dsn, f"cti-locks {self.node}", timeout_s=self.timeout_s,
                check_s=self.check_s,
            )  # fmt: skip
        return self._conn

    def _lost(self, why: str) -> None:
        if self.held and why:
            log.warning("lost %s: %s", ", ".join(sorted(self.held)), why)
        self.held.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()  # no round trip: the link may be gone
