"""Quality: the caller's satisfaction score on the CRM interaction (the CRM writes it on
SurveyAnswered; decision 0026).

Revision ID: quality_0002
Revises: quality_0001, crm_0004 (a merge point: the column needs the CRM's table)
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "quality_0002"
down_revision: str | Sequence[str] | None = ("quality_0001", "crm_0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_interactions") as batch:
        batch.add_column(sa.Column("survey_score", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crm_interactions") as batch:
        batch.drop_column("survey_score")
