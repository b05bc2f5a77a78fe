"""Outbound: the Asterisk server each call attempt was placed on, and the server whose
pacer holds a lead ``dialing`` (a cluster paces a campaign per server: issue #18).

Revision ID: outbound_0002
Revises: outbound_0001
Create Date: 2026-11-29 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "outbound_0002"
down_revision: str | Sequence[str] | None = "outbound_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_TABLES = ("outbound_attempts", "outbound_leads")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("server", sa.String(length=64), nullable=False, server_default="")
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("server")
