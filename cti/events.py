"""Domain events: past-tense, frozen, published on the in-process bus.

Times are timezone-aware UTC datetimes. A call is keyed by Asterisk's Linkedid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Base of every domain event."""


# --- platform ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmiConnected(DomainEvent):
    """The AMI session is logged in (first connect or reconnect) and resynced."""

    at: datetime
    reconnect: bool


@dataclass(frozen=True, slots=True)
class AmiDisconnected(DomainEvent):
    at: datetime
    reason: str


# --- calls ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallEntered(DomainEvent):
    """An inbound call reached one of the inbound contexts."""

    linkedid: str
    at: datetime
    caller_num: str
    caller_name: str
    dnis: str


@dataclass(frozen=True, slots=True)
class IvrChoiceMade(DomainEvent):
    linkedid: str
    at: datetime
    menu: str
    choice: str
    digits: str = ""


@dataclass(frozen=True, slots=True)
class CallQueued(DomainEvent):
    linkedid: str
    at: datetime
    queue: str
    position: int


@dataclass(frozen=True, slots=True)
class CallOffered(DomainEvent):
    """A queue rang an agent's interface for this call."""

    linkedid: str
    at: datetime
    queue: str
    interface: str
    member_name: str
    caller_num: str


@dataclass(frozen=True, slots=True)
class CallAnswered(DomainEvent):
    linkedid: str
    at: datetime
    queue: str
    interface: str
    member_name: str
    wait_s: float


@dataclass(frozen=True, slots=True)
class CallHeld(DomainEvent):
    linkedid: str
    at: datetime
    uniqueid: str


@dataclass(frozen=True, slots=True)
class CallResumed(DomainEvent):
    linkedid: str
    at: datetime
    uniqueid: str


@dataclass(frozen=True, slots=True)
class CallAbandoned(DomainEvent):
    linkedid: str
    at: datetime
    queue: str
    position: int
    wait_s: float


@dataclass(frozen=True, slots=True)
class CallTimedOut(DomainEvent):
    linkedid: str
    at: datetime
    queue: str
    wait_s: float


@dataclass(frozen=True, slots=True)
class CallTransferred(DomainEvent):
    linkedid: str
    at: datetime
    kind: str  # "blind" | "attended"
    target: str


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything the platform knows about one finished call; one store row."""

    linkedid: str
    started_at: datetime
    ended_at: datetime
    caller_num: str = ""
    caller_name: str = ""
    dnis: str = ""
    answered_at: datetime | None = None
    queue: str = ""
    agent: str = ""
    wait_s: float | None = None
    talk_s: float | None = None
    disposition: str = "unknown"
    hangup_cause: str = ""
    source: str = "ami"
    legs: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class CallCompleted(DomainEvent):
    """The call's last leg hung up (or recovery found it ended): write it, once."""

    record: CallRecord


# --- agents, recordings, pops ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentStatusChanged(DomainEvent):
    agent: str
    at: datetime
    status: str  # "logged_out" | "available" | "paused"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RecordingStarted(DomainEvent):
    linkedid: str
    at: datetime
    uniqueid: str
    filename: str
    # the recordings row (GET /api/v1/recordings/{id}); filename is relative to the root
    recording_id: int | None = None


@dataclass(frozen=True, slots=True)
class RecordingStopped(DomainEvent):
    """The recording is verified and playable (published after processing)."""

    linkedid: str
    at: datetime
    uniqueid: str
    filename: str
    recording_id: int | None = None


@dataclass(frozen=True, slots=True)
class ScreenPop(DomainEvent):
    agent: str
    linkedid: str
    at: datetime
    payload: dict[str, object]


# --- IVR (appended by the ivr feature) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class IvrCompleted(DomainEvent):
    """The IVR handed the call on: ``action`` is what the dialplan does next (queue, dial,
    voicemail, hangup), ``reason`` why (choice, fallback, closed, holiday, tier, error)."""

    linkedid: str
    at: datetime
    dnis: str
    caller_num: str
    channel: str
    path: tuple[str, ...]
    action: str
    target: str
    reason: str
    collected: tuple[tuple[str, str], ...] = ()
    customer_id: int | None = None
    owner_agent: str = ""


@dataclass(frozen=True, slots=True)
class IvrAbandoned(DomainEvent):
    """The caller hung up in the IVR, before any queue (an IVR abandon, design.md §4)."""

    linkedid: str
    at: datetime
    dnis: str
    caller_num: str
    path: tuple[str, ...]
    menu: str
    collected: tuple[tuple[str, str], ...] = ()
    customer_id: int | None = None


@dataclass(frozen=True, slots=True)
class IvrCallbackRequested(DomainEvent):
    """The caller asked to be called back (number normalised to E.164, may be "")."""

    linkedid: str
    at: datetime
    number: str
    queue: str
    collected: tuple[tuple[str, str], ...] = ()


# --- callbacks and outbound calls (acd publishes, desktop pops) -------------------------------


@dataclass(frozen=True, slots=True)
class CallbackOffered(DomainEvent):
    """A callback request's turn came and ``agent`` is offered it (their desktop pops)."""

    agent: str
    at: datetime
    callback_id: int
    linkedid: str  # the original inbound call
    number: str  # E.164 (or the raw number when it could not be normalised)
    queue: str


@dataclass(frozen=True, slots=True)
class OutboundCallStarted(DomainEvent):
    """The system dials a customer for ``agent`` (click-to-call or a callback)."""

    agent: str
    at: datetime
    linkedid: str  # the new call's
    number: str
    kind: str  # "click_to_call" | "callback"
    callback_id: int | None = None
