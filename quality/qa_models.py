"""QA scoring tables: forms (immutable definitions) and evaluations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

__all__ = ["QaEvaluation", "QaForm"]


class QaForm(Base):
    __tablename__ = "qa_forms"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(200))
    #: JSON: {"sections": [{"title", "questions": [{"id", "text", "weight", "max_points"}]}]}
    definition: Mapped[str] = mapped_column(Text())
    active: Mapped[bool] = mapped_column(Boolean(), default=True)
    created_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QaEvaluation(Base):
    """One reviewer's scoring of one call against one form."""

    __tablename__ = "qa_evaluations"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("qa_forms.id"), index=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), index=True)
    recording_id: Mapped[int | None] = mapped_column(Integer())
    agent: Mapped[str] = mapped_column(BoundedText(128), index=True)
    reviewer: Mapped[str] = mapped_column(BoundedText(128))
    #: JSON: {"<question id>": points}
    answers: Mapped[str] = mapped_column(Text())
    #: JSON: [{"at_s": seconds into the recording, "text": "..."}]
    comments: Mapped[str] = mapped_column(Text(), default="[]")
    score: Mapped[float] = mapped_column(Float())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
