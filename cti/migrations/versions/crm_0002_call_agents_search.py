"""CRM: who was offered / answered each call (crm_call_agents), and the search table.

``crm_search`` holds one narrow row per customer with what search matches (names,
numbers, emails; see ``crm_bridge.models.CustomerSearch``), filled here from the existing
rows. On PostgreSQL with the ``pg_trgm`` extension available, GIN trigram indexes
(``ix_crm_search_<column>_trgm``) serve its ``LIKE '%part%'``
(docs/decisions/0011-crm-search.md). When the extension cannot be created (not
installed, or the role may not create it) the indexes are skipped with a warning and
search scans the narrow table: same results, slower.

Revision ID: crm_0002
Revises: crm_0001
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0002"
down_revision: str | Sequence[str] | None = "crm_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

#: (table, column) pairs the search matches with LIKE '%part%'.
TRIGRAM_COLUMNS = (("crm_search", "names"), ("crm_search", "phones"), ("crm_search", "emails"))
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _trigram_name(table: str, column: str) -> str:
    return f"ix_{table}_{column}_trgm"


def _pg_trgm_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first():
        return True
    if not bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).first():
        log.warning("pg_trgm is not installed: CRM search stays a plain scan")
        return False
    nested = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        nested.rollback()
        log.warning("cannot create pg_trgm (%s): CRM search stays a plain scan", exc.orig)
        return False
    nested.commit()
    return True


def _fill_search() -> None:
    """One crm_search row per existing customer (the same text crm_bridge.search.reindex writes)."""
    bind = op.get_bind()
    md = sa.MetaData()
    customers = sa.Table("crm_customers", md, autoload_with=bind)
    contacts = sa.Table("crm_contacts", md, autoload_with=bind)
    phones = sa.Table("crm_phones", md, autoload_with=bind)
    emails = sa.Table("crm_emails", md, autoload_with=bind)
    search = sa.Table("crm_search", md, autoload_with=bind)
    nl = sa.literal("\n")

    def joined(column: sa.ColumnElement[str], table: sa.Table) -> sa.ColumnElement[str]:
        agg = (
            sa.func.string_agg(column, nl)
            if bind.dialect.name == "postgresql"
            else sa.func.group_concat(column, nl)
        )
        sub = sa.select(agg).where(table.c.customer_id == customers.c.id).scalar_subquery()
        return sa.func.coalesce(sub, "")

    names = (
        customers.c.name_key
        + nl
        + customers.c.company_key
        + nl
        + joined(contacts.c.name_key, contacts)
    )
    rows = sa.select(
        customers.c.id, names, joined(phones.c.e164, phones), joined(emails.c.address_key, emails)
    )
    bind.execute(search.insert().from_select(["customer_id", "names", "phones", "emails"], rows))


def upgrade() -> None:
    op.create_table(
        "crm_call_agents",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_call_agents")),
        sa.UniqueConstraint("linkedid", "agent", name=op.f("uq_crm_call_agents_linkedid")),
    )
    op.create_index(
        op.f("ix_crm_call_agents_linkedid"), "crm_call_agents", ["linkedid"], unique=False
    )
    op.create_table(
        "crm_search",
        sa.Column("customer_id", _ID, nullable=False),
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("phones", sa.Text(), nullable=False),
        sa.Column("emails", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["crm_customers.id"],
            name=op.f("fk_crm_search_customer_id_crm_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_crm_search")),
    )
    _fill_search()
    if _pg_trgm_available():
        for table, column in TRIGRAM_COLUMNS:
            op.create_index(
                _trigram_name(table, column),
                table,
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in TRIGRAM_COLUMNS:
            op.drop_index(_trigram_name(table, column), table_name=table, if_exists=True)
    op.drop_table("crm_search")
    op.drop_index(op.f("ix_crm_call_agents_linkedid"), table_name="crm_call_agents")
    op.drop_table("crm_call_agents")
