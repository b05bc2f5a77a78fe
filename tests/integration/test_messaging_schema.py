"""The messaging models and the messaging_0001 migration agree (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData

import messaging.models  # noqa: F401  (puts the tables on Base.metadata)
from cti.store.db import Database
from cti.store.models import Base


def _diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        if table.name.startswith("msg_"):
            table.to_metadata(metadata)
    return [d for d in compare_metadata(ctx, metadata) if "msg_" in repr(d)]


async def test_messaging_models_match_migration(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
