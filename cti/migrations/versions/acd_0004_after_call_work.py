"""ACD: after-call work per queue (the agent stays in wrap-up until a disposition is
saved or ``acw_max_s`` passes; decision 0026).

Revision ID: acd_0004
Revises: acd_0003
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "acd_0004"
down_revision: str | Sequence[str] | None = "acd_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("acd_queues") as batch:
        batch.add_column(sa.Column("acw_max_s", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("acd_queues") as batch:
        batch.drop_column("acw_max_s")
