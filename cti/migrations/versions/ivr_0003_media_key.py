"""IVR: the key that signs the media URLs, kept in the store (decision 0032), so the
URLs Asterisk cached stay good after a restart and on every node without a setting.

Revision ID: ivr_0003
Revises: ivr_0002
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ivr_0003"
down_revision: str | Sequence[str] | None = "ivr_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ivr_media_key",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_media_key")),
    )


def downgrade() -> None:
    op.drop_table("ivr_media_key")
