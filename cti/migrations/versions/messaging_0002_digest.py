"""Messaging: the daily digest (where each person's goes, and which were sent).

Revision ID: messaging_0002
Revises: messaging_0001
Create Date: 2026-11-29 11:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0002"
down_revision: str | Sequence[str] | None = "messaging_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "msg_digest_addresses",
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("login", name=op.f("pk_msg_digest_addresses")),
    )
    op.create_table(
        "msg_digests",
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(1024), nullable=False),
        sa.Column("message_id", sa.String(256), nullable=False),
        sa.Column("claimed_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("login", "day", name=op.f("pk_msg_digests")),
    )


def downgrade() -> None:
    op.drop_table("msg_digests")
    op.drop_table("msg_digest_addresses")
