"""The ACD's tables: queue and agent configuration, agent status history, lost callers.

Agent *status* (what the agent set) is kept on ``acd_agents`` (current) and in
``acd_status_history`` (one row per period, closed when the next one starts) so pause
time by reason is a sum over closed rows. Agent *state* (idle, ringing, on call...) is
observed from Asterisk and lives only in the live model (:mod:`acd.live`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

__all__ = [
    "AgentDeviceRow",
    "AgentRow",
    "AgentStatusRow",
    "CallbackRow",
    "LostCallerRow",
    "QueueRow",
    "SkillRow",
]


class QueueRow(Base):
    """One app_queue queue's parameters (rendered into queues_cti.conf)."""

    __tablename__ = "acd_queues"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    strategy: Mapped[str] = mapped_column(BoundedText(16), default="rrmemory")
    timeout_s: Mapped[int] = mapped_column(Integer(), default=15)
    retry_s: Mapped[int] = mapped_column(Integer(), default=2)
    wrapup_s: Mapped[int] = mapped_column(Integer(), default=0)
    max_wait_s: Mapped[int] = mapped_column(Integer(), default=300)
    max_len: Mapped[int] = mapped_column(Integer(), default=0)
    join_empty: Mapped[bool] = mapped_column(Boolean(), default=True)
    leave_empty: Mapped[bool] = mapped_column(Boolean(), default=False)
    music_class: Mapped[str] = mapped_column(BoundedText(64), default="default")
    announce_position: Mapped[bool] = mapped_column(Boolean(), default=False)
    announce_holdtime: Mapped[bool] = mapped_column(Boolean(), default=False)
    announce_frequency_s: Mapped[int] = mapped_column(Integer(), default=0)
    service_level_s: Mapped[int] = mapped_column(Integer(), default=20)
    short_abandon_s: Mapped[int] = mapped_column(Integer(), default=5)
    overflow_after_s: Mapped[int | None] = mapped_column(Integer())
    overflow_queue: Mapped[str] = mapped_column(BoundedText(64), default="")
    #: seconds a recognised caller's owner agent rings first (0: no owner routing)
    owner_ring_s: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")
    #: "" (overflow_queue when set), "queue", "voicemail" or "callback"
    overflow_action: Mapped[str] = mapped_column(BoundedText(16), default="", server_default="")
    overflow_mailbox: Mapped[str] = mapped_column(BoundedText(32), default="", server_default="")
    #: the digit a waiting caller presses to be called back ("": no callback from the queue)
    callback_key: Mapped[str] = mapped_column(BoundedText(1), default="", server_default="")
    #: sound played to waiting callers every periodic_announce_s seconds (0: never)
    periodic_announce: Mapped[str] = mapped_column(BoundedText(200), default="", server_default="")
    periodic_announce_s: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")
    #: after-call work: the agent stays paused until a disposition or this many seconds
    acw_max_s: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")
    #: what callers hear: "zh" (Mandarin) or "en"; survey: a 1-5 score after the call
    language: Mapped[str] = mapped_column(BoundedText(8), default="zh", server_default="zh")
    survey: Mapped[bool] = mapped_column(Boolean(), default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AgentRow(Base):
    """An agent (a person). ``name`` is also the name of the agent's API token."""

    __tablename__ = "acd_agents"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    display_name: Mapped[str] = mapped_column(BoundedText(128), default="")
    status: Mapped[str] = mapped_column(BoundedText(16), default="logged_out")
    reason: Mapped[str] = mapped_column(BoundedText(64), default="")
    status_since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    interface: Mapped[str] = mapped_column(BoundedText(128), default="")


class AgentDeviceRow(Base):
    """A device an agent can log in on: a SIP endpoint or a remote (mobile) number."""

    __tablename__ = "acd_agent_devices"
    __table_args__ = (UniqueConstraint("agent_id", "kind", "address"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("acd_agents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(BoundedText(16))
    address: Mapped[str] = mapped_column(BoundedText(64))
    position: Mapped[int] = mapped_column(Integer(), default=0)


class SkillRow(Base):
    """An agent's skill in a queue: the app_queue penalty (0 = first choice)."""

    __tablename__ = "acd_skills"
    __table_args__ = (UniqueConstraint("agent_id", "queue"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("acd_agents.id", ondelete="CASCADE"))
    queue: Mapped[str] = mapped_column(BoundedText(64))
    penalty: Mapped[int] = mapped_column(Integer(), default=0)


class AgentStatusRow(Base):
    """One period of one agent status; ``ended_at`` is None for the current one."""

    __tablename__ = "acd_status_history"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    agent: Mapped[str] = mapped_column(BoundedText(64), index=True)
    status: Mapped[str] = mapped_column(BoundedText(16))
    reason: Mapped[str] = mapped_column(BoundedText(64), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    changed_by: Mapped[str] = mapped_column(BoundedText(128), default="")


class LostCallerRow(Base):
    """A caller who hung up or timed out unanswered; closed by a later answered call
    from (or callback to) the same number."""

    __tablename__ = "acd_lost_callers"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    caller_num: Mapped[str] = mapped_column(BoundedText(64), default="")
    caller_key: Mapped[str] = mapped_column(BoundedText(64), index=True)
    caller_name: Mapped[str] = mapped_column(BoundedText(128), default="")
    queue: Mapped[str] = mapped_column(BoundedText(64), default="")
    reason: Mapped[str] = mapped_column(BoundedText(16))
    wait_s: Mapped[float | None] = mapped_column(Float())
    lost_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str] = mapped_column(BoundedText(32), default="")
    closed_linkedid: Mapped[str] = mapped_column(BoundedText(64), default="")


class CallbackRow(Base):
    """A callback request. It keeps its place in its queue through a placeholder call
    (``call_linkedid``) until an agent takes it; see docs/decisions/0010-acd-routing.md.

    ``status``: waiting (to be queued at ``next_attempt_at``), queued (placeholder in the
    queue), dialing (an agent has it, the customer is being dialled), unreached (attempts
    exhausted: someone must act), done (reached or closed by hand)."""

    __tablename__ = "acd_callbacks"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(BoundedText(32))
    caller_key: Mapped[str] = mapped_column(BoundedText(64), index=True)
    caller_name: Mapped[str] = mapped_column(BoundedText(128), default="")
    queue: Mapped[str] = mapped_column(BoundedText(64))
    source: Mapped[str] = mapped_column(BoundedText(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(BoundedText(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    position: Mapped[int] = mapped_column(Integer(), default=0)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), default="")
    agent: Mapped[str] = mapped_column(BoundedText(64), default="")
    call_linkedid: Mapped[str] = mapped_column(BoundedText(64), default="", index=True)
    outcome: Mapped[str] = mapped_column(BoundedText(32), default="")
    reached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
