"""IVR: menu documents kept in the store (every version), schedule overrides.

Revision ID: ivr_0001
Revises: 0001
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ivr_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("ivr",)
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ivr_versions",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.String(length=256), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_versions")),
    )
    op.create_table(
        "ivr_overrides",
        sa.Column("schedule", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("until", _TZ, nullable=True),
        sa.Column("note", sa.String(length=256), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.Column("set_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("schedule", name=op.f("pk_ivr_overrides")),
    )


def downgrade() -> None:
    op.drop_table("ivr_overrides")
    op.drop_table("ivr_versions")
