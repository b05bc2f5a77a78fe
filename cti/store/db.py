"""The database handle: one async engine + session factory for SQLite or PostgreSQL.

URLs accepted (anything else raises :class:`StoreConfigError`):

- ``sqlite+aiosqlite:///path/to/cti.db`` or ``sqlite:///path/to/cti.db`` (the parent
  directory is created; every connection gets WAL, foreign keys, a busy timeout and
  ``synchronous=NORMAL``). ``sqlite://`` / ``sqlite:///:memory:`` is one in-memory
  database shared by the engine (tests, tools).
- ``postgresql+asyncpg://user@host/db``, ``postgresql://...`` or ``postgres://...``.

Reads and writes are separated on a SQLite file (decision 0027): SQLite lets one writer
at a time, and a transaction that reads and then writes fails at once with "database is
locked" when another connection committed in between (busy_timeout cannot help), so

- :meth:`Database.session` / :attr:`Database.engine` are **the one writer path**: a single
  connection whose transactions start with ``BEGIN IMMEDIATE``; writers queue for it in
  order (the pool's wait, up to ``WRITER_WAIT_S``) instead of racing in SQLite's busy loop.
  Never open a second ``session()`` while holding one in the same task: pass the session
  down (the code base does; a nested one would wait for itself);
- :meth:`Database.read_session` / :attr:`Database.reader` are readers on their own pool
  of ``query_only`` connections: WAL readers never wait behind the writer, so a lookup
  on the hot path (the caller's card) is never queued behind a burst of writes.

- :meth:`Database.read` runs a synchronous function on a read-only session in one hop:
  on a SQLite file in a small thread pool on the driver's synchronous connections (a
  query through aiosqlite costs a thread round trip per step, each waiting for a busy
  event loop), elsewhere through ``AsyncSession.run_sync``. The hot-path lookups use it.

In-memory SQLite has one engine for both. PostgreSQL has a reader engine with its own
pool for :meth:`Database.read_session` (MVCC: readers never wait for writers' locks, only
for connections), and :meth:`Database.read` runs on an event loop of its own in one
thread, with ``PG_READERS`` connections in autocommit (no BEGIN/ROLLBACK round trips)
opened at start (:meth:`Database.warm`) and kept: through asyncpg every step of a query
(pool check-out, ping, each statement) is a round trip that waited for the daemon's busy
loop, and a connection opened for a burst (a server process, the dialect's codec setup)
was closed again on return; card lookups at a call's entry took up to 1.3 s under a
burst, so half the pops rang before their card was read (decision 0027). The main loop
now waits for one hop, as on SQLite.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    StatementError,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from cti.store import sqlite_hop

__all__ = [
    "PG_READERS",
    "READER_POOL",
    "SQLITE_BUSY_TIMEOUT_MS",
    "WRITER_WAIT_S",
    "Database",
    "StoreConfigError",
    "is_data_error",
    "to_async_url",
]

#: How long a SQLite writer waits for another writer (CLI next to the daemon) before
#: giving up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000
#: How long a SQLite writer waits for the one writer connection before an error.
WRITER_WAIT_S = 60.0
#: SQLite reader connections kept open (more are opened under load, up to twice that).
READER_POOL = 4
#: PostgreSQL connections of :meth:`Database.read`'s own loop, all kept open and opened at
#: start (:meth:`Database.warm`).
PG_READERS = 8
T = TypeVar("T")

_SQLITE_DRIVERS = {None, "aiosqlite", "pysqlite"}
_PG_DRIVERS = {None, "asyncpg"}


def is_data_error(exc: BaseException) -> bool:
    """True when writing the same values again cannot help (as opposed to a database that
    is down, locked or not migrated yet): integrity and data errors, values the driver
    cannot bind. Queue workers give such an item up after a few attempts (cti.worker)."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # failed while binding parameters (bad value type)
    return isinstance(exc, TypeError | ValueError | AttributeError)


class StoreConfigError(ValueError):
    """The database URL is malformed or names an unsupported database/driver."""


