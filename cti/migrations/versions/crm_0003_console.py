"""CRM: dispositions and webhook receivers set in the console.

Revision ID: crm_0003
Revises: crm_0002
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0003"
down_revision: str | Sequence[str] | None = "crm_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crm_dispositions",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("label_en", sa.String(length=128), nullable=False),
        sa.Column("label_zh", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_crm_dispositions")),
    )
    op.create_table(
        "crm_webhook_targets",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=256), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_webhook_targets")),
    )


def downgrade() -> None:
    op.drop_table("crm_webhook_targets")
    op.drop_table("crm_dispositions")
