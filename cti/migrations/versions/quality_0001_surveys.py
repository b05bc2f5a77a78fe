"""Quality: the callers' satisfaction survey answers (decision 0026).

Revision ID: quality_0001
Revises: 0001
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "quality_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("quality",)
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quality_surveys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("callid", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_surveys")),
        sa.UniqueConstraint("linkedid", "callid", name=op.f("uq_quality_surveys_linkedid")),
    )
    op.create_index(op.f("ix_quality_surveys_linkedid"), "quality_surveys", ["linkedid"])
    op.create_index(op.f("ix_quality_surveys_agent"), "quality_surveys", ["agent"])
    op.create_index(op.f("ix_quality_surveys_at"), "quality_surveys", ["at"])


def downgrade() -> None:
    op.drop_table("quality_surveys")
