"""Statistics: queue_log lines, ingest state, queue entries, hourly rollup, IVR abandons,
in-call holds, uniqueid->linkedid links.

Revision ID: stats_0001
Revises: 0001
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "stats_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("stats",)
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)
_COUNTS_INT = (
    "offered", "answered", "answered_within_sl", "abandoned", "short_abandoned", "timeout",
    "exit_key", "exit_empty", "refused", "ivr_abandoned", "handled", "hold_count",
    "ringnoanswer",
)  # fmt: skip
_COUNTS_FLOAT = (
    "answered_wait_sum", "abandon_wait_sum", "wait_sum", "wait_max", "talk_sum", "hold_sum",
    "hold_max", "wrapup_sum",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "stats_qlog_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("callid", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("data", sa.String(length=2048), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_qlog_lines")),
        sa.UniqueConstraint("key", name=op.f("uq_stats_qlog_lines_key")),
    )
    op.create_index(op.f("ix_stats_qlog_lines_at"), "stats_qlog_lines", ["at"])
    op.create_index(op.f("ix_stats_qlog_lines_callid"), "stats_qlog_lines", ["callid"])
    op.create_table(
        "stats_ingest_state",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_ingest_state")),
        sa.UniqueConstraint("path", name=op.f("uq_stats_ingest_state_path")),
    )
    op.create_table(
        "stats_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("callid", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("entered_at", _TZ, nullable=False),
        sa.Column("hour_start", _TZ, nullable=False),
        sa.Column("local_day", sa.String(length=10), nullable=False),
        sa.Column("local_hour", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=False),
        sa.Column("talk_s", sa.Float(), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("answered_at", _TZ, nullable=True),
        sa.Column("ended_at", _TZ, nullable=True),
        sa.Column("ringnoanswer", sa.Integer(), nullable=False),
        sa.Column("hold_count", sa.Integer(), nullable=False),
        sa.Column("hold_s", sa.Float(), nullable=False),
        sa.Column("hold_max_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_entries")),
        sa.UniqueConstraint("callid", "queue", "entered_at", name=op.f("uq_stats_entries_callid")),
    )
    op.create_index(op.f("ix_stats_entries_callid"), "stats_entries", ["callid"])
    op.create_index(op.f("ix_stats_entries_linkedid"), "stats_entries", ["linkedid"])
    op.create_index("ix_stats_entries_queue_hour", "stats_entries", ["queue", "hour_start"])
    op.create_index("ix_stats_entries_agent_entered", "stats_entries", ["agent", "entered_at"])
    op.create_table(
        "stats_hourly",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("hour_start", _TZ, nullable=False),
        sa.Column("local_day", sa.String(length=10), nullable=False),
        sa.Column("local_hour", sa.Integer(), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTS_INT],
        *[sa.Column(name, sa.Float(), nullable=False) for name in _COUNTS_FLOAT],
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_hourly")),
        sa.UniqueConstraint("queue", "hour_start", name=op.f("uq_stats_hourly_queue")),
    )
    op.create_index("ix_stats_hourly_day_queue", "stats_hourly", ["local_day", "queue"])
    op.create_table(
        "stats_ivr_abandons",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("dnis", sa.String(length=64), nullable=False),
        sa.Column("menu", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_ivr_abandons")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_stats_ivr_abandons_linkedid")),
    )
    op.create_index(op.f("ix_stats_ivr_abandons_at"), "stats_ivr_abandons", ["at"])
    op.create_table(
        "stats_holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("started_at", _TZ, nullable=False),
        sa.Column("ended_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_holds")),
        sa.UniqueConstraint("uniqueid", "started_at", name=op.f("uq_stats_holds_uniqueid")),
    )
    op.create_index(op.f("ix_stats_holds_linkedid"), "stats_holds", ["linkedid"])
    op.create_table(
        "stats_links",
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("uniqueid", name=op.f("pk_stats_links")),
    )
    op.create_index(op.f("ix_stats_links_linkedid"), "stats_links", ["linkedid"])


def downgrade() -> None:
    for table in (
        "stats_links", "stats_holds", "stats_ivr_abandons", "stats_hourly", "stats_entries",
        "stats_ingest_state", "stats_qlog_lines",
    ):  # fmt: skip
        op.drop_table(table)
