"""Queue workers: items a graceful stop could not handle in its bound, kept for the next
start (cti.pending).

Revision ID: worker_0001
Revises: 0001
Create Date: 2026-11-29 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "worker_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("worker",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_pending",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_pending")),
    )
    op.create_index(op.f("ix_worker_pending_worker"), "worker_pending", ["worker"])


def downgrade() -> None:
    op.drop_index(op.f("ix_worker_pending_worker"), table_name="worker_pending")
    op.drop_table("worker_pending")
