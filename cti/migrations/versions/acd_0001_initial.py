"""ACD: queues, agents, devices, skills, status history, lost callers.

Revision ID: acd_0001
Revises: 0001
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "acd_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("acd",)
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "acd_queues",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("retry_s", sa.Integer(), nullable=False),
        sa.Column("wrapup_s", sa.Integer(), nullable=False),
        sa.Column("max_wait_s", sa.Integer(), nullable=False),
        sa.Column("max_len", sa.Integer(), nullable=False),
        sa.Column("join_empty", sa.Boolean(), nullable=False),
        sa.Column("leave_empty", sa.Boolean(), nullable=False),
        sa.Column("music_class", sa.String(length=64), nullable=False),
        sa.Column("announce_position", sa.Boolean(), nullable=False),
        sa.Column("announce_holdtime", sa.Boolean(), nullable=False),
        sa.Column("announce_frequency_s", sa.Integer(), nullable=False),
        sa.Column("service_level_s", sa.Integer(), nullable=False),
        sa.Column("short_abandon_s", sa.Integer(), nullable=False),
        sa.Column("overflow_after_s", sa.Integer(), nullable=True),
        sa.Column("overflow_queue", sa.String(length=64), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_queues")),
        sa.UniqueConstraint("name", name=op.f("uq_acd_queues_name")),
    )
    op.create_table(
        "acd_agents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("status_since", _TZ, nullable=False),
        sa.Column("interface", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_agents")),
        sa.UniqueConstraint("name", name=op.f("uq_acd_agents_name")),
    )
    op.create_table(
        "acd_agent_devices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["acd_agents.id"],
            name=op.f("fk_acd_agent_devices_agent_id_acd_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_agent_devices")),
        sa.UniqueConstraint(
            "agent_id", "kind", "address", name=op.f("uq_acd_agent_devices_agent_id")
        ),
    )
    op.create_table(
        "acd_skills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("penalty", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["acd_agents.id"],
            name=op.f("fk_acd_skills_agent_id_acd_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_skills")),
        sa.UniqueConstraint("agent_id", "queue", name=op.f("uq_acd_skills_agent_id")),
    )
    op.create_table(
        "acd_status_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("started_at", _TZ, nullable=False),
        sa.Column("ended_at", _TZ, nullable=True),
        sa.Column("changed_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_status_history")),
    )
    op.create_index(op.f("ix_acd_status_history_agent"), "acd_status_history", ["agent"])
    op.create_index(op.f("ix_acd_status_history_started_at"), "acd_status_history", ["started_at"])
    op.create_table(
        "acd_lost_callers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("caller_num", sa.String(length=64), nullable=False),
        sa.Column("caller_key", sa.String(length=64), nullable=False),
        sa.Column("caller_name", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("lost_at", _TZ, nullable=False),
        sa.Column("closed_at", _TZ, nullable=True),
        sa.Column("closed_by", sa.String(length=32), nullable=False),
        sa.Column("closed_linkedid", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_lost_callers")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_acd_lost_callers_linkedid")),
    )
    op.create_index(op.f("ix_acd_lost_callers_caller_key"), "acd_lost_callers", ["caller_key"])
    op.create_index(op.f("ix_acd_lost_callers_lost_at"), "acd_lost_callers", ["lost_at"])


def downgrade() -> None:
    op.drop_table("acd_lost_callers")
    op.drop_table("acd_status_history")
    op.drop_table("acd_skills")
    op.drop_table("acd_agent_devices")
    op.drop_table("acd_agents")
    op.drop_table("acd_queues")
