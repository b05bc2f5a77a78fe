"""ACD: periodic announcements per queue (a sound and how often waiting callers hear it).

Revision ID: acd_0003
Revises: acd_0002
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "acd_0003"
down_revision: str | Sequence[str] | None = "acd_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("acd_queues") as batch:
        batch.add_column(
            sa.Column("periodic_announce", sa.String(length=200), nullable=False,
                      server_default="")
        )  # fmt: skip
        batch.add_column(
            sa.Column("periodic_announce_s", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("acd_queues") as batch:
        batch.drop_column("periodic_announce_s")
        batch.drop_column("periodic_announce")
