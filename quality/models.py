"""The quality feature's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime

__all__ = ["SurveyRow"]


class SurveyRow(Base):
    """One caller's answer to the satisfaction survey (one per queue call)."""

    __tablename__ = "quality_surveys"
    __table_args__ = (UniqueConstraint("linkedid", "callid"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), index=True)
    callid: Mapped[str] = mapped_column(BoundedText(64))
    queue: Mapped[str] = mapped_column(BoundedText(64))
    agent: Mapped[str] = mapped_column(BoundedText(64), index=True)
    language: Mapped[str] = mapped_column(BoundedText(8))
    score: Mapped[int] = mapped_column(Integer())
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
