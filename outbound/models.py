"""The outbound feature's tables (alembic branch ``outbound``).

- ``outbound_campaigns``: a campaign's settings (mode, window, retry rules, caller ID) and
  its live status (draft, running, paused, stopped);
- ``outbound_lists``: a named list of leads in a campaign (one per import, or typed in);
- ``outbound_leads``: one number to call, E.164, with what the import found (region,
  the CRM customer and its owner), its dialing state and the last outcome;
- ``outbound_attempts``: one row per call placed (or refused) for a lead, with the
  Asterisk server it was placed on (a cluster);
- ``outbound_dnc``: do-not-call numbers, company wide (``scope`` "") or of one campaign
  (``scope`` = the campaign's name).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

__all__ = ["AttemptRow", "CampaignRow", "DncRow", "LeadListRow", "LeadRow"]


class CampaignRow(Base):
    __tablename__ = "outbound_campaigns"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    title: Mapped[str] = mapped_column(BoundedText(200), default="")
    mode: Mapped[str] = mapped_column(BoundedText(16), default="progressive")
    status: Mapped[str] = mapped_column(BoundedText(16), default="draft")
    #: everything else (queue, agents, caller_id, window, retry rules, pacing, amd, script)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LeadListRow(Base):
    __tablename__ = "outbound_lists"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("outbound_campaigns.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(BoundedText(128))
    active: Mapped[bool] = mapped_column(Boolean(), default=True)
    #: the last import's report (kept, rejected, duplicates, dnc, customers)
    report: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    created_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LeadRow(Base):
    __tablename__ = "outbound_leads"
    __table_args__ = (
        UniqueConstraint("list_id", "number"),
        Index("ix_outbound_leads_due", "campaign_id", "status", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    list_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("outbound_lists.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int] = mapped_column(Integer())
    number: Mapped[str] = mapped_column(BoundedText(32), index=True)  # E.164
    name: Mapped[str] = mapped_column(BoundedText(200), default="")
    region: Mapped[str] = mapped_column(BoundedText(128), default="")  # zh
    region_en: Mapped[str] = mapped_column(BoundedText(128), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)  # other columns
    customer_id: Mapped[int | None] = mapped_column(Integer(), nullable=True)
    owner_agent: Mapped[str] = mapped_column(BoundedText(128), default="")
    #: new | dialing | retry | callback | done | dnc
    status: Mapped[str] = mapped_column(BoundedText(16), default="new")
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    agent: Mapped[str] = mapped_column(BoundedText(128), default="")  # assigned / callback
    #: the server whose pacer moved it to ``dialing`` (a cluster; "" on one node)
    server: Mapped[str] = mapped_column(BoundedText(64), default="", server_default="")
    last_outcome: Mapped[str] = mapped_column(BoundedText(32), default="")
    disposition: Mapped[str] = mapped_column(BoundedText(32), default="")
    note: Mapped[str] = mapped_column(BoundedText(2000), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AttemptRow(Base):
    __tablename__ = "outbound_attempts"
    __table_args__ = (Index("ix_outbound_attempts_campaign_started", "campaign_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(Integer())
    list_id: Mapped[int] = mapped_column(Integer())
    lead_id: Mapped[int] = mapped_column(Integer(), index=True)
    number: Mapped[str] = mapped_column(BoundedText(32))
    linkedid: Mapped[str] = mapped_column(BoundedText(64), default="", index=True)
    #: the Asterisk server the call was placed on (a cluster's ``[cluster] server``; ""
    #: on one node)
    server: Mapped[str] = mapped_column(BoundedText(64), default="", server_default="")
    #: a queue call: the agent who took it, set when it connects; an agent-first call
    #: (preview, personal callback): the agent it is placed for, from the start (so an
    #: attempt with an agent and not connected is an agent-first call: a takeover reads it)
    agent: Mapped[str] = mapped_column(BoundedText(128), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: "" while in progress, then answered | busy | no_answer | failed | congestion |
    #: machine | abandoned | refused
    outcome: Mapped[str] = mapped_column(BoundedText(32), default="")
    disposition: Mapped[str] = mapped_column(BoundedText(32), default="")
    talk_s: Mapped[float] = mapped_column(Float(), default=0.0)
    wait_s: Mapped[float] = mapped_column(Float(), default=0.0)


class DncRow(Base):
    __tablename__ = "outbound_dnc"
    __table_args__ = (UniqueConstraint("number", "scope"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(BoundedText(32), index=True)  # E.164
    scope: Mapped[str] = mapped_column(BoundedText(64), default="")  # "" company, or campaign
    reason: Mapped[str] = mapped_column(BoundedText(200), default="")
    added_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