def to_async_url(url: str | URL) -> URL:
    """Parse ``url`` and map it to the async driver this project uses.

    Raises :class:`StoreConfigError` for anything that is not SQLite or PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreConfigError(f"malformed database URL: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    drv = driver or None
    if backend == "sqlite" and drv in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and drv in _PG_DRIVERS:
        return parsed.set(drivername="postgresql+asyncpg")
    shown = parsed.render_as_string(hide_password=True)
    raise StoreConfigError(
        f"unsupported database URL {shown!r}: use sqlite[+aiosqlite]:///PATH "
        "or postgresql[+asyncpg]://USER@HOST/DB"
    )


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or str(url.database).startswith("file::memory:")


def _sqlite_engine(url: URL, **kwargs: Any) -> AsyncEngine:
    """An aiosqlite engine whose connections take one thread hop a statement
    (:mod:`cti.store.sqlite_hop`: the writer's statements are the daemon's hot path)."""
    args, connect_kw = SQLiteDialect_aiosqlite().create_connect_args(url)
    creator = partial(sqlite_hop.connect, *args, **connect_kw)
    return create_async_engine(url, async_creator=creator, **kwargs)


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _writer_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    _sqlite_on_connect(dbapi_connection, connection_record)
    # the driver's own implicit BEGIN is replaced by _writer_on_begin's
    dbapi_connection.isolation_level = None


def _writer_on_begin(conn: Any) -> None:
    # take the write lock when the transaction starts, not at its first write: a read
    # followed by a write can then never fail on a snapshot another writer made stale
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _reader_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    _sqlite_on_connect(dbapi_connection, connection_record)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only=ON")
    finally:
        cursor.close()


class LoopThread:
    """An event loop of its own in a daemon thread: coroutines sent to it run beside the
    caller's loop, which waits for one hop (their result)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class Database:
    """The writer engine and, on a SQLite file, a separate reader engine, each with its
    session factory. Create with :meth:`from_url`."""

    def __init__(
        self,
        engine: AsyncEngine,
        reader: AsyncEngine | None = None,
        sync_reader: Engine | None = None,
        loop_reader: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        self.reader = reader if reader is not None else engine
        self._sync_reader = sync_reader
        # PostgreSQL: the engine read() uses, only ever on self._loop_thread's loop
        self._loop_reader = loop_reader
        self._loop_sessions = (
            async_sessionmaker(loop_reader, expire_on_commit=False)
            if loop_reader is not None
            else None
        )
        self._loop_thread: LoopThread | None = None
        self._sync_sessions = (
            sessionmaker(sync_reader, expire_on_commit=False) if sync_reader is not None else None
        )
        self._read_pool: ThreadPoolExecutor | None = None
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self.read_sessionmaker: async_sessionmaker[AsyncSession] = (
            async_sessionmaker(self.reader, expire_on_commit=False)
            if reader is not None
            else self.sessionmaker
        )

    @classmethod
    def from_url(cls, url: str | URL, *, echo: bool = False) -> Database:
        async_url = to_async_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if async_url.get_backend_name() == "sqlite":
            if _is_memory(async_url):
                kwargs["poolclass"] = StaticPool
                engine = _sqlite_engine(async_url, **kwargs)
                event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
                return cls(engine)
            Path(str(async_url.database)).parent.mkdir(parents=True, exist_ok=True)
            writer = _sqlite_engine(
                async_url, pool_size=1, max_overflow=0, pool_timeout=WRITER_WAIT_S, **kwargs
            )
            event.listen(writer.sync_engine, "connect", _writer_on_connect)
            event.listen(writer.sync_engine, "begin", _writer_on_begin)
            reader = _sqlite_engine(
                async_url, pool_size=READER_POOL, max_overflow=READER_POOL, **kwargs
            )
            event.listen(reader.sync_engine, "connect", _reader_on_connect)
            sync_reader = create_engine(
                async_url.set(drivername="sqlite+pysqlite"), pool_size=READER_POOL,
                max_overflow=READER_POOL, connect_args={"check_same_thread": False}, **kwargs,
            )  # fmt: skip
            event.listen(sync_reader, "connect", _reader_on_connect)
            return cls(writer, reader, sync_reader)
        # PostgreSQL: readers on pools of their own, so a lookup never waits for a
        # connection a burst of writes holds (at most 34 connections a process); read()'s
        # are kept open, on a loop of their own (module docstring)
        engine = create_async_engine(async_url, pool_size=10, max_overflow=10, **kwargs)
        reader = create_async_engine(async_url, pool_size=2, max_overflow=4, **kwargs)
        loop_reader = create_async_engine(
            async_url, pool_size=PG_READERS, max_overflow=0, isolation_level="AUTOCOMMIT",
            **kwargs,
        )  # fmt: skip
        for each in (engine, reader, loop_reader):
            ping_when_idle(each.sync_engine)
        return cls(engine, reader, loop_reader=loop_reader)

    @property
    def read_engine(self) -> Engine:
        """The (synchronous) engine whose connections :meth:`read` uses."""
        if self._sync_reader is not None:
            return self._sync_reader
        if self._loop_reader is not None:
            return self._loop_reader.sync_engine
        return self.reader.sync_engine

    def _reader_loop(self) -> LoopThread:
        if self._loop_thread is None:
            self._loop_thread = LoopThread("cti-read-loop")
        return self._loop_thread

    async def warm(self) -> None:
        """Open the connections :meth:`read` keeps now (the daemon's start), so no lookup
        of a burst pays for opening one (PostgreSQL: every reader; a SQLite file: one per
        read thread). In memory: nothing to do."""
        if self._sync_reader is not None:
            sync_reader = self._sync_reader

            def open_all() -> None:
                held = [sync_reader.connect() for _ in range(READER_POOL)]
                for conn in held:
                    conn.close()

            await asyncio.to_thread(open_all)
        elif self._loop_reader is not None:
            loop_reader = self._loop_reader

            async def open_readers() -> None:
                held = [await loop_reader.connect() for _ in range(PG_READERS)]
                for aconn in held:
                    await aconn.close()

            await self._reader_loop().run(open_readers())

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def url(self) -> URL:
        return self.engine.url

    def session(self) -> AsyncSession:
        """A new session on the writer path (use as ``async with db.session() as s:``)."""
        return self.sessionmaker()

    def read_session(self) -> AsyncSession:
        """A new read-only session that never waits behind writers (SQLite: a separate
        ``query_only`` connection; PostgreSQL: a pool of its own; in memory: the same)."""
        return self.read_sessionmaker()

    async def read(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` on a read-only session, in one hop (see the module docstring).
        ``fn`` is synchronous; what it returns must not need the session afterwards."""
        if self._loop_sessions is not None:
            sessions = self._loop_sessions

            async def on_its_loop() -> T:
                async with sessions() as session:
                    return await session.run_sync(fn)

            return await self._reader_loop().run(on_its_loop())
        if self._sync_sessions is None:
            async with self.read_session() as session:
                return await session.run_sync(fn)
        if self._read_pool is None:
            self._read_pool = ThreadPoolExecutor(READER_POOL, thread_name_prefix="cti-read")
        factory = self._sync_sessions

        def run() -> T:
            with factory() as session:
                return fn(session)

        return await asyncio.get_running_loop().run_in_executor(self._read_pool, run)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()
        if self._loop_reader is not None and self._loop_thread is not None:
            await self._loop_thread.run(self._loop_reader.dispose())
            self._loop_thread.stop()
            self._loop_thread = None
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=False)
            self._read_pool = None
        if self._sync_reader is not None:
            self._sync_reader.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"


#: A pooled PostgreSQL connection unused this long is pinged before it is handed out.
IDLE_PING_S = 5.0


def ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping`` for connections that sat idle, not for every check-out.

    ``pool_pre_ping`` pings on every check-out: through asyncpg a BEGIN / SELECT 1 /
    ROLLBACK the event loop drives before each transaction, a third of a recording row's
    insert under a burst (decision 0027). A connection returned less than
    ``IDLE_PING_S`` ago was working then; one idle longer (a restarted or failed-over
    server, a firewall that dropped it) is pinged as before, and a failed ping makes the
    pool replace it (``DisconnectionError``: the pool retries with a fresh connection).
    A connection that dies within that time of its last use fails its statement once;
    SQLAlchemy then invalidates it and every connection of the pool older than the
    failure, so the next check-outs reconnect (the hot path's writers retry:
    ``Recorder._write``, the ``QueueWorker`` writers)."""

    @event.listens_for(engine, "connect")
    def _fresh(dbapi_connection: Any, record: Any) -> None:
        record.info["cti_used_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _used(dbapi_connection: Any, record: Any) -> None:
        record.info["cti_used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get("cti_used_at", 0.0) < IDLE_PING_S:
            return
        try:
            ok = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"idle connection failed its ping: {exc!r}") from exc
        if not ok:
            raise DisconnectionError("idle connection failed its ping")
