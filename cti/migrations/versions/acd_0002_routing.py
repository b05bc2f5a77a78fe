"""ACD routing: owner-first ring time, overflow actions, callback key per queue; callbacks.

Revision ID: acd_0002
Revises: acd_0001
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "acd_0002"
down_revision: str | Sequence[str] | None = "acd_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("acd_queues") as batch:
        batch.add_column(
            sa.Column("owner_ring_s", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("overflow_action", sa.String(length=16), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("overflow_mailbox", sa.String(length=32), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("callback_key", sa.String(length=1), nullable=False, server_default="")
        )
    op.create_table(
        "acd_callbacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("caller_key", sa.String(length=64), nullable=False),
        sa.Column("caller_name", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("requested_at", _TZ, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TZ, nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("call_linkedid", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("reached_at", _TZ, nullable=True),
        sa.Column("closed_at", _TZ, nullable=True),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_callbacks")),
    )
    op.create_index(op.f("ix_acd_callbacks_caller_key"), "acd_callbacks", ["caller_key"])
    op.create_index(op.f("ix_acd_callbacks_status"), "acd_callbacks", ["status"])
    op.create_index(op.f("ix_acd_callbacks_call_linkedid"), "acd_callbacks", ["call_linkedid"])


def downgrade() -> None:
    op.drop_table("acd_callbacks")
    with op.batch_alter_table("acd_queues") as batch:
        batch.drop_column("callback_key")
        batch.drop_column("overflow_mailbox")
        batch.drop_column("overflow_action")
        batch.drop_column("owner_ring_s")
