"""The CRM models and the crm_0001 migration agree (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
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
    # not in the models: the same models serve SQLite (docs/decisions/0011-crm-search.md);
    # nor is SQLite's FTS5 table crm_search_fts (crm_0005) and its shadow tables, nor
    # PostgreSQL's crm_search_trigrams (crm_0007, kept by triggers)
    return [
        d
        for d in compare_metadata(ctx, metadata)
        if "crm_" in repr(d)
        and not (d[0] == "remove_index" and d[1].name.endswith("_trgm"))
        and not (d[0] == "remove_table" and d[1].name.startswith("crm_search_fts"))
        and not (d[0] == "remove_table" and d[1].name == "crm_search_trigrams")
    ]


async def test_crm_models_match_migration(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_crm_diff) == []
        # ... and the comparison does see a difference when there is one
        diffs = await conn.run_sync(_crm_diff, True)
    assert [d[0] for d in diffs] == ["add_column"]


async def test_crm_0004_makes_existing_tags_searchable_and_reads_regions(db_url: str) -> None:
    """A customer stored before crm_0004 is found by its tag afterwards and has the
    region of its first number."""
    import asyncio

    from sqlalchemy import text

    from cti.store.migrate import upgrade

    await asyncio.to_thread(upgrade, db_url, "crm_0003")
    db = Database.from_url(db_url)
    try:
        async with db.engine.begin() as conn:
            now = "2026-01-01 00:00:00"
            await conn.execute(
                text(
                    "INSERT INTO crm_customers (id, kind, name, name_key, company, company_key,"
                    " tier, tags, notes, created_at, updated_at) VALUES (7, 'person', 'A', 'a',"
                    " '', '', '', ',Big VIP,', '', :now, :now)"
                ).bindparams(now=datetime.fromisoformat(now))
            )
            await conn.execute(
                text(
                    "INSERT INTO crm_contacts (id, customer_id, name, name_key, title, tags,"
                    " notes, created_at, updated_at) VALUES (8, 7, 'A', 'a', '', '', '', :now,"
                    " :now)"
                ).bindparams(now=datetime.fromisoformat(now))
            )
            await conn.execute(
                text(
                    "INSERT INTO crm_phones (contact_id, customer_id, raw, e164, label) VALUES"
                    " (8, 7, '13912345678', '+8613912345678', '')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO crm_search (customer_id, names, phones, emails) VALUES"
                    " (7, 'a\n', '+8613912345678', '')"
                )
            )
        await asyncio.to_thread(upgrade, db_url)
        async with db.engine.connect() as conn:
            names = (await conn.execute(text("SELECT names FROM crm_search"))).scalar()
            region = (await conn.execute(text("SELECT region FROM crm_customers"))).scalar()
        assert names == "a\n\nbigvip"
        assert region == "江苏省常州市"
    finally:
        await db.dispose()
