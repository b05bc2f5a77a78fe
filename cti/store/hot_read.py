"""Hot reads: Core statements compiled once per dialect, run on the driver's own
connection, rows as plain tuples (decision 0027, "Cheaper hot reads").

A card lookup through an ORM session (a Session, entity loading, on PostgreSQL
``AsyncSession.run_sync`` and its greenlet) cost the event loop that serves the pops a
share of the GIL many times what the driver itself needs. A :class:`Statement` is a
SQLAlchemy Core ``select`` (built with the models, bound with ``bindparam``: no SQL by
string building) compiled once for each dialect, with its columns' bind and result
processors taken from their types, so the values are the ones an ORM read would give
(SQLite's datetimes parsed, :class:`cti.store.models.UTCDateTime` aware, clean text).

A read is a *plan*: a generator that yields :class:`Bound` statements and is sent each
one's rows, then returns its result. :meth:`cti.store.db.Database.fetch` drives it in one
hop on a connection of its own (SQLite: the raw ``sqlite3`` connection of a ``query_only``
reader, in the read threads; PostgreSQL: the asyncpg connection, on the read loop, whose
statement cache makes each statement one prepared ``Bind/Execute`` round trip).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Dialect, Float, Select
from sqlalchemy.types import TypeEngine

__all__ = ["Bound", "Compiled", "Plan", "Rows", "Statement", "drive", "processed_rows"]

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
#: yields the statements to run, is sent each one's rows, returns the read's result
Plan = Generator["Bound", Rows, T]
_Processor = Callable[[Any], Any] | None


class Compiled:
    """A :class:`Statement` for one dialect: the SQL text, how to turn named values into
    the driver's positional arguments, and how to turn the driver's rows into values."""

    __slots__ = ("_binds", "_defaults", "_names", "_results", "sql")

    def __init__(self, stmt: Select[*tuple[Any, ...]], dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: a positional paramstyle is expected")
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup)
        self._defaults = dict(compiled.params)  # literal values (LIMIT 1, OFFSET 0)
        self._binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._names
        )
        results = tuple(_result_processor(col.type, dialect) for col in stmt.selected_columns)
        self._results: tuple[_Processor, ...] | None = (
            results if any(p is not None for p in results) else None
        )

    def args(self, params: dict[str, Any]) -> tuple[Any, ...]:
        defaults = self._defaults
        values = [params[n] if n in params else defaults[n] for n in self._names]
        return tuple(v if p is None else p(v) for v, p in zip(values, self._binds, strict=True))

    def rows(self, raw: Sequence[Sequence[Any]]) -> Rows:
        return processed_rows(raw, self._results)


def processed_rows(raw: Sequence[Sequence[Any]], procs: tuple[_Processor, ...] | None) -> Rows:
    """The driver's rows as tuples, each value through its column's result processor
    (``procs`` None: no column has one)."""
    if procs is None:
        return [tuple(row) for row in raw]
    return [tuple(v if p is None else p(v) for v, p in zip(row, procs, strict=True)) for row in raw]


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> _Processor:
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, Float) and not impl.asdecimal:
        # both drivers return a float (asyncpg's processor wants the column's type code)
        return None
    processor: _Processor = impl.result_processor(dialect, None)
    return processor


class Statement:
    """A Core ``select`` compiled once per dialect; call it with the values of its
    ``bindparam`` s to get what a plan yields."""

    def __init__(self, stmt: Select[*tuple[Any, ...]]) -> None:
        self.stmt = stmt
        self._compiled: dict[tuple[str, str], Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = Compiled(self.stmt, dialect)
        return found

    def __call__(self, **params: Any) -> Bound:
        return Bound(self, params)


class Bound:
    """A statement with its values (what a plan yields)."""

    __slots__ = ("params", "statement")

    def __init__(self, statement: Statement, params: dict[str, Any]) -> None:
        self.statement, self.params = statement, params


def drive(plan: Plan[T], run: Callable[[Compiled, tuple[Any, ...]], Rows], dialect: Dialect) -> T:
    """Run ``plan`` to its end with a synchronous ``run(compiled, args) -> rows``."""
    try:
        bound = next(plan)
        while True:
            compiled = bound.statement.compiled(dialect)
            bound = plan.send(run(compiled, compiled.args(bound.params)))
    except StopIteration as stop:
        result: T = stop.value
        return result
