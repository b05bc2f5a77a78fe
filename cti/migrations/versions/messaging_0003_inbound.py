"""Messaging: inbound e-mail filed once (by Message-ID).

Revision ID: messaging_0003
Revises: messaging_0002
Create Date: 2026-11-29 11:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0003"
down_revision: str | Sequence[str] | None = "messaging_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "msg_received",
        sa.Column("message_id", sa.String(256), nullable=False),
        sa.Column("message_pk", _Id, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_msg_received")),
    )


def downgrade() -> None:
    op.drop_table("msg_received")
