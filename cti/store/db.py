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
  event loop), elsewhere through ``AsyncSession.run_sync``.
- :meth:`Database.write` is the hot path's write (:mod:`cti.store.hot_write`): Core
  statements compiled once, one transaction on the writer path's own connection (a
  SQLite file: the one writer connection, checked out of its pool in FIFO order like a
  session, the whole ``BEGIN IMMEDIATE`` ... ``COMMIT`` in one thread hop), no ORM.
- :meth:`Database.fetch` is the hot path's read (the caller's card and history): the same
  one hop and read-only connections, kept for it, but no ORM: Core statements compiled
  once (:mod:`cti.store.hot_read`) on the driver's connection (the raw ``sqlite3`` one;
  asyncpg's, whose statement cache prepares each once). The ORM's Python in a read
  thread took the GIL from the loop that makes the pops (decision 0027).

In-memory SQLite has one engine for both. PostgreSQL has a reader engine with its own
pool for :meth:`Database.read_session` (MVCC: readers never wait for writers' locks, only
for connections), and :meth:`Database.fetch` (and :meth:`Database.read`) run on an event
loop of its own in one thread, on connections in autocommit (no BEGIN/ROLLBACK round
trips), fetch's ``PG_READERS`` opened at start (:meth:`Database.warm`) and kept:
through asyncpg every step of a query (pool check-out, ping, each statement) is a round
trip that waited for the daemon's busy loop, and a connection opened for a burst (a
server process, the dialect's codec setup) was closed again on return; card lookups at a
call's entry took up to 1.3 s under a burst, so half the pops rang before their card was
read (decision 0027). The main loop now waits for one hop, as on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL, CursorResult, make_url
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    StatementError,
)
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection, StaticPool
from sqlalchemy.util import greenlet_spawn

from cti.store import sqlite_hop
from cti.store.hot_read import Compiled, Plan, Rows, drive
from cti.store.hot_write import WritePlan, drive_asyncpg, drive_sync

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
log = logging.getLogger(__name__)

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


#: what a kept PostgreSQL connection raises when its server process is gone
_PG_GONE = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # e.g. still reading the server's goodbye
    ConnectionError,
    OSError,
)


def _pg_broken(reader: _PgReader, exc: BaseException) -> bool:
    """Whether a connection that raised ``exc`` must not be used again: gone, or stopped
    mid-statement (cancelled). An error of the statement (SQL) leaves it usable."""
    if reader.driver.is_closed() or isinstance(exc, _PG_GONE):
        return True
    return not isinstance(exc, asyncpg.exceptions.PostgresError)


async def _run_plan(driver: Any, plan: Plan[T], dialect: Any) -> T:
    """:func:`cti.store.hot_read.drive` on an asyncpg connection."""
    fetch = driver.fetch
    try:
        bound = next(plan)
        while True:
            compiled = bound.statement.compiled(dialect)
            raw = await fetch(compiled.sql, *compiled.args(bound.params))
            bound = plan.send(compiled.rows(raw))
    except StopIteration as stop:
        result: T = stop.value
        return result


class _PgReader:
    """A connection of the read loop's pool kept checked out for :meth:`Database.fetch`,
    with its asyncpg connection (whose statement cache prepares each statement once)."""

    __slots__ = ("conn", "driver")

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        self.conn, self.driver = conn, driver

    @classmethod
    async def open(cls, engine: AsyncEngine) -> _PgReader:
        conn = await engine.connect()
        try:
            raw = await conn.get_raw_connection()
        except BaseException:
            await conn.close()
            raise
        return cls(conn, raw.driver_connection)

    async def drop(self) -> None:
        """Give it up (the pool opens a new one for the next)."""
        try:
            await self.conn.invalidate()
            await self.conn.close()
        except Exception:  # already gone: nothing to give back
            log.debug("dropping a broken reader failed", exc_info=True)


