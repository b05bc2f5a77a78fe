"""Phones: where each phone is registered across a cluster's Asterisk servers (issue #18),
kept in the store so every node (one restarted, one that took a server over) knows it.

Revision ID: phones_0002
Revises: phones_0001
Create Date: 2026-11-29 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "phones_0002"
down_revision: str | Sequence[str] | None = "phones_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "phone_locations",
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("contact", sa.String(length=255), nullable=False),
        sa.Column("registered_at", _TZ, nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_phone_locations")),
    )


def downgrade() -> None:
    op.drop_table("phone_locations")
