"""CRM workspace: the customer's region (号码归属地) and custom fields, the fields an admin
defines, opportunities' expected close / source / region / industry, sales targets.

Revision ID: crm_0004
Revises: crm_0003
Create Date: 2026-11-29 07:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0004"
down_revision: str | Sequence[str] | None = "crm_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TZ = sa.DateTime(timezone=True)


def _backfill() -> None:
    """Existing customers: their tags become searchable (crm_search.names, as
    crm_bridge.search.reindex writes them: casefolded, separators removed) and their
    region is read from their first number (phonenumbers' geocoding, in Chinese)."""
    import re

    import phonenumbers
    from phonenumbers import geocoder

    bind = op.get_bind()
    md = sa.MetaData()
    customers = sa.Table("crm_customers", md, autoload_with=bind)
    phones = sa.Table("crm_phones", md, autoload_with=bind)
    search = sa.Table("crm_search", md, autoload_with=bind)
    spaces = re.compile("[\\s\u3000\u00b7.,\uff0c\u3002\\-_]+")
    tagged = bind.execute(
        sa.select(customers.c.id, customers.c.tags, search.c.names)
        .join(search, search.c.customer_id == customers.c.id)
        .where(customers.c.tags != "")
    ).all()
    set_names = (
        search.update()
        .where(search.c.customer_id == sa.bindparam("cid"))
        .values(names=sa.bindparam("new_names"))
    )
    batch: list[dict[str, object]] = []
    for cid, tags, names in tagged:
        keys = [spaces.sub("", t.casefold()) for t in tags.split(",") if t]
        batch.append({"cid": cid, "new_names": "\n".join([names, *keys])})
        if len(batch) >= 5000:
            bind.execute(set_names, batch)
            batch = []
    if batch:
        bind.execute(set_names, batch)
    first = (
        sa.select(phones.c.customer_id, sa.func.min(phones.c.id).label("pid"))
        .group_by(phones.c.customer_id)
        .subquery()
    )
    rows = bind.execute(
        sa.select(phones.c.customer_id, phones.c.e164).join(first, first.c.pid == phones.c.id)
    ).all()
    set_region = (
        customers.update()
        .where(customers.c.id == sa.bindparam("cid"))
        .values(region=sa.bindparam("new_region"))
    )
    batch = []
    for cid, e164 in rows:
        try:
            region = geocoder.description_for_number(phonenumbers.parse(e164, None), "zh")
        except phonenumbers.NumberParseException:
            continue
        if region:
            batch.append({"cid": cid, "new_region": region[:64]})
        if len(batch) >= 5000:
            bind.execute(set_region, batch)
            batch = []
    if batch:
        bind.execute(set_region, batch)


def upgrade() -> None:
    with op.batch_alter_table("crm_customers") as batch:
        batch.add_column(sa.Column("region", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("custom", sa.Text(), nullable=False, server_default="{}"))
        batch.create_index("ix_crm_customers_region", ["region"])
        batch.create_index("ix_crm_customers_last_contact_at", ["last_contact_at"])
        batch.create_index("ix_crm_customers_tier", ["tier"])
    with op.batch_alter_table("crm_leads") as batch:
        batch.add_column(sa.Column("expected_close", sa.Date(), nullable=True))
        batch.add_column(sa.Column("source", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("region", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("industry", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("closed_at", _TZ, nullable=True))
        batch.add_column(sa.Column("follow_up_on", sa.Date(), nullable=True))
        batch.create_index("ix_crm_leads_status", ["status"])
    op.create_table(
        "crm_custom_fields",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("label_en", sa.String(length=128), nullable=False),
        sa.Column("label_zh", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("choices", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_crm_custom_fields")),
    )
    _backfill()


def downgrade() -> None:
    op.drop_table("crm_custom_fields")
    with op.batch_alter_table("crm_leads") as batch:
        batch.drop_index("ix_crm_leads_status")
        for column in ("follow_up_on", "closed_at", "industry", "region", "source",
                       "expected_close"):  # fmt: skip
            batch.drop_column(column)
    with op.batch_alter_table("crm_customers") as batch:
        batch.drop_index("ix_crm_customers_tier")
        batch.drop_index("ix_crm_customers_last_contact_at")
        batch.drop_index("ix_crm_customers_region")
        batch.drop_column("custom")
        batch.drop_column("region")
