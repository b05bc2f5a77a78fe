"""CRM: a webhook dead letter names its receiver by key (crm_bridge.webhooks.Receiver),
so it is retried to the receiver wherever its URL is now; the dead letters already there
keep "" (their receiver is the one at their URL, as before).

Revision ID: crm_0008
Revises: crm_0007
Create Date: 2026-11-30 19:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0008"
down_revision: str | Sequence[str] | None = "crm_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_webhook_dead_letters") as batch:
        batch.add_column(
            sa.Column("receiver", sa.String(length=2100), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("crm_webhook_dead_letters") as batch:
        batch.drop_column("receiver")
