"""Recordings: the processing claim (``claimed_at``): one process at a time verifies and
transcodes a recording, whichever of the live side, a reconcile or another node asks.

Revision ID: recordings_0003
Revises: recordings_0002
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "recordings_0003"
down_revision: str | Sequence[str] | None = "recordings_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("claimed_at")