class _Statements:
    """A SQLAlchemy connection as :func:`~cti.store.hot_write.drive_sync` uses a ``sqlite3``
    one (the driver's SQL and positional arguments; SQLAlchemy's errors)."""

    def __init__(self, conn: SyncConnection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: tuple[Any, ...]) -> CursorResult[Any]:
        return self._conn.exec_driver_sql(sql, args)

    def executemany(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        if args:
            self._conn.exec_driver_sql(sql, args)


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
        # fetch()'s connections, kept: SQLite's (any read thread takes a free one) and
        # PostgreSQL's (None: to open), only ever used on the read loop
        self._sqlite_kept: list[PoolProxiedConnection] = []
        self._pg_kept: asyncio.Queue[_PgReader | None] = asyncio.Queue()
        for _ in range(PG_READERS if loop_reader is not None else 0):
            self._pg_kept.put_nowait(None)
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
            sync_reader = create_engine(  # fetch()'s kept connections + read()'s
                async_url.set(drivername="sqlite+pysqlite"), pool_size=2 * READER_POOL,
                max_overflow=READER_POOL, connect_args={"check_same_thread": False}, **kwargs,
            )  # fmt: skip
            event.listen(sync_reader, "connect", _reader_on_connect)
            return cls(writer, reader, sync_reader)
        # PostgreSQL: readers on pools of their own, so a lookup never waits for a
        # connection a burst of writes holds (at most 38 connections a process); fetch()'s
        # PG_READERS are kept open, on a loop of their own with read()'s (module docstring)
        engine = create_async_engine(async_url, pool_size=10, max_overflow=10, **kwargs)
        reader = create_async_engine(async_url, pool_size=2, max_overflow=4, **kwargs)
        loop_reader = create_async_engine(
            async_url, pool_size=PG_READERS + 2, max_overflow=2, isolation_level="AUTOCOMMIT",
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
        """Open the connections :meth:`fetch` keeps now (the daemon's start), so no lookup
        of a burst pays for opening one (PostgreSQL: ``PG_READERS``; a SQLite file: one per
        read thread). In memory: nothing to do."""
        if self._sync_reader is not None:
            sync_reader, kept = self._sync_reader, self._sqlite_kept

            def open_all() -> None:
                while len(kept) < READER_POOL:
                    kept.append(sync_reader.raw_connection())

            await asyncio.to_thread(open_all)
        elif self._loop_reader is not None:
            loop_reader, kept_pg = self._loop_reader, self._pg_kept

            async def open_readers() -> None:
                for _ in range(kept_pg.qsize()):
                    each = kept_pg.get_nowait()
                    if each is None:
                        each = await _PgReader.open(loop_reader)
                    kept_pg.put_nowait(each)

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

    async def fetch(self, make: Callable[[], Plan[T]]) -> T:
        """Run the plan ``make()`` (:mod:`cti.store.hot_read`) on a read-only connection
        kept for it, in one hop, with no ORM: what :meth:`read` does for the hot path at a
        fraction of its Python. On PostgreSQL a plan whose connection turns out broken (a
        restarted server) is run once more on a new one, so ``make`` may be called twice."""
        if self._loop_reader is not None:
            return await self._reader_loop().run(self._fetch_pg(make))
        if self._sync_reader is None:  # in memory: the one engine, through a session
            dialect = self.reader.dialect

            def on_session(session: Session) -> T:
                conn = session.connection()

                def run(compiled: Compiled, args: tuple[Any, ...]) -> Rows:
                    raw = conn.exec_driver_sql(compiled.sql, args).all()
                    return compiled.rows(raw)

                return drive(make(), run, dialect)

            async with self.read_session() as session:
                return await session.run_sync(on_session)
        if self._read_pool is None:
            self._read_pool = ThreadPoolExecutor(READER_POOL, thread_name_prefix="cti-read")
        return await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._fetch_sqlite, make
        )

    def _fetch_sqlite(self, make: Callable[[], Plan[T]]) -> T:
        assert self._sync_reader is not None
        kept = self._sqlite_kept
        try:
            fairy = kept.pop()  # atomic: each read thread holds at most one
        except IndexError:
            fairy = self._sync_reader.raw_connection()
        try:
            conn = fairy.driver_connection
            assert conn is not None

            def run(compiled: Compiled, args: tuple[Any, ...]) -> Rows:
                return compiled.rows(conn.execute(compiled.sql, args).fetchall())

            return drive(make(), run, self._sync_reader.dialect)
        finally:
            kept.append(fairy)

    async def _fetch_pg(self, make: Callable[[], Plan[T]]) -> T:
        assert self._loop_reader is not None
        loop_reader, dialect = self._loop_reader, self._loop_reader.dialect
        reader = await self._pg_kept.get()
        try:
            for attempt in range(2):
                if reader is None or reader.driver.is_closed():
                    if reader is not None:
                        await reader.drop()
                    reader = None
                    reader = await _PgReader.open(loop_reader)
                try:
                    return await _run_plan(reader.driver, make(), dialect)
                except BaseException as exc:
                    if not _pg_broken(reader, exc):
                        raise
                    await reader.drop()
                    reader = None
                    if attempt or not isinstance(exc, _PG_GONE):
                        raise
            raise AssertionError("unreachable")
        finally:
            self._pg_kept.put_nowait(reader)

    async def write(self, make: Callable[[], WritePlan[T]]) -> T:
        """Run the plan ``make()`` (:mod:`cti.store.hot_write`) in one transaction on the
        writer path (its pool's connection, so it queues with the sessions; SQLite: the
        one writer connection, ``BEGIN IMMEDIATE`` ... ``COMMIT`` in one thread hop;
        PostgreSQL: asyncpg's ``BEGIN`` ... ``COMMIT``). Nothing of it is kept if it
        raises. The driver's errors are raised as SQLAlchemy's (``IntegrityError``,
        ``OperationalError``...); a connection that turns out broken is given up (the pool
        opens another), as a session's would be. Not retried here: the callers' writers
        retry (``QueueWorker``, ``Recorder._write``)."""
        engine = self.engine
        dialect = engine.dialect
        if dialect.name == "sqlite" and self._sync_reader is None:
            return await self._write_in_memory(make)
        fairy = await engine.raw_connection()
        try:
            driver = fairy.driver_connection
            if dialect.name == "sqlite":
                assert isinstance(driver, sqlite_hop.OneHopConnection)
                plan = make()
                return await driver.transaction(lambda conn: drive_sync(plan, conn, dialect))
            assert driver is not None
            async with driver.transaction():
                return await drive_asyncpg(make(), driver, dialect)
        except BaseException as exc:
            translated = await self._write_failed(fairy, exc)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            await greenlet_spawn(fairy.close)

    async def _write_in_memory(self, make: Callable[[], WritePlan[T]]) -> T:
        """In memory the engine's one connection is every session's (``StaticPool``): a
        ``BEGIN IMMEDIATE`` of the write's own fails while a session holds a transaction
        ("cannot start a transaction within a transaction"), so the plan runs as a
        session's work runs there, on that connection, joining what is open."""
        dialect = self.engine.dialect
        async with self.session() as session, session.begin():
            return await session.run_sync(
                lambda s: drive_sync(make(), _Statements(s.connection()), dialect)
            )

    async def _write_failed(
        self, fairy: PoolProxiedConnection, exc: BaseException
    ) -> BaseException:
        """What :meth:`write` raises for ``exc``: a driver error as SQLAlchemy's (as
        ``Connection`` does); the connection invalidated when it is gone or was stopped
        mid-transaction (PostgreSQL: a cancelled write; SQLite finishes the hop anyway)."""
        dialect = self.engine.dialect
        dbapi = dialect.loaded_dbapi
        err: BaseException = exc
        if dialect.name == "postgresql" and isinstance(exc, Exception):
            try:
                AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, exc)
            except Exception as mapped:
                err = mapped
        gone = False
        if dialect.name == "postgresql":
            driver = fairy.driver_connection
            gone = not isinstance(exc, Exception) or bool(driver is None or driver.is_closed())
        if isinstance(err, dbapi.Error):
            gone = gone or dialect.is_disconnect(err, fairy.dbapi_connection, None)
        if gone and fairy.is_valid:
            await greenlet_spawn(fairy.invalidate, err if isinstance(err, Exception) else None)
        if not isinstance(err, dbapi.Error):
            return exc
        return DBAPIError.instance(
            None, None, err, dbapi.Error, dialect=dialect, connection_invalidated=gone
        )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()
        while self._sqlite_kept:
            self._sqlite_kept.pop().close()
        if self._loop_reader is not None and self._loop_thread is not None:
            kept = self._pg_kept

            async def close_kept() -> None:
                while not kept.empty():
                    each = kept.get_nowait()
                    if each is not None:
                        await each.conn.close()

            await self._loop_thread.run(close_kept())
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
