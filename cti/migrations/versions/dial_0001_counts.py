"""Dial policy: dials per agent and local day.

Revision ID: dial_0001
Revises: 0001
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dial_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("dial",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dial_counts",
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agent", "day", name=op.f("pk_dial_counts")),
    )


def downgrade() -> None:
    op.drop_table("dial_counts")
