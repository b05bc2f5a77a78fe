"""Statistics: the caller's satisfaction score per queue entry (queue_log SURVEY line the
quality feature writes) and its hourly count and sum (decision 0026).

Revision ID: stats_0003
Revises: stats_0002
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "stats_0003"
down_revision: str | Sequence[str] | None = "stats_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stats_entries") as batch:
        batch.add_column(sa.Column("survey_score", sa.Integer(), nullable=True))
    with op.batch_alter_table("stats_hourly") as batch:
        batch.add_column(
            sa.Column("survey_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("survey_sum", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("stats_hourly") as batch:
        batch.drop_column("survey_sum")
        batch.drop_column("survey_count")
    with op.batch_alter_table("stats_entries") as batch:
        batch.drop_column("survey_score")
