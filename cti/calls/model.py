"""The live call model: AMI events in, domain events out, no I/O.

This is the one place that reads call-related AMI events (decision 0013): channels,
queue callers and agents' rings, answers, holds, transfers, conferences, dials. Features
consume the domain events it returns (cti.events) and never parse AMI for calls.

A call is keyed by Linkedid and has legs keyed by Uniqueid. Any event carrying a Linkedid
and Uniqueid creates what it names, so the model does not depend on AMI event order
(Newchannel, BridgeEnter, queue events may arrive either way). When the last known leg
hangs up the call is *closing*; it is finalised (CallCompleted) ``close_grace_s`` later
so that events that trail the last Hangup (AgentComplete) still land on it; an
AgentComplete that app_queue built after the caller's channel was gone has no Linkedid or
Uniqueid of the caller and is keyed from the model instead (the member channel's
DestLinkedid, see ``_AGENT_EVENTS``), never dropped while its call is open. Time is
passed in (the AMI ``Timestamp`` header when present), which keeps the model
deterministic under replay.

How a caller's stay in a queue ends (:class:`QueueStay`), since AMI alone is ambiguous:

- app_queue sends QueueCallerLeave *before* AgentConnect for an answered caller;
- it sends QueueCallerAbandon for a real abandon *and* for a timeout or leave-when-empty
  (``record_abandoned()`` in app_queue.c), and nothing at all for an exit with a key.

The product's dialplan therefore raises ``UserEvent(CtiQueueExit, Queue, Status)`` on
every path where the caller is still on the line after Queue() (QUEUESTATUS, or
EXITWITHKEY in the key contexts). A stay resolves as: answered on AgentConnect; the
dialplan's status when it says one; abandoned when the queued leg hangs up after an
abandon report; otherwise a timeout once the caller is seen alive (joins another queue)
or ``abandon_grace_s`` of AMI time passed without a hang-up. Calls whose event stream has
a gap (seen first in a reconnect snapshot, or in progress across an AMI outage) are
marked ``gap``: their record is completed from Asterisk's own records (recovery).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cti.events import (
    CallAbandoned,
    CallAnswered,
    CallCompleted,
    CallConferenceJoined,
    CallConferenceLeft,
    CallDialEnded,
    CallDialing,
    CallEntered,
    CallerIdChanged,
    CallHandled,
    CallHeld,
    CallLeftQueue,
    CallLegEnded,
    CallOffered,
    CallQueued,
    CallRecord,
    CallRecordingArmed,
    CallResumed,
    CallRingNoAnswer,
    CallTimedOut,
    CallTransferred,
    ChannelInfo,
    DomainEvent,
)

UNKNOWN_CID = {"", "<unknown>", "unknown"}

#: The user event the product's dialplan raises when a caller leaves Queue() alive.
QUEUE_EXIT_EVENT = "CtiQueueExit"
#: The user event the dialplan raises when it starts (State: armed) or stops (disarmed)
#: the recording of a queued caller ([cti-rec-arm], decision 0027).
RECORDING_EVENT = "CtiRecording"
_USER_EVENTS = frozenset({QUEUE_EXIT_EVENT, RECORDING_EVENT})
#: QUEUESTATUS (or EXITWITHKEY) -> how the stay ended.
_EXIT_STATUS = {
    "TIMEOUT": "timeout",
    "LEAVEEMPTY": "exit_empty",
    "LEAVEUNAVAIL": "exit_empty",
    "EXITWITHKEY": "exit_key",
    "FULL": "refused",
    "JOINEMPTY": "refused",
    "JOINUNAVAIL": "refused",
}
#: How a resolved stay makes the call's disposition.
OUTCOME_DISPOSITION = {
    "answered": "answered",
    "abandoned": "abandoned",
    "timeout": "timeout",
    "exit_empty": "exit_empty",
    "exit_key": "callback",
    "refused": "refused",
}

# The AMI events the model consumes, and the classes they come in (the client subscribes
# to these classes only: never ``dialplan``, design.md §3).
HANDLED_EVENTS = frozenset(
    {
        "Newchannel", "NewCallerid", "Newstate", "Hangup",
        "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon",
        "AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer", "AgentDump",
        "BridgeEnter", "BridgeLeave", "Hold", "Unhold", "BlindTransfer", "AttendedTransfer",
        "DialBegin", "DialEnd", "UserEvent",
    }
)  # fmt: skip
EVENT_CLASSES = "call,agent,user"
_TRANSFERS = frozenset({"BlindTransfer", "AttendedTransfer"})
#: app_queue's events of a member's part of a queue call. In Asterisk 22 (apps/app_queue.c)
#: AgentCalled, AgentConnect, AgentRingNoAnswer and AgentDump are built from the live caller
#: and member channels (``queue_publish_multi_channel_blob``: without both snapshots there
#: is no event), so they always carry the caller's fields. AgentComplete is built from the
#: channels' *cached* snapshots (``send_agent_complete`` after
#: ``ast_channel_snapshot_get_latest``, in a stasis callback that runs after the hang-up
#: request): a channel that has finished hanging up by then is no longer in the cache and
#: its fields are simply left out. So when the caller hangs up first, AgentComplete may
#: carry no Channel/Uniqueid/Linkedid/CallerIDNum/... of the caller, only the member's
#: channel prefixed ``Dest`` (DestChannel, DestUniqueid, DestLinkedid, ...) and the blob's
#: Queue, Interface, MemberName, HoldTime, TalkTime, Reason; when the member's channel had
#: finished hanging up as well, only the blob's fields (all three forms seen from our
#: Asterisk 22 under load, a few calls in a hundred).
_AGENT_EVENTS = frozenset(
    {"AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer", "AgentDump"}
)


@dataclass
class Leg:
    uniqueid: str
    channel: str
    started_at: datetime
    ended_at: datetime | None = None
    cause: str = ""


@dataclass
class QueueStay:
    """One stay of the caller in one queue (QueueCallerJoin to its outcome)."""

    queue: str
    uniqueid: str
    joined_at: datetime | None
    position: int = 0
    left_at: datetime | None = None
    abandon: tuple[datetime, float | None, int] | None = None  # QueueCallerAbandon seen
    exit_status: str = ""  # what the dialplan said (CtiQueueExit)
    outcome: str = ""  # answered | abandoned | timeout | exit_empty | exit_key | refused

    def wait(self, at: datetime, reported: float | None = None) -> float:
        """Asterisk's whole-second wait (queue_log's ``time(NULL) - start``)."""
        if reported is not None:
            return reported
        if self.joined_at is None:
            return 0.0
        return float(max(0, int(at.timestamp()) - int(self.joined_at.timestamp())))


@dataclass
class Call:
    linkedid: str
    started_at: datetime
    legs: dict[str, Leg] = field(default_factory=dict)
    caller_num: str = ""
    caller_name: str = ""
    dnis: str = ""
    entered: bool = False
    queue: str = ""
    stay: QueueStay | None = None
    outcome: str = ""  # the last resolved stay's outcome
    agent: str = ""
    member: str = ""  # the answering member's Interface (AgentConnect)
    answered_at: datetime | None = None
    wait_s: float | None = None
    talk_s: float | None = None
    bridged_at: datetime | None = None
    closing_since: datetime | None = None
    last_cause: str = ""
    held: set[str] = field(default_factory=set)  # legs on hold (Hold seen, no Unhold yet)
    queue_dials: set[str] = field(default_factory=set)  # members' channels a queue rang
    callback_requested: bool = False  # the IVR took a callback request (IvrCallbackRequested)
    # the event stream of this call has a gap (first seen in a snapshot, or in progress
    # across an AMI outage): recovery completes its record from CDR / queue_log
    gap: bool = False
    # the Newchannel of the call's first channel (Uniqueid == Linkedid) was seen: every
    # event of the call since is in the stream, unless the link dropped (then ``gap``)
    born: bool = False
    # known only from a resync's snapshot, no event of it seen yet
    adopted: bool = False

    @property
    def active_legs(self) -> int:
        return sum(1 for leg in self.legs.values() if leg.ended_at is None)

    def disposition(self) -> str:
        if self.answered_at is not None:
            return "answered"
        if self.outcome:
            return OUTCOME_DISPOSITION.get(self.outcome, "unknown")
        if self.callback_requested:
            return "callback"
        if self.bridged_at is not None:
            return "answered"
        if self.entered and not self.queue:
            return "ivr_abandon"
        return "no_answer" if self.queue else "unknown"

    def to_record(self, ended_at: datetime, source: str = "ami") -> CallRecord:
        return CallRecord(
            linkedid=self.linkedid,
            started_at=self.started_at,
            ended_at=ended_at,
            caller_num=self.caller_num,
            caller_name=self.caller_name,
            dnis=self.dnis,
            answered_at=self.answered_at or self.bridged_at,
            queue=self.queue,
            agent=self.agent,
            wait_s=self.wait_s,
            talk_s=self.talk_s,
            disposition=self.disposition(),
            hangup_cause=self.last_cause,
            source=source,
            legs=tuple(sorted(self.legs, key=lambda u: (self.legs[u].started_at, u))),
        )

    def snapshot(self) -> dict[str, object]:
        """JSON-ready view of a call in progress."""
        return {
            "linkedid": self.linkedid,
            "state": "closing" if self.closing_since else "active",
            "started_at": self.started_at.isoformat(),
            "caller_num": self.caller_num,
            "caller_name": self.caller_name,
            "dnis": self.dnis,
            "queue": self.queue,
            "agent": self.agent,
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
            "legs": [leg.channel for leg in self.legs.values() if leg.ended_at is None],
        }


def event_time(msg: Mapping[str, str], fallback: datetime) -> datetime:
    """The AMI ``Timestamp`` header (timestampevents=yes) as UTC, else ``fallback``."""
    raw = msg.get("Timestamp")
    if raw:
        try:
            return datetime.fromtimestamp(float(raw), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return fallback


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _member(msg: Mapping[str, str]) -> tuple[str, str]:
    """(interface, member name) of a queue agent event."""
    return msg.get("Interface", "") or msg.get("DestChannel", ""), msg.get("MemberName", "")


def channel_info(ch: Mapping[str, str], now: datetime) -> ChannelInfo:
    """A CoreShowChannel item as the snapshot the platform publishes."""
    return ChannelInfo(
        uniqueid=ch.get("Uniqueid", ""), linkedid=ch.get("Linkedid", ""),
        channel=ch.get("Channel", ""), context=ch.get("Context", ""),
        exten=ch.get("Exten", ""), state=ch.get("ChannelStateDesc", ""),
        application=ch.get("Application", ""), bridge_id=ch.get("BridgeId", ""),
        caller_num=ch.get("CallerIDNum", ""), duration_s=_duration_s(ch),
    )  # fmt: skip


class CallModel:
    def __init__(
        self,
        *,
        inbound_contexts: Iterable[str] = ("cti-inbound",),
        close_grace_s: float = 1.0,
        abandon_grace_s: float = 2.0,
    ) -> None:
        self.inbound_contexts = frozenset(inbound_contexts)
        self.close_grace_s = close_grace_s
        self.leave_grace_s = 1.0
        self.abandon_grace_s = abandon_grace_s
        #: how long an answered queue call's AgentComplete may trail its last hang-up
        self.complete_grace_s = 5.0
        self.calls: dict[str, Call] = {}
        self._finished: dict[str, datetime] = {}  # linkedid -> when finalised (late events)
        # bridge id -> uniqueid -> (linkedid, channel), for conferences
        self._bridges: dict[str, dict[str, tuple[str, str]]] = {}
        self._bridge_call: dict[str, str] = {}  # bridge id -> the call it belongs to
        self._ami_clock: datetime | None = None  # the newest event time seen
        self._gapped: list[Call] = []

    # --- ingest ---------------------------------------------------------------------------
    def handle(self, msg: Mapping[str, str], now: datetime) -> list[DomainEvent]:
        name = msg.get("Event")
        if name not in HANDLED_EVENTS:
            return []
        at = event_time(msg, now)
        if self._ami_clock is None or at > self._ami_clock:
            self._ami_clock = at
        if name in _TRANSFERS:
            return self._transfer(name, msg, at)
        linkedid = msg.get("Linkedid") or ""
        uniqueid = msg.get("Uniqueid") or ""
        if (not linkedid or not uniqueid) and name in _AGENT_EVENTS:
            return self._agent_event_without_caller(name, msg, at)
        if not linkedid or not uniqueid or linkedid in self._finished:
            return []
        if name == "UserEvent" and msg.get("UserEvent") not in _USER_EVENTS:
            return []
        out: list[DomainEvent] = []
        call = self.calls.get(linkedid)
        if call is not None and call.adopted:
            call.adopted = False
            if name == "Newchannel" and uniqueid == linkedid:
                # the snapshot listed the call before its first event reached us (Asterisk
                # sends a list's answer before events queued meanwhile): it was born on this
                # link and all its events are still to come, so the snapshot's view goes
                del self.calls[linkedid]
                call = None
        known = call is not None
        if call is None:
            call = self.calls[linkedid] = Call(linkedid=linkedid, started_at=at)
        leg = call.legs.get(uniqueid)
        if leg is None:
            leg = call.legs[uniqueid] = Leg(uniqueid, msg.get("Channel", ""), at)
        if at < leg.started_at:
            leg.started_at = at
        if at < call.started_at:
            call.started_at = at
        if name == "Newchannel" and uniqueid == linkedid:
            call.born = True
        if name != "Hangup" and leg.ended_at is None:
            call.closing_since = None if call.active_legs else call.closing_since
        before = (call.caller_num, call.caller_name)
        self._caller_id(call, msg, uniqueid)
        if known and (call.caller_num, call.caller_name) != before:
            out.append(CallerIdChanged(linkedid, at, call.caller_num, call.caller_name))
        if not call.entered and msg.get("Context") in self.inbound_contexts:
            call.entered = True
            call.dnis = msg.get("Exten", "")
            out.append(CallEntered(linkedid, at, call.caller_num, call.caller_name, call.dnis))
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, call, leg, msg, at, out)
        return out

    def _agent_event_without_caller(
        self, name: str, msg: Mapping[str, str], at: datetime
    ) -> list[DomainEvent]:
        """A queue member's event that lacks the caller's fields (the caller's channel was
        gone when app_queue built it, see ``_AGENT_EVENTS``), keyed from the model.

        The call is the member channel's (``DestLinkedid``: app_queue dials a member with
        the caller as requestor, so the member's channel shares the caller's Linkedid) when
        it is a call in progress of that queue; without the member's fields either, it is
        the one answered call of that member (``Interface``) in that queue still waiting
        for its AgentComplete. The caller's leg is the queued one. A call already finalised,
        unknown, or not told apart gets nothing (its record then comes from recovery)."""
        queue = msg.get("Queue", "")
        call = self.calls.get(msg.get("DestLinkedid") or "")
        if call is None or call.queue != queue:
            call = None
            iface = msg.get("Interface", "")
            if name == "AgentComplete" and queue and iface:
                waiting = [
                    c for c in self.calls.values()
                    if c.member == iface and c.queue == queue
                    and c.answered_at is not None and c.talk_s is None
                ]  # fmt: skip
                call = waiting[0] if len(waiting) == 1 else None
        if call is None:
            return []
        caller = call.stay.uniqueid if call.stay is not None else call.linkedid
        leg = call.legs.get(caller)
        if leg is None:
            return []
        out: list[DomainEvent] = []
        _HANDLERS[name](self, call, leg, msg, at, out)
        return out

    def _caller_id(self, call: Call, msg: Mapping[str, str], uniqueid: str) -> None:
        """The caller is the originating leg's caller ID (Uniqueid == Linkedid), or the
        queued channel's; ``<unknown>`` never overwrites a known number."""
        if uniqueid != call.linkedid and msg.get("Event") != "QueueCallerJoin":
            if call.caller_num:
                return
        num = msg.get("CallerIDNum", "")
        if num not in UNKNOWN_CID:
            call.caller_num = num
            name = msg.get("CallerIDName", "")
            if name not in UNKNOWN_CID:
                call.caller_name = name

    # --- channels -------------------------------------------------------------------------
    def _hangup(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        if leg.ended_at is not None:
            return
        leg.ended_at = at
        leg.cause = msg.get("Cause-txt", "") or msg.get("Cause", "")
        call.last_cause = leg.cause or call.last_cause
        call.held.discard(leg.uniqueid)
        out.append(
            CallLegEnded(call.linkedid, at, leg.uniqueid, leg.channel, leg.cause, call.active_legs)
        )
        stay = call.stay
        if stay is not None and not stay.outcome and stay.uniqueid == leg.uniqueid:
            if stay.abandon is not None:
                out.extend(self._resolve(call, "abandoned", stay.abandon[0]))
        if call.active_legs == 0:
            call.closing_since = max(
                (lg.ended_at for lg in call.legs.values() if lg.ended_at), default=at
            )

    def _bridge_enter(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        if call.bridged_at is None and _int(msg.get("BridgeNumChannels")) >= 2:
            call.bridged_at = at
        bridge = msg.get("BridgeUniqueid", "")
        if not bridge:
            return
        members = self._bridges.setdefault(bridge, {})
        self._bridge_call.setdefault(bridge, call.linkedid)
        if leg.uniqueid in members:
            return
        members[leg.uniqueid] = (call.linkedid, leg.channel)
        owner, parties = self._bridge_call[bridge], len(members)
        if parties == 3:
            for uid, (_, channel) in members.items():
                out.append(CallConferenceJoined(owner, at, uid, channel, bridge, parties))
        elif parties > 3:
            out.append(CallConferenceJoined(owner, at, leg.uniqueid, leg.channel, bridge, parties))

    def _bridge_leave(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        bridge = msg.get("BridgeUniqueid", "")
        members = self._bridges.get(bridge)
        if members is None or members.pop(leg.uniqueid, None) is None:
            return
        if len(members) >= 2:
            owner = self._bridge_call.get(bridge, call.linkedid)
            out.append(
                CallConferenceLeft(owner, at, leg.uniqueid, leg.channel, bridge, len(members))
            )
        if not members:
            del self._bridges[bridge]
            self._bridge_call.pop(bridge, None)

    def _hold(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        if leg.uniqueid not in call.held:
            call.held.add(leg.uniqueid)
            out.append(CallHeld(call.linkedid, at, leg.uniqueid, leg.channel))

    def _unhold(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        # Asterisk also unholds a blind transferer that was never held: not a resume
        if leg.uniqueid in call.held:
            call.held.discard(leg.uniqueid)
            out.append(CallResumed(call.linkedid, at, leg.uniqueid, leg.channel))

    def _dial_begin(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        dest = msg.get("DestUniqueid", "")
        stay = call.stay
        if stay is not None and stay.uniqueid == leg.uniqueid and stay.left_at is None:
            call.queue_dials.add(dest)  # app_queue ringing a member: that is CallOffered
            return
        out.append(
            CallDialing(
                call.linkedid, at, leg.uniqueid, leg.channel, msg.get("Context", ""), dest,
                msg.get("DestChannel", ""), msg.get("DialString", ""),
            )
        )  # fmt: skip

    def _dial_end(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        dest = msg.get("DestUniqueid", "")
        if dest in call.queue_dials:
            call.queue_dials.discard(dest)
            return
        out.append(
            CallDialEnded(
                call.linkedid, at, leg.uniqueid, leg.channel, msg.get("Context", ""),
                msg.get("DialStatus", ""), dest, msg.get("DestChannel", ""),
            )
        )  # fmt: skip

    # --- queues ---------------------------------------------------------------------------
    def _stay(self, call: Call, msg: Mapping[str, str], leg: Leg) -> QueueStay:
        """The caller's current stay in the event's queue (created when its join was not
        seen, e.g. the call was adopted from a snapshot)."""
        queue = msg.get("Queue", "")
        stay = call.stay
        if stay is None or stay.queue != queue:
            stay = call.stay = QueueStay(queue, leg.uniqueid, None, _int(msg.get("Position")))
            call.queue = queue or call.queue
        return stay

    def _queue_join(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        queue = msg.get("Queue", "")
        position = _int(msg.get("Position"))
        old = call.stay
        if (
            old is not None
            and old.joined_at is None
            and (old.queue, old.uniqueid) == (queue, leg.uniqueid)
        ):
            old.joined_at, old.position = at, position  # later events of it came first
        else:
            if old is not None and not old.outcome:
                # left the previous queue unanswered and is alive in this one
                out.extend(self._resolve(call, old.exit_status or "timeout", old.left_at or at))
            call.stay = QueueStay(queue, leg.uniqueid, at, position)
        call.queue = queue
        out.append(
            CallQueued(
                call.linkedid, at, queue, position, leg.uniqueid, leg.channel,
                msg.get("CallerIDNum", "") if msg.get("CallerIDNum") not in UNKNOWN_CID else "",
            )
        )  # fmt: skip

    def _queue_leave(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        stay = self._stay(call, msg, leg)
        if stay.left_at is None:
            stay.left_at = at
            out.append(
                CallLeftQueue(
                    call.linkedid, at, stay.queue, leg.uniqueid, _int(msg.get("Position"))
                )
            )
        if not stay.outcome and stay.exit_status:
            out.extend(self._resolve(call, stay.exit_status, at))

    def _queue_abandon(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        stay = self._stay(call, msg, leg)
        if stay.outcome:
            return
        stay.abandon = (at, _float(msg.get("HoldTime")), _int(msg.get("Position")))
        if stay.exit_status:
            out.extend(self._resolve(call, stay.exit_status, at))
        elif leg.ended_at is not None:  # the hang-up came first (events out of order)
            out.extend(self._resolve(call, "abandoned", at))

    def _user_event(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        if msg.get("UserEvent") == RECORDING_EVENT:
            self._recording(call, leg, msg, at, out)
        else:
            self._queue_exit(call, leg, msg, at, out)

    def _recording(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        """The dialplan's CtiRecording: MixMonitor armed (or disarmed) on this leg."""
        state = msg.get("State", "")
        if state not in ("armed", "disarmed"):
            return
        out.append(
            CallRecordingArmed(
                call.linkedid, at, leg.uniqueid, leg.channel or msg.get("Channel", ""),
                msg.get("Queue", ""), msg.get("Path", ""), msg.get("MixMonitorID", ""),
                armed=state == "armed",
            )
        )  # fmt: skip

    def _queue_exit(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        """The dialplan's CtiQueueExit: the caller left Queue() alive, and why."""
        outcome = _EXIT_STATUS.get(msg.get("Status", "").upper())
        if outcome is None:
            return
        if outcome == "refused":  # never joined: no stay
            call.queue = msg.get("Queue", "") or call.queue
            if not call.outcome:
                call.outcome = "refused"
            return
        stay = self._stay(call, msg, leg)
        if stay.outcome:
            return
        stay.exit_status = outcome
        if stay.left_at is not None or stay.abandon is not None:
            out.extend(self._resolve(call, outcome, stay.left_at or at))

    def _resolve(self, call: Call, outcome: str, at: datetime) -> list[DomainEvent]:
        """End the current stay with ``outcome`` (not answered) and say so once."""
        stay = call.stay
        if stay is None or stay.outcome:
            return []
        stay.outcome = call.outcome = outcome
        reported = stay.abandon[1] if stay.abandon is not None else None
        position = stay.abandon[2] if stay.abandon is not None else stay.position
        if stay.abandon is not None:
            at = stay.abandon[0]
        wait = stay.wait(at, reported)
        call.wait_s = wait
        if outcome == "abandoned":
            return [CallAbandoned(call.linkedid, at, stay.queue, position, wait, stay.uniqueid)]
        return [CallTimedOut(call.linkedid, at, stay.queue, wait, outcome, stay.uniqueid)]

    def _agent_called(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        iface, name = _member(msg)
        out.append(
            CallOffered(
                call.linkedid, at, msg.get("Queue", ""), iface, name, call.caller_num,
                leg.uniqueid, msg.get("DestChannel", ""),
            )
        )  # fmt: skip

    def _agent_connect(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        stay = self._stay(call, msg, leg)
        stay.outcome = call.outcome = "answered"
        iface, name = _member(msg)
        call.queue = msg.get("Queue", "") or call.queue
        call.agent = name or iface
        call.member = msg.get("Interface", "")
        call.answered_at = at
        call.wait_s = _float(msg.get("HoldTime"))
        out.append(
            CallAnswered(
                call.linkedid, at, call.queue, iface, name, call.wait_s or 0.0,
                leg.uniqueid, leg.channel, msg.get("DestUniqueid", ""),
                msg.get("DestChannel", ""), _float(msg.get("RingTime")), call.caller_num,
            )
        )  # fmt: skip

    def _agent_complete(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        call.talk_s = _float(msg.get("TalkTime"))
        wait = _float(msg.get("HoldTime"))
        if call.wait_s is None:
            call.wait_s = wait
        iface, name = _member(msg)
        out.append(
            CallHandled(
                call.linkedid, at, msg.get("Queue", ""), iface, name, wait, call.talk_s,
                msg.get("Reason", ""), leg.uniqueid, msg.get("DestChannel", ""),
            )
        )  # fmt: skip

    def _agent_no_answer(
        self, call: Call, leg: Leg, msg: Mapping[str, str], at: datetime, out: list[DomainEvent]
    ) -> None:
        iface, name = _member(msg)
        ring_ms = _float(msg.get("RingTime"))
        out.append(
            CallRingNoAnswer(
                call.linkedid, at, msg.get("Queue", ""), iface, name, leg.uniqueid,
                None if ring_ms is None else ring_ms / 1000,
            )
        )  # fmt: skip

    # --- transfers (no Linkedid/Uniqueid headers of their own) -----------------------------
    def _transfer(self, name: str, msg: Mapping[str, str], at: datetime) -> list[DomainEvent]:
        if msg.get("Result") != "Success":
            return []
        if name == "BlindTransfer":
            linkedid = msg.get("TransfererLinkedid") or msg.get("TransfereeLinkedid") or ""
            if not linkedid or linkedid in self._finished:
                return []
            return [
                CallTransferred(
                    linkedid, at, "blind", msg.get("Extension", ""), msg.get("Context", ""),
                    msg.get("TransfererUniqueid", ""), msg.get("TransfererChannel", ""),
                )
            ]  # fmt: skip
        linkedid = msg.get("OrigTransfererLinkedid") or ""
        if not linkedid or linkedid in self._finished:
            return []
        target_channel = msg.get("TransferTargetChannel", "")
        target = target_channel or msg.get("DestApp", "") or msg.get("SecondTransfererChannel", "")
        return [
            CallTransferred(
                linkedid, at, "attended", target, "", msg.get("OrigTransfererUniqueid", ""),
                msg.get("OrigTransfererChannel", ""), target_channel,
                msg.get("SecondTransfererLinkedid", ""),
            )
        ]  # fmt: skip

    # --- from other domain events -----------------------------------------------------------
    def callback_requested(self, linkedid: str) -> None:
        """The IVR took a callback request on this call (IvrCallbackRequested)."""
        call = self.calls.get(linkedid)
        if call is not None:
            call.callback_requested = True

    # --- time -----------------------------------------------------------------------------
    def expire(self, now: datetime) -> list[DomainEvent]:
        """Resolve queue stays that time has explained, and finalise calls that have been
        closing for at least ``close_grace_s`` (gapped ones go to :meth:`take_gapped`)."""
        out: list[DomainEvent] = []
        ami_now = max(self._ami_clock or now, now - timedelta(seconds=10 * self.abandon_grace_s))
        for call in list(self.calls.values()):
            since = call.closing_since
            final = since is not None and (now - since).total_seconds() >= self.close_grace_s
            stay = call.stay
            if stay is not None and not stay.outcome:
                if stay.abandon is not None:
                    if final:
                        out.extend(self._resolve(call, "abandoned", stay.abandon[0]))
                    elif since is None and (
                        (ami_now - stay.abandon[0]).total_seconds() >= self.abandon_grace_s
                    ):
                        # still on the line after app_queue said "abandon": a timeout
                        out.extend(self._resolve(call, "timeout", stay.abandon[0]))
                elif stay.left_at is not None and (
                    final or (now - stay.left_at).total_seconds() >= self.leave_grace_s
                ):
                    out.extend(self._resolve(call, stay.exit_status or "timeout", stay.left_at))
            if (
                final
                and since is not None
                and call.answered_at is not None
                and call.talk_s is None
                and not call.gap
                and (now - since).total_seconds() < self.complete_grace_s
            ):
                continue  # AgentComplete (the talk time) trails the hang-ups: wait for it
            if final and since is not None:
                if call.answered_at is not None and call.talk_s is None:
                    # no AgentComplete could be put on it (none came, or one without the
                    # caller's and the member's fields that matched no single call):
                    # queue_log's COMPLETE line has the talk time
                    call.gap = True
                done = self._finalise(call, since, "ami")
                if call.gap:
                    self._gapped.append(call)
                else:
                    out.append(done)
        # forget finalised ids after a while; a late straggler is then a new, ignored id
        cutoff = now.timestamp() - 3600
        for linkedid, at in list(self._finished.items()):
            if at.timestamp() < cutoff:
                del self._finished[linkedid]
        return out

    def take_gapped(self) -> list[Call]:
        """Finalised calls whose event stream had a gap: complete them from CDR/queue_log."""
        calls, self._gapped = self._gapped, []
        return calls

    def _finalise(self, call: Call, ended_at: datetime, source: str) -> CallCompleted:
        del self.calls[call.linkedid]
        self._finished[call.linkedid] = ended_at
        for uid in call.legs:
            for bridge, members in list(self._bridges.items()):
                members.pop(uid, None)
                if not members:
                    del self._bridges[bridge]
                    self._bridge_call.pop(bridge, None)
        return CallCompleted(call.to_record(ended_at, source))

    # --- resync after (re)connect ----------------------------------------------------------
    def link_lost(self) -> None:
        """The AMI link dropped: calls in progress miss their events from now until the
        resync (``gap``). A call whose legs have all hung up already has its events."""
        for call in self.calls.values():
            if call.active_legs:
                call.gap = True

    def resync(
        self, channels: Iterable[Mapping[str, str]], now: datetime, snapshot_at: datetime
    ) -> list[Call]:
        """Reconcile with CoreShowChannels after a (re)connect (:meth:`link_lost` was
        called when the previous link dropped).

        A call born on this link (the Newchannel of its first channel seen, no drop since)
        has all its events: it is left alone, even if it started before the snapshot (the
        events of the new link flow before the resync runs). For the others: legs Asterisk
        no longer has ended while we were away: their calls are removed and returned,
        unfinalised, for recovery from CDR/queue_log (``cti.calls.recovery``) to complete
        and publish once. Calls still in progress missed events meanwhile: they are
        marked ``gap`` (completed through recovery too when they end). Channels we did not
        know are adopted (``gap``, started ``Duration`` ago), until the Newchannel of the
        call's first channel shows it was born on this link after all (then the events
        make it, as for any new call). Legs first seen at or after ``snapshot_at`` (when
        CoreShowChannels was sent) are newer than the snapshot and are not declared gone.
        """
        present: dict[str, Mapping[str, str]] = {}
        for ch in channels:
            uid = ch.get("Uniqueid")
            if uid:
                present[uid] = ch
        ended: list[Call] = []
        for call in list(self.calls.values()):
            if call.born and not call.gap:
                continue
            for leg in call.legs.values():
                if (
                    leg.ended_at is None
                    and leg.uniqueid not in present
                    and leg.started_at < snapshot_at
                ):
                    leg.ended_at = now
            if call.active_legs == 0:
                del self.calls[call.linkedid]
                self._finished[call.linkedid] = now
                ended.append(call)
            else:
                call.gap = True
        for uid, ch in present.items():
            linkedid = ch.get("Linkedid", "")
            if not linkedid or linkedid in self._finished:
                continue
            started = _started_from_duration(ch, now)
            found = self.calls.get(linkedid)
            if found is None:
                found = self.calls[linkedid] = Call(linkedid, started, gap=True, adopted=True)
            call = found
            if started < call.started_at and call.gap:
                call.started_at = started
            if uid not in call.legs:
                call.legs[uid] = Leg(uid, ch.get("Channel", ""), min(started, now))
            self._caller_id(call, ch, uid)
            if not call.dnis and ch.get("Context") in self.inbound_contexts:
                call.entered = True
                call.dnis = ch.get("Exten", "")
        return ended

    def mark_finished(self, linkedid: str, at: datetime) -> None:
        """Recovery published this call: ignore its stragglers."""
        self._finished[linkedid] = at

    def is_known(self, linkedid: str) -> bool:
        return linkedid in self.calls or linkedid in self._finished

    def active(self) -> list[Call]:
        return sorted(self.calls.values(), key=lambda c: c.started_at)


_Handler = Callable[[CallModel, Call, Leg, Mapping[str, str], datetime, list[DomainEvent]], None]
_HANDLERS: dict[str, _Handler] = {
    "Hangup": CallModel._hangup,
    "BridgeEnter": CallModel._bridge_enter,
    "BridgeLeave": CallModel._bridge_leave,
    "Hold": CallModel._hold,
    "Unhold": CallModel._unhold,
    "DialBegin": CallModel._dial_begin,
    "DialEnd": CallModel._dial_end,
    "QueueCallerJoin": CallModel._queue_join,
    "QueueCallerLeave": CallModel._queue_leave,
    "QueueCallerAbandon": CallModel._queue_abandon,
    "UserEvent": CallModel._user_event,
    "AgentCalled": CallModel._agent_called,
    "AgentConnect": CallModel._agent_connect,
    "AgentComplete": CallModel._agent_complete,
    "AgentRingNoAnswer": CallModel._agent_no_answer,
    "AgentDump": CallModel._agent_no_answer,
}


def _duration_s(ch: Mapping[str, str]) -> float:
    try:
        h, m, sec = (int(x) for x in ch.get("Duration", "").split(":"))
    except ValueError:
        return 0.0
    return float(h * 3600 + m * 60 + sec)


def _started_from_duration(ch: Mapping[str, str], now: datetime) -> datetime:
    """A call found in progress on resync: its start estimated from ``Duration``."""
    return datetime.fromtimestamp(now.timestamp() - _duration_s(ch), UTC)
