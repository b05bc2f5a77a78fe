"""Quality: the caller's satisfaction score on the call row (the call recorder keeps the
SurveyAnswered score for the call's record; decision 0026).

Revision ID: quality_0004
Revises: quality_0003
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "quality_0004"
down_revision: str | Sequence[str] | None = "quality_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("survey_score", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("survey_score")
