"""Counting a database's transactions on the writer path, for the tests that say how many
a burst takes: an ORM session's or a Core connection's (the engine's ``begin`` event) and
a hot-path write's (:meth:`cti.store.db.Database.write`, which opens its own)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy

from cti.store.db import Database


def count_transactions(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at each transaction begun on ``db``'s writer path."""
    begins: list[int] = []
    sqlalchemy.event.listen(db.engine.sync_engine, "begin", lambda _conn: begins.append(1))
    write = db.write

    async def counted(make: Any) -> Any:
        begins.append(1)
        return await write(make)

    monkeypatch.setattr(db, "write", counted)
    return begins
