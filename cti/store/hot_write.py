"""Hot writes: Core statements compiled once per dialect, run as one transaction on the
writer's own driver connection (decision 0027, "Hot-path writers off the ORM").

A burst's writers (the CRM's rings and answers, the recording rows, the statistics'
channel links) made a transaction or more a call, each through an ORM session: the
session, its unit of work and SQLAlchemy's per-statement execution cost the daemon's event
loop, the one that makes the pops, many times what the driver needs. Here a write is a
*plan*, as :mod:`cti.store.hot_read`'s reads are: a generator that yields statements
(:class:`Write` s called with their values, or :class:`~cti.store.hot_read.Statement`
selects) and is sent each one's result, then returns its own.
:meth:`cti.store.db.Database.write` runs it in one transaction:

- on SQLite on **the one writer connection** (checked out of the writer pool like any
  session, so writers still queue for it in FIFO order), in **one thread hop**: ``BEGIN
  IMMEDIATE``, the statements, ``COMMIT`` (or ``ROLLBACK``) in the connection's thread,
  the plan's own Python with them;
- on PostgreSQL on a connection of the writer pool, through asyncpg directly (its
  statement cache prepares each statement once), ``BEGIN`` ... ``COMMIT``.

The statements are SQLAlchemy Core built with the models and bound parameters (no SQL by
string building); the values are processed by the columns' types as SQLAlchemy would
(SQLite's datetimes, :class:`cti.store.models.UTCDateTime`), the Python-side defaults of
the columns not given are filled as Core fills them (an INSERT's ``default``, an UPDATE's
``onupdate``), and the driver's errors are raised as SQLAlchemy's (``IntegrityError``,
``OperationalError``...), so :func:`cti.store.db.is_data_error` and the writers' retries
judge them as before. What an ORM session did besides the SQL, the callers do themselves:
the CRM's card-cache invalidation (``crm_bridge.directory.history_written``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Dialect, Table
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.schema import ColumnDefault

from cti.store.hot_read import Bound as Select
from cti.store.hot_read import Compiled as CompiledSelect
from cti.store.hot_read import Rows, _Processor, _result_processor, processed_rows

__all__ = [
    "Call",
    "CompiledWrite",
    "Many",
    "Step",
    "Write",
    "WritePlan",
    "detached",
    "drive_asyncpg",
    "drive_sync",
    "full_row",
    "plan_of",
]

T = TypeVar("T")
M = TypeVar("M")


class CompiledWrite:
    """A :class:`Write` for one dialect: the SQL, its arguments from named values (the
    columns' Python-side defaults filled for what is not given), and the RETURNING rows'
    processing."""

    __slots__ = (
        "_binds", "_fill", "_literals", "_names", "_required", "_results", "returning", "sql",
    )  # fmt: skip

    def __init__(self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect, column_keys=list(keys)))
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: a positional paramstyle is expected")
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup)
        binds = compiled.binds
        if any(b.expanding for b in binds.values()):  # an IN of a list: one per length
            raise ValueError("expanding parameters are not supported: bind each value")
        self._binds = tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self._names
        )
        self._required = frozenset(n for n in self._names if binds[n].required)
        self._literals = dict(compiled.params)
        fill: dict[str, ColumnDefault] = {}
        prefetch = [(c, c.default) for c in compiled.insert_prefetch]
        prefetch += [(c, c.onupdate) for c in compiled.update_prefetch]
        for col, default in prefetch:
            if not isinstance(default, ColumnDefault) or not (
                default.is_scalar or default.is_callable
            ):
                raise ValueError(f"column {col.key}: only scalar or callable defaults are filled")
            fill[col.key] = default
        self._fill = fill
        returning = compiled.effective_returning
        results: tuple[_Processor, ...] = tuple(
            _result_processor(col.type, dialect) for col in (returning or ())
        )
        self._results: tuple[_Processor, ...] | None = (
            results if returning and any(p is not None for p in results) else None
        )
        self.returning = bool(returning)

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with the defaults of the statement's other columns filled (what the
        row gets); a missing required value is a ``ValueError`` (a data error)."""
        out = dict(params)
        for name in self._names:
            if name in out:
                continue
            default = self._fill.get(name)
            if default is not None:
                out[name] = default.arg(None) if default.is_callable else default.arg
            elif name in self._required:
                raise ValueError(f"a value is required for {name!r}")
            else:
                out[name] = self._literals.get(name)
        return out

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's positional arguments of :meth:`values`' result."""
        return tuple(
            values[n] if p is None else p(values[n])
            for n, p in zip(self._names, self._binds, strict=True)
        )

    def rows(self, raw: Sequence[Sequence[Any]]) -> Rows:
        return processed_rows(raw, self._results)


class Write:
    """An INSERT / UPDATE / DELETE (optionally RETURNING) built with Core and bound
    parameters, for the value names ``keys``, compiled once per dialect. ``stmt`` may be
    a function of the dialect's name (an upsert or insert-or-ignore differs by dialect).

    ``w(**values)`` is one execution (its result: the RETURNING rows, else the row count);
    ``w.many(rows)`` one executemany (its result: the RETURNING rows of each, in order,
    else None). An insert-or-ignore's ignored row returns none: on SQLite its entry is
    empty, on PostgreSQL it has no entry (asyncpg's list is flat), so such a plan reads
    the rows in order and matches them by a returned key (recordings.store's rows)."""

    def __init__(
        self, stmt: ClauseElement | Callable[[str], ClauseElement], keys: Sequence[str]
    ) -> None:
        self._stmt = stmt
        self.keys = tuple(keys)
        self._compiled: dict[tuple[str, str], CompiledWrite] = {}

    def compiled(self, dialect: Dialect) -> CompiledWrite:
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            stmt = self._stmt if isinstance(self._stmt, ClauseElement) else self._stmt(dialect.name)
            found = self._compiled[key] = CompiledWrite(stmt, dialect, self.keys)
        return found

    def __call__(self, **values: Any) -> Call:
        return Call(self, values)

    def many(self, rows: Sequence[Mapping[str, Any]]) -> Many:
        return Many(self, rows)


class Call:
    """One execution of a :class:`Write` (what a plan yields)."""

    __slots__ = ("params", "write")

    def __init__(self, write: Write, params: Mapping[str, Any]) -> None:
        self.write, self.params = write, params


class Many:
    """An executemany of a :class:`Write` (what a plan yields)."""

    __slots__ = ("rows", "write")

    def __init__(self, write: Write, rows: Sequence[Mapping[str, Any]]) -> None:
        self.write, self.rows = write, rows


#: what a write plan yields
Step = Select | Call | Many
#: yields statements, is sent each one's result (rows, a row count, rows of each, None),
#: returns the plan's result
WritePlan = Generator[Step, Any, T]


def drive_sync(plan: WritePlan[T], conn: Any, dialect: Dialect) -> T:
    """Run ``plan`` to its end on a ``sqlite3`` connection, inside the transaction the
    caller opened (in the connection's thread: this is its one hop)."""
    try:
        step = next(plan)
        while True:
            result: Any
            if isinstance(step, Select):
                sel: CompiledSelect = step.statement.compiled(dialect)
                result = sel.rows(conn.execute(sel.sql, sel.args(step.params)).fetchall())
            elif isinstance(step, Call):
                w = step.write.compiled(dialect)
                cursor = conn.execute(w.sql, w.args(w.values(step.params)))
                result = w.rows(cursor.fetchall()) if w.returning else cursor.rowcount
            else:
                w = step.write.compiled(dialect)
                args = [w.args(w.values(row)) for row in step.rows]
                if w.returning:  # sqlite3's executemany drops the rows RETURNING gives
                    result = [w.rows(conn.execute(w.sql, a).fetchall()) for a in args]
                else:
                    conn.executemany(w.sql, args)
                    result = None
            step = plan.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done


async def drive_asyncpg(plan: WritePlan[T], driver: Any, dialect: Dialect) -> T:
    """Run ``plan`` to its end on an asyncpg connection, inside the transaction the caller
    opened."""
    try:
        step = next(plan)
        while True:
            result: Any
            if isinstance(step, Select):
                sel: CompiledSelect = step.statement.compiled(dialect)
                result = sel.rows(await driver.fetch(sel.sql, *sel.args(step.params)))
            elif isinstance(step, Call):
                w = step.write.compiled(dialect)
                args = w.args(w.values(step.params))
                if w.returning:
                    result = w.rows(await driver.fetch(w.sql, *args))
                else:
                    status = await driver.execute(w.sql, *args)
                    result = _count(status)
            else:
                w = step.write.compiled(dialect)
                many = [w.args(w.values(row)) for row in step.rows]
                if w.returning:  # one row each (an INSERT ... RETURNING)
                    result = [w.rows([r]) for r in await driver.fetchmany(w.sql, many)]
                else:
                    if many:
                        await driver.executemany(w.sql, many)
                    result = None
            step = plan.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done


def _count(status: str) -> int:
    """The row count of an asyncpg command status (``UPDATE 3``, ``INSERT 0 1``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


def detached(model: type[M], columns: Sequence[str], row: Sequence[Any]) -> M:
    """A written row as the detached object an ORM session returned: every column
    (``columns``, in ``row``'s order) loaded, attached to no session."""
    obj = model(**dict(zip(columns, row, strict=True)))
    make_transient_to_detached(obj)
    return obj


def full_row(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` for every column of ``table`` but an autoincrement primary key: the
    column's Python-side default (scalar or callable, as the ORM fills it), else None. A
    name that is no column is a ``TypeError`` (as the ORM's constructor raises); a column
    with only a server-side default must be given (None would replace it)."""
    out: dict[str, Any] = {}
    for col in table.columns:
        key = col.key
        if key in values:
            out[key] = values[key]
        elif col.primary_key and col.autoincrement in (True, "auto"):
            continue
        elif isinstance(col.default, ColumnDefault) and col.default.is_callable:
            out[key] = col.default.arg(None)
        elif isinstance(col.default, ColumnDefault) and col.default.is_scalar:
            out[key] = col.default.arg
        elif col.default is None and col.server_default is None:
            out[key] = None
        else:
            raise ValueError(f"column {key}: its default is not filled here, give it")
    if len(values) > len(out) or not values.keys() <= out.keys():
        unknown = sorted(set(values) - set(out))
        raise TypeError(f"{table.name}: no column {unknown}")
    return out


def plan_of(*steps: Step) -> Callable[[], WritePlan[None]]:
    """A plan that runs ``steps`` in order and returns nothing (a batch of writes)."""

    def plan() -> WritePlan[None]:
        for step in steps:  # noqa: UP028 (a plan is sent results: not a plain iterator)
            yield step

    return plan
