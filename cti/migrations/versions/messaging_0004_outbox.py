"""Messaging: the outbox. A queued message is claimed by the node that sends it
(status ``sending``, ``claimed_by``, ``claimed_at``; ``attempts`` counts the claims).

Revision ID: messaging_0004
Revises: messaging_0003
Create Date: 2026-11-29 12:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0004"
down_revision: str | Sequence[str] | None = "messaging_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("msg_messages") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("msg_messages") as batch:
        batch.drop_column("attempts")
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
