"""ACD: per queue the language callers hear (zh/en) and whether they get the
satisfaction survey after the call (decision 0026).

Revision ID: acd_0005
Revises: acd_0004
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "acd_0005"
down_revision: str | Sequence[str] | None = "acd_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("acd_queues") as batch:
        batch.add_column(
            sa.Column("language", sa.String(length=8), nullable=False, server_default="zh")
        )
        batch.add_column(
            sa.Column("survey", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("acd_queues") as batch:
        batch.drop_column("survey")
        batch.drop_column("language")
