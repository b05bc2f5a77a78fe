"""Cluster: side effects fired once across nodes (scope, key), e.g. (rule, call).

Revision ID: cluster_0001
Revises: 0001
Create Date: 2026-11-29 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cluster_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("cluster",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fired_once",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_fired_once")),
    )
    op.create_index(op.f("ix_fired_once_created_at"), "fired_once", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_fired_once_created_at"), table_name="fired_once")
    op.drop_table("fired_once")
