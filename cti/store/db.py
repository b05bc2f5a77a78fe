"""The database handle: one async engine + session factory for SQLite or PostgreSQL.

URLs accepted (anything else raises :class:`StoreConfigError`):

- ``sqlite+aiosqlite:///path/to/cti.db`` or ``sqlite:///path/to/cti.db`` (the parent
  directory is created; every connection gets WAL, foreign keys, a busy timeout and
  ``synchronous=NORMAL``). ``sqlite://`` / ``sqlite:///:memory:`` is one in-memory
  database shared by the engine (tests, tools).
- ``postgresql+asyncpg://user@host/db``, ``postgresql://...`` or ``postgres://...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "Database",
    "StoreConfigError",
    "is_data_error",
    "to_async_url",
]

#: How long a SQLite writer waits for another writer (CLI next to the daemon) before
#: giving up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

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


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class Database:
    """An :class:`AsyncEngine` and its session factory. Create with :meth:`from_url`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )

    @classmethod
    def from_url(cls, url: str | URL, *, echo: bool = False) -> Database:
        async_url = to_async_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if async_url.get_backend_name() == "sqlite":
            if _is_memory(async_url):
                kwargs["poolclass"] = StaticPool
            else:
                Path(str(async_url.database)).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(async_url, **kwargs)
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        else:
            kwargs["pool_pre_ping"] = True
            engine = create_async_engine(async_url, **kwargs)
        return cls(engine)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def url(self) -> URL:
        return self.engine.url

    def session(self) -> AsyncSession:
        """A new session (use as ``async with db.session() as s:``)."""
        return self.sessionmaker()

    async def dispose(self) -> None:
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"
