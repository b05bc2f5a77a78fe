"""Domain events: past-tense, frozen, published on the in-process bus.

Times are timezone-aware UTC datetimes. A call is keyed by Asterisk's Linkedid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Base of every domain event."""


# --- platform ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One channel as Asterisk listed it (CoreShowChannels) when the AMI session came up."""

    uniqueid: str
    linkedid: str
    channel: str
    context: str = ""
    exten: str = ""
    state: str = ""  # ChannelStateDesc: Up, Ringing, ...
    application: str = ""
    bridge_id: str = ""
    caller_num: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AmiConnected(DomainEvent):
    """The AMI session is logged in (first connect or reconnect) and resynced.

    ``channels`` is the one channel snapshot taken at the (re)connect (the call model's
    resync): features reconcile their live state with it instead of asking Asterisk again.
    """

    at: datetime
    reconnect: bool
    channels: tuple[ChannelInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class AmiDisconnected(DomainEvent):
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class ServerLiveState(DomainEvent):
    """In a cluster: the live queues of one Asterisk server (``server``: its
    ``[cluster] server`` name) as the node driving it sees them at ``at`` (the ACD's
    ``QueueService.live_queues``), for the wallboards of every node (cti.cluster.live).
    Shown for ``ttl_s`` at most; ``live=False``: the driver let go of the server."""

    server: str
    at: datetime
    queues: tuple[dict[str, Any], ...] = ()
    ttl_s: float = 5.0
    live: bool = True


# --- calls ------------------------------------------------------------------------------
#
# Published by the platform's call model (cti.calls), the only reader of call-related AMI
# events; features consume these and never parse AMI for calls (decision 0013). Every
# event names its call by ``linkedid``. In queue events ``uniqueid``/``channel`` are the
# queued caller's leg (the key app_queue and queue_log use); ``interface`` and
# ``member_name`` are the queue member (MemberName = the ACD agent's name).


@dataclass(frozen=True, slots=True)
class CallEntered(DomainEvent):
    """An inbound call reached one of the inbound contexts."""

    linkedid: str
    at: datetime
    caller_num: str
    caller_name: str
    dnis: str


@dataclass(frozen=True, slots=True)
class CallerIdChanged(DomainEvent):
    """The caller's number or name became known or changed after the call was first seen
    (a Local or originated channel gets its caller ID after Newchannel; a late
    NewCallerid). ``caller_num``/``caller_name`` are the call's current values."""

    linkedid: str
    at: datetime
    caller_num: str
    caller_name: str


@dataclass(frozen=True, slots=True)
class IvrChoiceMade(DomainEvent):
    linkedid: str
    at: datetime
    menu: str
    choice: str
    digits: str = ""


@dataclass(frozen=True, slots=True)
class CallQueued(DomainEvent):
    """The caller entered ``queue`` (QueueCallerJoin)."""

    linkedid: str
    at: datetime
    queue: str
    position: int
    uniqueid: str = ""
    channel: str = ""
    caller_num: str = ""


@dataclass(frozen=True, slots=True)
class CallOffered(DomainEvent):
    """A queue rang an agent's interface for this call (AgentCalled)."""

    linkedid: str
    at: datetime
    queue: str
    interface: str
    member_name: str
    caller_num: str
    uniqueid: str = ""
    agent_channel: str = ""  # the member's ringing channel


@dataclass(frozen=True, slots=True)
class CallRingNoAnswer(DomainEvent):
    """A ringing agent did not answer (AgentRingNoAnswer), or answered and dropped the
    call before it was connected (AgentDump): the queue goes on ringing others."""

    linkedid: str
    at: datetime
    queue: str
    interface: str
    member_name: str
    uniqueid: str = ""
    ring_s: float | None = None


@dataclass(frozen=True, slots=True)
class CallLeftQueue(DomainEvent):
    """The caller is no longer waiting in ``queue`` (QueueCallerLeave), whatever the
    reason; CallAnswered / CallAbandoned / CallTimedOut say which, possibly later."""

    linkedid: str
    at: datetime
    queue: str
    uniqueid: str
    position: int = 0


@dataclass(frozen=True, slots=True)
class CallAnswered(DomainEvent):
    """An agent answered a queue call (AgentConnect): both legs of the conversation."""

    linkedid: str
    at: datetime
    queue: str
    interface: str
    member_name: str
    wait_s: float
    caller_uniqueid: str = ""
    caller_channel: str = ""
    agent_uniqueid: str = ""
    agent_channel: str = ""
    ring_s: float | None = None
    caller_num: str = ""


@dataclass(frozen=True, slots=True)
class CallHandled(DomainEvent):
    """The agent's part of a queue call ended (AgentComplete): ``reason`` is who hung up
    (``agent`` | ``caller``) or ``transfer``."""

    linkedid: str
    at: datetime
    queue: str
    interface: str
    member_name: str
    wait_s: float | None
    talk_s: float | None
    reason: str = ""
    uniqueid: str = ""
    agent_channel: str = ""


@dataclass(frozen=True, slots=True)
class CallHeld(DomainEvent):
    """A leg of the call was put on hold (Hold: the caller hears music)."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str = ""


@dataclass(frozen=True, slots=True)
class CallResumed(DomainEvent):
    """A held leg was taken off hold (an Unhold after a Hold of the same leg)."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str = ""


@dataclass(frozen=True, slots=True)
class CallAbandoned(DomainEvent):
    """The caller hung up while waiting in ``queue`` (a real abandon: app_queue also
    reports a queue timeout as QueueCallerAbandon; the model tells them apart)."""

    linkedid: str
    at: datetime
    queue: str
    position: int
    wait_s: float
    uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class CallTimedOut(DomainEvent):
    """The caller left ``queue`` unanswered but still on the line: ``reason`` is
    ``timeout`` (the queue's max wait, EXITWITHTIMEOUT), ``exit_empty`` (no agents left,
    EXITEMPTY) or ``exit_key`` (the caller pressed the queue's key, EXITWITHKEY: in this
    product the callback key)."""

    linkedid: str
    at: datetime
    queue: str
    wait_s: float
    reason: str = "timeout"
    uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class CallTransferred(DomainEvent):
    """A party transferred the call (BlindTransfer / AttendedTransfer, successful only).

    Blind: ``target`` is the extension dialled, ``context`` its context. Attended:
    ``target`` is the channel the caller now talks to (or the application), and
    ``target_linkedid`` the consultation call's Linkedid. ``transferer_*`` is the leg
    that transferred (the agent)."""

    linkedid: str
    at: datetime
    kind: str  # "blind" | "attended"
    target: str
    context: str = ""
    transferer_uniqueid: str = ""
    transferer_channel: str = ""
    target_channel: str = ""
    target_linkedid: str = ""


@dataclass(frozen=True, slots=True)
class CallConferenceJoined(DomainEvent):
    """A leg joined a bridge of this call that now has three parties or more (a
    conference); published for every party when the third arrives, then per joiner."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str
    bridge_id: str
    parties: int


@dataclass(frozen=True, slots=True)
class CallConferenceLeft(DomainEvent):
    """A leg left a conference bridge of this call; ``parties`` is how many remain."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str
    bridge_id: str
    parties: int


@dataclass(frozen=True, slots=True)
class CallDialing(DomainEvent):
    """A leg of the call dials out outside any queue (DialBegin of Dial(), e.g. the
    ``[cti-outbound]`` leg of a click-to-call or a callback). Queue rings are
    CallOffered, never this."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str
    context: str
    dest_uniqueid: str = ""
    dest_channel: str = ""
    dial_string: str = ""


@dataclass(frozen=True, slots=True)
class CallDialEnded(DomainEvent):
    """The outcome of a CallDialing (DialEnd): ``status`` ANSWER, BUSY, NOANSWER, CANCEL,
    CONGESTION, CHANUNAVAIL, ..."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str
    context: str
    status: str
    dest_uniqueid: str = ""
    dest_channel: str = ""


@dataclass(frozen=True, slots=True)
class CallLegEnded(DomainEvent):
    """One leg (channel) of the call hung up; ``remaining`` legs are still up."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str
    cause: str = ""
    remaining: int = 0


#: Dispositions of a finished call (CallRecord.disposition, the ``calls`` row).
DISPOSITIONS = (
    "answered",  # an agent (or the dialled party) answered
    "abandoned",  # hung up while waiting in a queue
    "timeout",  # left the queue at its max wait (EXITWITHTIMEOUT)
    "exit_empty",  # left the queue because it had no agents (EXITEMPTY)
    "callback",  # asked to be called back (IVR option or the queue's key, EXITWITHKEY)
    "ivr_abandon",  # hung up in the IVR, before any queue
    "no_answer",  # reached a queue or a dial, nobody answered, no queue outcome
    "unknown",
)


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
    disposition: str = "unknown"  # one of DISPOSITIONS
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
class CallRecordingArmed(DomainEvent):
    """The dialplan started MixMonitor on a queued caller's channel because the queue's
    policy records (``armed``): its ``b`` option writes audio only while the caller is
    bridged, so the file begins at the agent's answer without the daemon; or it stopped
    that MixMonitor on entering a queue that does not record (``armed`` False). From the
    dialplan's ``UserEvent(CtiRecording)``; ``path`` is relative to the recordings root."""

    linkedid: str
    at: datetime
    uniqueid: str
    channel: str
    queue: str
    path: str
    mixmonitor_id: str
    armed: bool = True


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


# --- service quality (appended by the quality feature, decision 0026) --------------------


@dataclass(frozen=True, slots=True)
class CallDispositionSaved(DomainEvent):
    """Someone saved a disposition (wrap-up code) for a call: ends its after-call work."""

    linkedid: str
    at: datetime
    disposition: str
    agent: str = ""  # the interaction's agent, when known


@dataclass(frozen=True, slots=True)
class WrapUpStarted(DomainEvent):
    """After-call work began: ``agent`` stays out of the queues until the call's
    disposition is saved or ``until`` passes."""

    agent: str
    linkedid: str
    at: datetime
    queue: str
    until: datetime


@dataclass(frozen=True, slots=True)
class WrapUpEnded(DomainEvent):
    """After-call work ended after ``wrapup_s`` seconds; ``reason``: disposition (saved),
    timeout (the queue's maximum passed), status (the agent set a status), lost (Asterisk
    forgot the pause, e.g. restarted)."""

    agent: str
    linkedid: str
    at: datetime
    queue: str
    wrapup_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class SurveyAnswered(DomainEvent):
    """The caller scored the call (1-5) in the satisfaction survey after a queue call."""

    linkedid: str
    at: datetime
    queue: str
    agent: str
    score: int
    callid: str = ""  # the queue entry's queue_log callid (the caller channel's Uniqueid)


# --- outbound campaigns (appended by the outbound feature, decision 0024) ----------------


@dataclass(frozen=True, slots=True)
class CampaignLeadConnected(DomainEvent):
    """A campaign call reached ``agent``: the lead card to pop (desktop). ``fields`` are
    the lead's imported columns (customer text: render inert)."""

    agent: str
    at: datetime
    linkedid: str
    campaign: str
    lead_id: int
    number: str
    name: str = ""
    region: str = ""
    customer_id: int | None = None
    fields: tuple[tuple[str, str], ...] = ()


# --- call control (appended by the callcontrol feature) ---------------------------------


@dataclass(frozen=True, slots=True)
class CallHandedOver(DomainEvent):
    """Call control moved the call to another agent (published by callcontrol): a
    transfer to an agent (``kind`` blind / attended), a supervisor's take-over, or a
    transfer to a queue (``to_agent`` empty: whoever the queue finds gets it).

    ``state`` is ``ringing`` (the target's phone rings), ``answered`` (the target talks
    to the caller now; ``agent_channel`` is its leg) or ``failed`` (nobody answered: the
    caller went back to the queue). ``notes`` is what the agents before wrote on the
    card (their desktop sent it with the transfer), for the next agent's card."""

    linkedid: str
    at: datetime
    from_agent: str
    to_agent: str
    kind: str  # "blind" | "attended" | "take_over" | "queue" | "external"
    state: str = "answered"  # "ringing" | "answered" | "failed"
    agent_channel: str = ""
    notes: str = ""


# --- ACD ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuesChanged(DomainEvent):
    """The ACD's queues changed in the store (created, updated, deleted through the API).
    In a cluster every node driving a server pushes them to its Asterisk, whichever node
    made the change; ``origin`` is the node (process) that made it and applied it already
    if it drives."""

    at: datetime
    origin: str


# --- phones -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhonesChanged(DomainEvent):
    """Agents' phones changed in the store (added, rotated, removed: the phones feature).
    In a cluster the node driving Asterisk applies them, whichever node made the change;
    ``origin`` is the node (process) that made it and applied it already if it drives."""

    at: datetime
    phone: str
    origin: str


@dataclass(frozen=True, slots=True)
class PhoneLocated(DomainEvent):
    """A phone's registration appeared (``registered``) or went away on one Asterisk
    server (published by the phones feature of the node driving ``server``). In a cluster
    the last registration decides where the agent on that phone is a queue member."""

    at: datetime
    phone: str
    server: str
    registered: bool


@dataclass(frozen=True, slots=True)
class CallCallerKept(DomainEvent):
    """Call control protects this call's caller (published by callcontrol): the agent
    talks on a browser phone, and if that leg drops the caller waits for the agent (hold
    music, reconnected when its phone registers again, else back to the queue's front).
    Features that end something with the agent's leg (a recording) wait for the caller's
    leg instead."""

    linkedid: str
    at: datetime
    agent: str
    agent_channel: str = ""


@dataclass(frozen=True, slots=True)
class PhoneRegistered(DomainEvent):
    """A phone's AOR (its name, ``phone``) gained a contact: the phone registered (again),
    e.g. a reloaded desktop page's browser phone (published by the phones feature from
    Asterisk's ContactStatus). ``agent`` is the phone's owner, ``contact`` the new
    contact's URI. A refresh of a contact Asterisk already holds is not one."""

    at: datetime
    phone: str
    agent: str = ""
    contact: str = ""


# --- what crosses nodes -----------------------------------------------------------------

#: In a cluster, the events other nodes receive (decision 0028): what serves the clients
#: connected to any node (a desktop's pop and card, the wallboard's servers) and what each
#: driver reconciles its own server from (agents' statuses, phones, queues). Only these
#: cross the broker; a handler asks for other nodes' events (``subscribe(...,
#: remote=True)``) of these types only. Every other event is handled on the node that
#: published it and never leaves it (no encoding, no broker message, no decoding on every
#: other node for nobody).
SHARED_EVENTS: frozenset[type[DomainEvent]] = frozenset({
    # a desktop's pop, whichever node drives the server that took the call (desktop)
    CallEntered, CallerIdChanged, IvrCompleted, CallQueued, CallOffered, CallRingNoAnswer,
    CallAnswered, CallDialEnded, CallHeld, CallResumed, CallTransferred, CallHandedOver,
    CallAbandoned, CallTimedOut, CallCompleted, CallbackOffered, OutboundCallStarted,
    CampaignLeadConnected,
    # each server's live queues, for every node's wallboard and campaign pacers
    ServerLiveState,
    # what every driver reconciles its own server's memberships and phones from (acd, phones)
    AgentStatusChanged, PhoneLocated, QueuesChanged, PhonesChanged,
})  # fmt: skip
