"""IVR: uploaded recordings kept in the store (decision 0032), so every node of a cluster
can put them into its own prompt directory and serve them to its Asterisk.

Revision ID: ivr_0002
Revises: ivr_0001
Create Date: 2026-11-29 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ivr_0002"
down_revision: str | Sequence[str] | None = "ivr_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ivr_audio",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("wav", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_audio")),
    )


def downgrade() -> None:
    op.drop_table("ivr_audio")
