"""Recordings: per-queue policy and retention set in the console.

Revision ID: recordings_0002
Revises: recordings_0001
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "recordings_0002"
down_revision: str | Sequence[str] | None = "recordings_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recording_queue_policies",
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_recording_queue_policies")),
    )


def downgrade() -> None:
    op.drop_table("recording_queue_policies")
