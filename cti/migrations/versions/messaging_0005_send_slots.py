"""Messaging: the mass-send rate shared by every node (issue #18): a row per time slot
counts the sends taken in it.

Revision ID: messaging_0005
Revises: messaging_0004
Create Date: 2026-11-29 15:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0005"
down_revision: str | Sequence[str] | None = "messaging_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "msg_send_slots",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "slot", name=op.f("pk_msg_send_slots")),
    )


def downgrade() -> None:
    op.drop_table("msg_send_slots")
