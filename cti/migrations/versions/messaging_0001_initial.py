"""Messaging: templates, messages, mass-send batches, opt-outs.

Revision ID: messaging_0001
Revises: 0001
Create Date: 2026-11-29 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("messaging",)
depends_on: str | Sequence[str] | None = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "msg_templates",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("body", sa.String(4096), nullable=False),
        sa.Column("provider_template", sa.String(64), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_msg_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_msg_templates_name")),
    )
    op.create_table(
        "msg_batches",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("template_id", _Id, nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["msg_templates.id"],
            name=op.f("fk_msg_batches_template_id_msg_templates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_msg_batches")),
    )
    op.create_table(
        "msg_messages",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("customer_id", _Id, nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("to_address", sa.String(320), nullable=False),
        sa.Column("template_id", _Id, nullable=True),
        sa.Column("batch_id", _Id, nullable=True),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("body", sa.String(4096), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(1024), nullable=False),
        sa.Column("provider_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("sent_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_msg_messages")),
    )
    for column in ("customer_id", "to_address", "batch_id", "status", "created_at"):
        op.create_index(op.f(f"ix_msg_messages_{column}"), "msg_messages", [column])
    op.create_table(
        "msg_opt_outs",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_msg_opt_outs")),
        sa.UniqueConstraint("channel", "address", name=op.f("uq_msg_opt_outs_channel")),
    )


def downgrade() -> None:
    op.drop_table("msg_opt_outs")
    for column in ("customer_id", "to_address", "batch_id", "status", "created_at"):
        op.drop_index(op.f(f"ix_msg_messages_{column}"), table_name="msg_messages")
    op.drop_table("msg_messages")
    op.drop_table("msg_batches")
    op.drop_table("msg_templates")
