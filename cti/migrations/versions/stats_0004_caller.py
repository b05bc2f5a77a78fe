"""Statistics: each queue entry's caller number from ENTERQUEUE (the report by caller
region, 号码归属地; decision 0026).

Revision ID: stats_0004
Revises: stats_0003
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "stats_0004"
down_revision: str | Sequence[str] | None = "stats_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stats_entries") as batch:
        batch.add_column(
            sa.Column("caller_num", sa.String(length=32), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("stats_entries") as batch:
        batch.drop_column("caller_num")
