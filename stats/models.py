"""Statistics tables (migration: cti/migrations/versions/stats_0001_initial.py).

- ``stats_qlog_lines``: queue_log lines as read, keyed by the line's hash (idempotent).
- ``stats_ingest_state``: where the tail of each queue_log file stopped (inode, offset).
- ``stats_entries``: one row per queue entry, derived from the lines (+ in-call hold).
- ``stats_hourly``: additive counters per queue and local hour (the reports read this);
  queue ``""`` holds the IVR abandons (they happen before any queue).
- ``stats_ivr_abandons``, ``stats_holds``, ``stats_links``: what only AMI/the IVR knows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

__all__ = [
    "EntryRow",
    "HoldRow",
    "HourlyRow",
    "IngestStateRow",
    "IvrAbandonRow",
    "LinkRow",
    "QlogLineRow",
]


class QlogLineRow(Base):
    __tablename__ = "stats_qlog_lines"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(BoundedText(40), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    callid: Mapped[str] = mapped_column(BoundedText(64), index=True)
    queue: Mapped[str] = mapped_column(BoundedText(64))
    agent: Mapped[str] = mapped_column(BoundedText(128))
    event: Mapped[str] = mapped_column(BoundedText(32))
    data: Mapped[str] = mapped_column(BoundedText(2048))


class IngestStateRow(Base):
    __tablename__ = "stats_ingest_state"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(BoundedText(512), unique=True)
    inode: Mapped[int] = mapped_column(BigInteger())
    offset: Mapped[int] = mapped_column(BigInteger())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EntryRow(Base):
    __tablename__ = "stats_entries"
    __table_args__ = (
        UniqueConstraint("callid", "queue", "entered_at"),
        Index("ix_stats_entries_queue_hour", "queue", "hour_start"),
        Index("ix_stats_entries_agent_entered", "agent", "entered_at"),
    )

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    callid: Mapped[str] = mapped_column(BoundedText(64), index=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), default="", index=True)
    queue: Mapped[str] = mapped_column(BoundedText(64))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hour_start: Mapped[datetime] = mapped_column(UTCDateTime())
    local_day: Mapped[str] = mapped_column(BoundedText(10))
    local_hour: Mapped[int] = mapped_column(Integer())
    outcome: Mapped[str] = mapped_column(BoundedText(16))
    wait_s: Mapped[float] = mapped_column(Float())
    talk_s: Mapped[float | None] = mapped_column(Float())
    completed: Mapped[bool] = mapped_column(Boolean(), default=False)
    agent: Mapped[str] = mapped_column(BoundedText(128), default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ringnoanswer: Mapped[int] = mapped_column(Integer(), default=0)
    hold_count: Mapped[int] = mapped_column(Integer(), default=0)
    hold_s: Mapped[float] = mapped_column(Float(), default=0.0)
    hold_max_s: Mapped[float] = mapped_column(Float(), default=0.0)
    #: measured after-call work (queue_log WRAPUPEND); None: none was enforced
    wrapup_s: Mapped[float | None] = mapped_column(Float())
    #: the caller's satisfaction score 1-5 (queue_log SURVEY), None: not given
    survey_score: Mapped[int | None] = mapped_column(Integer())
    #: the caller ID number ENTERQUEUE logged (the region report's key)
    caller_num: Mapped[str] = mapped_column(BoundedText(32), default="", server_default="")


class HourlyRow(Base):
    __tablename__ = "stats_hourly"
    __table_args__ = (
        UniqueConstraint("queue", "hour_start"),
        Index("ix_stats_hourly_day_queue", "local_day", "queue"),
    )

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(BoundedText(64))
    hour_start: Mapped[datetime] = mapped_column(UTCDateTime())
    local_day: Mapped[str] = mapped_column(BoundedText(10))
    local_hour: Mapped[int] = mapped_column(Integer())
    offered: Mapped[int] = mapped_column(Integer(), default=0)
    answered: Mapped[int] = mapped_column(Integer(), default=0)
    answered_within_sl: Mapped[int] = mapped_column(Integer(), default=0)
    answered_wait_sum: Mapped[float] = mapped_column(Float(), default=0.0)
    abandoned: Mapped[int] = mapped_column(Integer(), default=0)
    short_abandoned: Mapped[int] = mapped_column(Integer(), default=0)
    abandon_wait_sum: Mapped[float] = mapped_column(Float(), default=0.0)
    timeout: Mapped[int] = mapped_column(Integer(), default=0)
    exit_key: Mapped[int] = mapped_column(Integer(), default=0)
    exit_empty: Mapped[int] = mapped_column(Integer(), default=0)
    refused: Mapped[int] = mapped_column(Integer(), default=0)
    ivr_abandoned: Mapped[int] = mapped_column(Integer(), default=0)
    wait_sum: Mapped[float] = mapped_column(Float(), default=0.0)
    wait_max: Mapped[float] = mapped_column(Float(), default=0.0)
    handled: Mapped[int] = mapped_column(Integer(), default=0)
    talk_sum: Mapped[float] = mapped_column(Float(), default=0.0)
    hold_count: Mapped[int] = mapped_column(Integer(), default=0)
    hold_sum: Mapped[float] = mapped_column(Float(), default=0.0)
    hold_max: Mapped[float] = mapped_column(Float(), default=0.0)
    wrapup_sum: Mapped[float] = mapped_column(Float(), default=0.0)
    ringnoanswer: Mapped[int] = mapped_column(Integer(), default=0)
    survey_count: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")
    survey_sum: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")


class IvrAbandonRow(Base):
    __tablename__ = "stats_ivr_abandons"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    dnis: Mapped[str] = mapped_column(BoundedText(64), default="")
    menu: Mapped[str] = mapped_column(BoundedText(64), default="")


class HoldRow(Base):
    __tablename__ = "stats_holds"
    __table_args__ = (UniqueConstraint("uniqueid", "started_at"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), index=True)
    uniqueid: Mapped[str] = mapped_column(BoundedText(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LinkRow(Base):
    """Queue caller Uniqueid (queue_log's callid) -> the call's Linkedid (from AMI)."""

    __tablename__ = "stats_links"

    uniqueid: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), index=True)
