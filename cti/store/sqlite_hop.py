"""aiosqlite with one thread hop a statement, for the SQLite writer engine.

aiosqlite runs every call on the connection's own thread and the event loop waits for
each: SQLAlchemy's adapter makes a statement four of them (open a cursor, execute, fetch
the rows, close), and the pool's reset a fifth (a ROLLBACK after every COMMIT). Each
costs the daemon's loop ~50 µs of CPU (the queue's wake-up, the self-pipe, the task's
resumption): a burst's writers made ~22 a call, decision 0027. Here a statement is one
hop: the cursor is opened, executed, read (up to ``FIRST_ROWS`` rows) and closed in the
thread; a larger result keeps its cursor open there and is read on demand, as before (a
stream of a million rows is never held at once). A ROLLBACK outside a transaction is
not sent (there is nothing to roll back; ``sqlite3``'s ``in_transaction`` says so).

Same statements, same order, same errors (raised in the thread, given to the caller).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import aiosqlite

__all__ = ["FIRST_ROWS", "OneHopConnection", "connect"]

#: Rows read with the statement, in its hop; a larger result is read in chunks as asked.
FIRST_ROWS = 256

T = TypeVar("T")

_Description = tuple[tuple[str, None, None, None, None, None, None], ...] | None


class _Outcome:
    """What one hop brings back from the thread."""

    __slots__ = ("cursor", "description", "lastrowid", "rowcount", "rows")

    def __init__(
        self,
        cursor: sqlite3.Cursor | None,
        description: _Description,
        rows: list[Any],
        rowcount: int,
        lastrowid: int | None,
    ) -> None:
        self.cursor = cursor  # still open: more rows to read
        self.description = description
        self.rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid


def _run(conn: sqlite3.Connection, many: bool, sql: str, parameters: Any) -> _Outcome:
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows: list[Any] = []
        if description is not None:
            rows = cursor.fetchmany(FIRST_ROWS)
        outcome = _Outcome(cursor, description, rows, cursor.rowcount, cursor.lastrowid)
    except BaseException:
        cursor.close()
        raise
    if len(rows) < FIRST_ROWS:  # read whole: the cursor is done with
        cursor.close()
        outcome.cursor = None
    return outcome


def _more(cursor: sqlite3.Cursor, size: int | None) -> tuple[list[Any], int, bool]:
    """Up to ``size`` more rows (all with None); closes the cursor at the end."""
    rows = cursor.fetchall() if size is None else cursor.fetchmany(size)
    done = size is None or len(rows) < size
    rowcount = cursor.rowcount
    if done:
        cursor.close()
    return rows, rowcount, done


class OneHopCursor:
    """The part of :class:`aiosqlite.Cursor` SQLAlchemy's adapter uses, one hop a
    statement."""

    def __init__(self, conn: OneHopConnection) -> None:
        self._conn = conn
        self._open: sqlite3.Cursor | None = None  # in the thread, rows left to read
        self._rows: deque[Any] = deque()
        self.description: _Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _statement(self, many: bool, sql: str, parameters: Any) -> OneHopCursor:
        await self.close()
        outcome: _Outcome = await self._conn.hop(
            partial(_run, self._conn._conn, many), sql, parameters
        )
        self._open = outcome.cursor
        self._rows = deque(outcome.rows)
        self.description = outcome.description
        self.rowcount = outcome.rowcount
        self.lastrowid = outcome.lastrowid
        return self

    async def execute(self, sql: str, parameters: Any = None) -> OneHopCursor:
        return await self._statement(False, sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneHopCursor:
        return await self._statement(True, sql, parameters)

    async def _read(self, size: int | None) -> None:
        cursor = self._open
        if cursor is None:
            return
        rows, self.rowcount, done = await self._conn.hop(_more, cursor, size)
        self._rows.extend(rows)
        if done:
            self._open = None

    async def fetchone(self) -> Any:
        if not self._rows:
            await self._read(FIRST_ROWS)
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        wanted = self.arraysize if size is None else size
        if len(self._rows) < wanted:
            await self._read(max(wanted - len(self._rows), FIRST_ROWS))
        return [self._rows.popleft() for _ in range(min(wanted, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        await self._read(None)
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            row = await self.fetchone()
            if row is None:
                return
            yield row

    async def close(self) -> None:
        self._rows.clear()
        cursor, self._open = self._open, None
        if cursor is not None:
            await self._conn.hop(cursor.close)


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


class OneHopConnection(aiosqlite.Connection):
    """:class:`aiosqlite.Connection` whose cursors take one hop a statement."""

    async def hop(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the connection's thread."""
        result: T = await self._execute(fn, *args)  # type: ignore[no-untyped-call]
        return result

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` on the ``sqlite3`` connection between ``BEGIN IMMEDIATE`` and
        ``COMMIT`` (``ROLLBACK`` if it raises), all in one hop: the transaction is whole
        in the thread even if the caller stops waiting (:mod:`cti.store.hot_write`)."""
        return await self.hop(_transaction, self._conn, fn)

    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        # SQLAlchemy's adapter enters what cursor() returns: nothing to do in the thread
        return OneHopCursor(self)

    async def rollback(self) -> None:
        conn = self._connection
        if conn is not None and not conn.in_transaction:
            return  # the pool's reset after a COMMIT: nothing to roll back
        await super().rollback()


def connect(database: str, **kwargs: Any) -> OneHopConnection:
    """Like :func:`aiosqlite.connect` (await it), for ``create_async_engine``'s
    ``async_creator``."""
    conn = OneHopConnection(partial(sqlite3.connect, database, **kwargs), 64)
    conn._thread.daemon = True  # as SQLAlchemy's dialect does for aiosqlite's own
    return conn
