"""Insert-or-ignore, the one way the store writes a row that may already be there.

``insert_ignore(session, table, key)`` is an INSERT that a conflict on ``key`` (a primary
key or unique index; None: any) turns into nothing, on SQLite and PostgreSQL alike
(``ON CONFLICT DO NOTHING``). Add ``.values(...)`` and execute it: its ``rowcount`` says
how many rows went in, so of several writers racing on one key exactly one sees 1, which
is what claims (a digest's day, a fired rule, a filed Message-ID) are built on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["insert_ignore", "insert_ignore_on"]


def insert_ignore(session: AsyncSession, table: Any, key: Sequence[str] | None = None) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return insert_ignore_on(dialect, table, key)


def insert_ignore_on(dialect: str, table: Any, key: Sequence[str] | None = None) -> Any:
    """:func:`insert_ignore` for the dialect named ``dialect`` (a statement built once for
    :class:`cti.store.hot_write.Write`)."""
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return ins.on_conflict_do_nothing(index_elements=list(key) if key is not None else None)
