"""CRM search on SQLite: an FTS5 trigram index over ``crm_search`` (external content),
kept in step by triggers in the same transaction as every write to ``crm_search``
(docs/decisions/0011-crm-search.md). PostgreSQL: nothing (pg_trgm indexes, crm_0002).

Revision ID: crm_0005
Revises: crm_0004
Create Date: 2026-11-29 09:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "crm_0005"
down_revision: str | Sequence[str] | None = "crm_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLS = "names, phones, emails"
_NEW = "new.customer_id, new.names, new.phones, new.emails"
_OLD = "'delete', old.customer_id, old.names, old.phones, old.emails"
_INS = f"INSERT INTO crm_search_fts (rowid, {_COLS}) VALUES ({_NEW});"
_DEL = f"INSERT INTO crm_search_fts (crm_search_fts, rowid, {_COLS}) VALUES ({_OLD});"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        f"CREATE VIRTUAL TABLE crm_search_fts USING fts5({_COLS}, content='crm_search',"
        " content_rowid='customer_id', tokenize='trigram')"
    )
    op.execute(f"CREATE TRIGGER crm_search_fts_ai AFTER INSERT ON crm_search BEGIN {_INS} END")
    op.execute(f"CREATE TRIGGER crm_search_fts_ad AFTER DELETE ON crm_search BEGIN {_DEL} END")
    op.execute(
        f"CREATE TRIGGER crm_search_fts_au AFTER UPDATE ON crm_search BEGIN {_DEL} {_INS} END"
    )
    op.execute("INSERT INTO crm_search_fts (crm_search_fts) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS crm_search_fts_{trigger}")
    op.execute("DROP TABLE IF EXISTS crm_search_fts")
