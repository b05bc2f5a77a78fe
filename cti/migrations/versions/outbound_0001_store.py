"""Outbound: campaigns, lead lists, leads, call attempts, do-not-call numbers.

Revision ID: outbound_0001
Revises: 0001
Create Date: 2026-11-29 07:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "outbound_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("outbound",)
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbound_campaigns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_outbound_campaigns_name")),
    )
    op.create_table(
        "outbound_lists",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["outbound_campaigns.id"],
            name=op.f("fk_outbound_lists_campaign_id_outbound_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_lists")),
    )
    op.create_index(op.f("ix_outbound_lists_campaign_id"), "outbound_lists", ["campaign_id"])
    op.create_table(
        "outbound_leads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=128), nullable=False),
        sa.Column("region_en", sa.String(length=128), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("owner_agent", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", _TZ, nullable=True),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("last_outcome", sa.String(length=32), nullable=False),
        sa.Column("disposition", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["outbound_lists.id"],
            name=op.f("fk_outbound_leads_list_id_outbound_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_leads")),
        sa.UniqueConstraint("list_id", "number", name=op.f("uq_outbound_leads_list_id")),
    )
    op.create_index(op.f("ix_outbound_leads_list_id"), "outbound_leads", ["list_id"])
    op.create_index(op.f("ix_outbound_leads_number"), "outbound_leads", ["number"])
    op.create_index("ix_outbound_leads_due", "outbound_leads", ["campaign_id", "status", "next_at"])
    op.create_table(
        "outbound_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("started_at", _TZ, nullable=False),
        sa.Column("answered_at", _TZ, nullable=True),
        sa.Column("connected_at", _TZ, nullable=True),
        sa.Column("ended_at", _TZ, nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("disposition", sa.String(length=32), nullable=False),
        sa.Column("talk_s", sa.Float(), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_attempts")),
    )
    op.create_index(op.f("ix_outbound_attempts_lead_id"), "outbound_attempts", ["lead_id"])
    op.create_index(op.f("ix_outbound_attempts_linkedid"), "outbound_attempts", ["linkedid"])
    op.create_index(
        "ix_outbound_attempts_campaign_started", "outbound_attempts",
        ["campaign_id", "started_at"],
    )  # fmt: skip
    op.create_table(
        "outbound_dnc",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.Column("added_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_dnc")),
        sa.UniqueConstraint("number", "scope", name=op.f("uq_outbound_dnc_number")),
    )
    op.create_index(op.f("ix_outbound_dnc_number"), "outbound_dnc", ["number"])


def downgrade() -> None:
    op.drop_table("outbound_dnc")
    op.drop_table("outbound_attempts")
    op.drop_table("outbound_leads")
    op.drop_table("outbound_lists")
    op.drop_table("outbound_campaigns")
