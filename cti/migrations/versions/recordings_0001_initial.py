"""Recordings: metadata rows and the listen/monitor audit trail.

Revision ID: recordings_0001
Revises: 0001
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "recordings_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("recordings",)
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("caller_num", sa.String(length=64), nullable=False),
        sa.Column("customer_id", _BigId, nullable=True),
        sa.Column("customer_name", sa.String(length=256), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("paused_s", sa.Float(), nullable=False),
        sa.Column("size_bytes", _BigId, nullable=True),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
    )
    for col in ("linkedid", "agent", "queue", "caller_num", "customer_id", "started_at", "status"):
        op.create_index(op.f(f"ix_recordings_{col}"), "recordings", [col], unique=False)
    op.create_table(
        "recording_audit",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("recording_id", _BigId, nullable=True),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_audit")),
    )
    for col in ("at", "actor", "recording_id"):
        op.create_index(op.f(f"ix_recording_audit_{col}"), "recording_audit", [col], unique=False)


def downgrade() -> None:
    for col in ("at", "actor", "recording_id"):
        op.drop_index(op.f(f"ix_recording_audit_{col}"), table_name="recording_audit")
    op.drop_table("recording_audit")
    for col in ("linkedid", "agent", "queue", "caller_num", "customer_id", "started_at", "status"):
        op.drop_index(op.f(f"ix_recordings_{col}"), table_name="recordings")
    op.drop_table("recordings")
