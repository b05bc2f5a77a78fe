"""Recordings: which node's root holds a recording's file (``recordings.node``; "" on a
single node or a root every node shares) and how the other nodes reach each node
(``recording_nodes``), so any node plays any recording (decision 0033).

Revision ID: recordings_0004
Revises: recordings_0003
Create Date: 2026-11-30 01:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "recordings_0004"
down_revision: str | Sequence[str] | None = "recordings_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("node", sa.String(length=64), nullable=False, server_default=""))
    op.create_table(
        "recording_nodes",
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_recording_nodes")),
    )


def downgrade() -> None:
    op.drop_table("recording_nodes")
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("node")
