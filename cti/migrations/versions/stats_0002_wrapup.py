"""Statistics: each queue entry's measured after-call work (queue_log WRAPUPEND line the
ACD writes when the wrap-up ends; decision 0026).

Revision ID: stats_0002
Revises: stats_0001
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "stats_0002"
down_revision: str | Sequence[str] | None = "stats_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stats_entries") as batch:
        batch.add_column(sa.Column("wrapup_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stats_entries") as batch:
        batch.drop_column("wrapup_s")
