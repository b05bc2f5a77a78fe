"""The live call model: AMI events in, domain events out, no I/O.

A call is keyed by Linkedid and has legs keyed by Uniqueid. Any event carrying a Linkedid
and Uniqueid creates what it names, so the model does not depend on AMI event order
(Newchannel, BridgeEnter, queue events may arrive either way). When the last known leg
hangs up the call is *closing*; it is finalised (CallCompleted) ``close_grace_s`` later
so that events that trail the last Hangup (AgentComplete, Cdr) still land on it. Time is
passed in (the AMI ``Timestamp`` header when present), which keeps the model
deterministic under replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cti.events import (
    CallAbandoned,
    CallAnswered,
    CallCompleted,
    CallEntered,
    CallHeld,
    CallOffered,
    CallQueued,
    CallRecord,
    CallResumed,
    CallTimedOut,
    DomainEvent,
)

UNKNOWN_CID = {"", "<unknown>", "unknown"}

# The AMI events the model consumes; the client subscribes to their classes only.
HANDLED_EVENTS = frozenset(
    {
        "Newchannel", "NewCallerid", "Newstate", "Hangup", "QueueCallerJoin", "AgentCalled",
        "AgentConnect", "AgentComplete", "QueueCallerAbandon", "QueueCallerLeave",
        "BridgeEnter", "Hold", "Unhold",
    }
)  # fmt: skip


@dataclass
class Leg:
    uniqueid: str
    channel: str
    started_at: datetime
    ended_at: datetime | None = None
    cause: str = ""


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
    queued_at: datetime | None = None
    agent: str = ""
    answered_at: datetime | None = None
    wait_s: float | None = None
    talk_s: float | None = None
    abandoned: bool = False
    left_queue: bool = False
    # a QueueCallerLeave not (yet) explained by AgentConnect/Abandon: (queue, at, wait)
    pending_leave: tuple[str, datetime, float] | None = None
    bridged_at: datetime | None = None
    closing_since: datetime | None = None
    last_cause: str = ""
    held: set[str] = field(default_factory=set)  # legs on hold (Hold seen, no Unhold yet)

    @property
    def active_legs(self) -> int:
        return sum(1 for leg in self.legs.values() if leg.ended_at is None)

    def disposition(self) -> str:
        if self.answered_at is not None:
            return "answered"
        if self.abandoned:
            return "abandoned"
        if self.left_queue:
            return "timeout"
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


class CallModel:
    def __init__(
        self, *, inbound_contexts: Iterable[str] = ("cti-inbound",), close_grace_s: float = 1.0
    ) -> None:
        self.inbound_contexts = frozenset(inbound_contexts)
        self.close_grace_s = close_grace_s
        self.leave_grace_s = 1.0
        self.calls: dict[str, Call] = {}
        self._finished: dict[str, datetime] = {}  # linkedid -> when finalised (late events)

    # --- ingest ---------------------------------------------------------------------------
    def handle(self, msg: Mapping[str, str], now: datetime) -> list[DomainEvent]:
        name = msg.get("Event")
        if name not in HANDLED_EVENTS:
            return []
        linkedid = msg.get("Linkedid") or ""
        uniqueid = msg.get("Uniqueid") or ""
        if not linkedid or not uniqueid or linkedid in self._finished:
            return []
        at = event_time(msg, now)
        out: list[DomainEvent] = []
        call = self.calls.get(linkedid)
        if call is None:
            call = self.calls[linkedid] = Call(linkedid=linkedid, started_at=at)
        leg = call.legs.get(uniqueid)
        if leg is None:
            leg = call.legs[uniqueid] = Leg(uniqueid, msg.get("Channel", ""), at)
        if at < leg.started_at:
            leg.started_at = at
        if at < call.started_at:
            call.started_at = at
        if name != "Hangup" and leg.ended_at is None:
            call.closing_since = None if call.active_legs else call.closing_since
        self._caller_id(call, msg, uniqueid)
        if not call.entered and msg.get("Context") in self.inbound_contexts:
            call.entered = True
            call.dnis = msg.get("Exten", "")
            out.append(CallEntered(linkedid, at, call.caller_num, call.caller_name, call.dnis))

        if name == "Hangup":
            if leg.ended_at is None:
                leg.ended_at = at
                leg.cause = msg.get("Cause-txt", "") or msg.get("Cause", "")
                call.last_cause = leg.cause or call.last_cause
            if call.active_legs == 0:
                call.closing_since = max(
                    (lg.ended_at for lg in call.legs.values() if lg.ended_at), default=at
                )
        elif name == "QueueCallerJoin":
            out.extend(self._timed_out(call))  # left the previous queue unanswered
            call.queue = msg.get("Queue", "")
            call.queued_at = at
            out.append(CallQueued(linkedid, at, call.queue, int(msg.get("Position", "0") or 0)))
        elif name == "AgentCalled":
            out.append(
                CallOffered(
                    linkedid, at, msg.get("Queue", ""), msg.get("Interface", ""),
                    msg.get("MemberName", ""), call.caller_num,
                )
            )  # fmt: skip
        elif name == "AgentConnect":
            call.queue = msg.get("Queue", "") or call.queue
            call.agent = msg.get("MemberName", "") or msg.get("Interface", "")
            call.answered_at = at
            call.pending_leave = None
            call.left_queue = False
            call.wait_s = _float(msg.get("HoldTime"))
            out.append(
                CallAnswered(
                    linkedid, at, call.queue, msg.get("Interface", ""),
                    msg.get("MemberName", ""), call.wait_s or 0.0,
                )
            )  # fmt: skip
        elif name == "AgentComplete":
            call.talk_s = _float(msg.get("TalkTime"))
            if call.wait_s is None:
                call.wait_s = _float(msg.get("HoldTime"))
        elif name == "QueueCallerAbandon":
            call.abandoned = True
            call.wait_s = _float(msg.get("HoldTime"))
            out.append(
                CallAbandoned(
                    linkedid, at, msg.get("Queue", ""),
                    int(msg.get("Position", "0") or 0), call.wait_s or 0.0,
                )
            )  # fmt: skip
        elif name == "QueueCallerLeave":
            if call.answered_at is None and not call.abandoned:
                call.left_queue = True
                # Asterisk sends Leave *before* AgentConnect when an agent answers, so
                # a Leave is a timeout (or exit key, leave-empty: queue_log says which)
                # only once no AgentConnect followed within ``leave_grace_s``: expire()
                wait = (at - call.queued_at).total_seconds() if call.queued_at else 0.0
                call.wait_s = wait
                call.pending_leave = (msg.get("Queue", ""), at, wait)
        elif name == "BridgeEnter":
            if call.bridged_at is None and int(msg.get("BridgeNumChannels", "0") or 0) >= 2:
                call.bridged_at = at
        elif name == "Hold":
            if uniqueid not in call.held:
                call.held.add(uniqueid)
                out.append(CallHeld(linkedid, at, uniqueid))
        elif name == "Unhold":
            # Asterisk also unholds a blind transferer that was never held: not a resume
            if uniqueid in call.held:
                call.held.discard(uniqueid)
                out.append(CallResumed(linkedid, at, uniqueid))
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

    # --- time -----------------------------------------------------------------------------
    def _timed_out(self, call: Call) -> list[DomainEvent]:
        if call.pending_leave is None:
            return []
        queue, at, wait = call.pending_leave
        call.pending_leave = None
        return [CallTimedOut(call.linkedid, at, queue, wait)]

    def expire(self, now: datetime) -> list[DomainEvent]:
        """Publish timeouts no AgentConnect explained, and finalise calls that have been
        closing for at least ``close_grace_s``."""
        out: list[DomainEvent] = []
        for call in list(self.calls.values()):
            if call.pending_leave is not None and (
                (now - call.pending_leave[1]).total_seconds() >= self.leave_grace_s
                or call.closing_since is not None
            ):
                out.extend(self._timed_out(call))
            since = call.closing_since
            if since is not None and (now - since).total_seconds() >= self.close_grace_s:
                out.append(self._finalise(call, since, "ami"))
        # forget finalised ids after a while; a late straggler is then a new, ignored id
        cutoff = now.timestamp() - 3600
        for linkedid, at in list(self._finished.items()):
            if at.timestamp() < cutoff:
                del self._finished[linkedid]
        return out

    def _finalise(self, call: Call, ended_at: datetime, source: str) -> CallCompleted:
        del self.calls[call.linkedid]
        self._finished[call.linkedid] = ended_at
        return CallCompleted(call.to_record(ended_at, source))

    # --- resync after (re)connect ----------------------------------------------------------
    def resync(
        self, channels: Iterable[Mapping[str, str]], now: datetime, snapshot_at: datetime
    ) -> list[Call]:
        """Reconcile with CoreShowChannels after a (re)connect.

        Legs Asterisk no longer has ended while we were away: their calls are removed and
        returned, unfinalised, for recovery from CDR/queue_log (``cti.calls.recovery``)
        to complete and publish once. Channels we did not know are adopted. Legs first seen
        at or after ``snapshot_at`` (when CoreShowChannels was sent) are newer than the
        snapshot and are left alone.
        """
        present: dict[str, Mapping[str, str]] = {}
        for ch in channels:
            uid = ch.get("Uniqueid")
            if uid:
                present[uid] = ch
        ended: list[Call] = []
        for call in list(self.calls.values()):
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
        for uid, ch in present.items():
            linkedid = ch.get("Linkedid", "")
            if not linkedid or linkedid in self._finished:
                continue
            found = self.calls.get(linkedid)
            if found is None:
                found = self.calls[linkedid] = Call(linkedid, _started_from_duration(ch, now))
            call = found
            if uid not in call.legs:
                call.legs[uid] = Leg(uid, ch.get("Channel", ""), now)
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


def _started_from_duration(ch: Mapping[str, str], now: datetime) -> datetime:
    """A call found in progress on resync: its start estimated from ``Duration``."""
    try:
        h, m, sec = (int(x) for x in ch.get("Duration", "").split(":"))
    except ValueError:
        return now
    return datetime.fromtimestamp(now.timestamp() - (h * 3600 + m * 60 + sec), UTC)
