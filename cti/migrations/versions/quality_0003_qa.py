"""Quality: QA scoring forms and evaluations (decision 0026).

Revision ID: quality_0003
Revises: quality_0002
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "quality_0003"
down_revision: str | Sequence[str] | None = "quality_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "qa_forms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_forms")),
    )
    op.create_table(
        "qa_evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=True),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        sa.Column("answers", sa.Text(), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("acknowledged_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["form_id"], ["qa_forms.id"], name=op.f("fk_qa_evaluations_form_id_qa_forms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_evaluations")),
    )
    op.create_index(op.f("ix_qa_evaluations_form_id"), "qa_evaluations", ["form_id"])
    op.create_index(op.f("ix_qa_evaluations_linkedid"), "qa_evaluations", ["linkedid"])
    op.create_index(op.f("ix_qa_evaluations_agent"), "qa_evaluations", ["agent"])
    op.create_index(op.f("ix_qa_evaluations_created_at"), "qa_evaluations", ["created_at"])


def downgrade() -> None:
    op.drop_table("qa_evaluations")
    op.drop_table("qa_forms")
