"""Recovery: when the daemon first watched each Asterisk server (cti.calls.watchmark).

Revision ID: watch_0001
Revises: 0001
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "watch_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("watch",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watch_marks",
        sa.Column("server", sa.String(length=128), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("server", name=op.f("pk_watch_marks")),
    )


def downgrade() -> None:
    op.drop_table("watch_marks")
