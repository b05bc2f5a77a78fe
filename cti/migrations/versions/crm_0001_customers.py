"""CRM tables: customers, contacts, phones, emails, interactions, leads, audit, dead letters.

Revision ID: crm_0001
Revises: 0001
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("crm",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column(
            "entity_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_audit")),
    )
    op.create_index(op.f("ix_crm_audit_at"), "crm_audit", ["at"], unique=False)
    op.create_index(op.f("ix_crm_audit_customer_id"), "crm_audit", ["customer_id"], unique=False)
    op.create_table(
        "crm_customers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("name_key", sa.String(length=256), nullable=False),
        sa.Column("company", sa.String(length=256), nullable=False),
        sa.Column("company_key", sa.String(length=256), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("tags", sa.String(length=1024), nullable=False),
        sa.Column("notes", sa.String(length=16384), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("owned_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_customers")),
    )
    op.create_index(
        op.f("ix_crm_customers_company_key"), "crm_customers", ["company_key"], unique=False
    )
    op.create_index(op.f("ix_crm_customers_name_key"), "crm_customers", ["name_key"], unique=False)
    op.create_index(op.f("ix_crm_customers_owner"), "crm_customers", ["owner"], unique=False)
    op.create_table(
        "crm_webhook_dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_webhook_dead_letters")),
    )
    op.create_table(
        "crm_contacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("name_key", sa.String(length=256), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("birthday_md", sa.String(length=5), nullable=True),
        sa.Column("tags", sa.String(length=1024), nullable=False),
        sa.Column("notes", sa.String(length=16384), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["crm_customers.id"],
            name=op.f("fk_crm_contacts_customer_id_crm_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_contacts")),
    )
    op.create_index(
        op.f("ix_crm_contacts_birthday_md"), "crm_contacts", ["birthday_md"], unique=False
    )
    op.create_index(
        op.f("ix_crm_contacts_customer_id"), "crm_contacts", ["customer_id"], unique=False
    )
    op.create_index(op.f("ix_crm_contacts_name_key"), "crm_contacts", ["name_key"], unique=False)
    op.create_table(
        "crm_leads",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("notes", sa.String(length=16384), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["crm_customers.id"],
            name=op.f("fk_crm_leads_customer_id_crm_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_leads")),
    )
    op.create_index(op.f("ix_crm_leads_customer_id"), "crm_leads", ["customer_id"], unique=False)
    op.create_index(op.f("ix_crm_leads_owner"), "crm_leads", ["owner"], unique=False)
    op.create_table(
        "crm_emails",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("address_key", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_emails_contact_id_crm_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["crm_customers.id"],
            name=op.f("fk_crm_emails_customer_id_crm_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_emails")),
    )
    op.create_index(op.f("ix_crm_emails_address_key"), "crm_emails", ["address_key"], unique=False)
    op.create_index(op.f("ix_crm_emails_contact_id"), "crm_emails", ["contact_id"], unique=False)
    op.create_index(op.f("ix_crm_emails_customer_id"), "crm_emails", ["customer_id"], unique=False)
    op.create_table(
        "crm_interactions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("linkedid", sa.String(length=64), nullable=True),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("caller_num", sa.String(length=32), nullable=False),
        sa.Column("agent", sa.String(length=256), nullable=False),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("talk_s", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("disposition", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.String(length=16384), nullable=False),
        sa.Column("recording", sa.String(length=512), nullable=False),
        sa.Column("ivr_path", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_interactions_contact_id_crm_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["crm_customers.id"],
            name=op.f("fk_crm_interactions_customer_id_crm_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_interactions")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_crm_interactions_linkedid")),
    )
    op.create_index(
        op.f("ix_crm_interactions_customer_id"), "crm_interactions", ["customer_id"], unique=False
    )
    op.create_index(
        op.f("ix_crm_interactions_started_at"), "crm_interactions", ["started_at"], unique=False
    )
    op.create_table(
        "crm_lead_assignments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("from_owner", sa.String(length=128), nullable=True),
        sa.Column("to_owner", sa.String(length=128), nullable=True),
        sa.Column("by", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["crm_leads.id"],
            name=op.f("fk_crm_lead_assignments_lead_id_crm_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_lead_assignments")),
    )
    op.create_index(
        op.f("ix_crm_lead_assignments_lead_id"), "crm_lead_assignments", ["lead_id"], unique=False
    )
    op.create_table(
        "crm_phones",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("raw", sa.String(length=64), nullable=False),
        sa.Column("e164", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_phones_contact_id_crm_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["crm_customers.id"],
            name=op.f("fk_crm_phones_customer_id_crm_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_phones")),
    )
    op.create_index(op.f("ix_crm_phones_contact_id"), "crm_phones", ["contact_id"], unique=False)
    op.create_index(op.f("ix_crm_phones_customer_id"), "crm_phones", ["customer_id"], unique=False)
    op.create_index(op.f("ix_crm_phones_e164"), "crm_phones", ["e164"], unique=False)


def downgrade() -> None:
    op.drop_table("crm_phones")
    op.drop_table("crm_lead_assignments")
    op.drop_table("crm_interactions")
    op.drop_table("crm_emails")
    op.drop_table("crm_leads")
    op.drop_table("crm_contacts")
    op.drop_table("crm_webhook_dead_letters")
    op.drop_table("crm_customers")
    op.drop_table("crm_audit")
