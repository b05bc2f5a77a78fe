"""The CRM models and the crm_0001 migration agree (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, String

import crm_bridge.models  # noqa: F401  (puts the CRM tables on Base.metadata)
from cti.store.db import Database
from cti.store.models import Base


def _crm_diff(conn: Connection, extra_column: bool = False) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        if table.name.startswith("crm_"):
            table.to_metadata(metadata)
    if extra_column:
        metadata.tables["crm_contacts"].append_column(Column("extra", String(8)))
    # the trigram indexes crm_0002 adds on PostgreSQL only (when pg_trgm is available) are
    # not in the models: the same models serve SQLite (docs/decisions/0011-crm-search.md)
    return [
        d
        for d in compare_metadata(ctx, metadata)
        if "crm_" in repr(d) and not (d[0] == "remove_index" and d[1].name.endswith("_trgm"))
    ]


async def test_crm_models_match_migration(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_crm_diff) == []
        # ... and the comparison does see a difference when there is one
        diffs = await conn.run_sync(_crm_diff, True)
    assert [d[0] for d in diffs] == ["add_column"]
