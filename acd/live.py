"""The live model of queues, members (agents' interfaces) and waiting callers.

Fed with the platform's call events (:meth:`LiveModel.apply`: CallQueued, CallOffered,
CallAnswered, CallHandled, CallRingNoAnswer, CallLeftQueue, CallAbandoned, CallHeld,
CallResumed; the ACD reads no call AMI events itself, decision 0013), with AMI queue
*member* events (:meth:`LiveModel.handle`: membership, pause, penalty, device status),
and rebuilt wholesale from a ``QueueStatus`` snapshot (:meth:`LiveModel.resync`) after
every (re)connect. I/O-free.

Event order is never assumed: every member and every queue entry remembers the time of
the last event applied to it, and an event older than that is ignored; a removal (member
removed, caller left) leaves a tombstone so a late "added"/"joined" cannot resurrect it.
Member events carry the full membership (penalty, paused, reason), so applying the
newest one is enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cti.calls.model import event_time
from cti.events import (
    CallAbandoned,
    CallAnswered,
    CallHandled,
    CallHeld,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    CallResumed,
    CallRingNoAnswer,
    DomainEvent,
)

__all__ = ["CALL_EVENTS", "HANDLED_EVENTS", "Entry", "LiveModel", "Member", "QueueLive"]

_MEMBER_EVENTS = frozenset(
    {"QueueMemberStatus", "QueueMemberAdded", "QueueMemberPause", "QueueMemberPenalty",
     "QueueMemberRinginuse"}
)  # fmt: skip
#: The AMI member events this model reads (membership is the ACD's own domain).
HANDLED_EVENTS = _MEMBER_EVENTS | {"QueueMemberRemoved"}
#: The platform's call events it follows (subscribe each to :meth:`LiveModel.apply`).
CALL_EVENTS: tuple[type[DomainEvent], ...] = (
    CallQueued, CallOffered, CallAnswered, CallHandled, CallRingNoAnswer, CallLeftQueue,
    CallAbandoned, CallHeld, CallResumed,
)  # fmt: skip
#: How long tombstones are kept (late events older than this are not expected).
TOMBSTONE_TTL = timedelta(minutes=5)


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value or default)
    except ValueError:
        return default


@dataclass
class Member:
    queue: str
    interface: str
    name: str = ""
    penalty: int = 0
    paused: bool = False
    paused_reason: str = ""
    dynamic: bool = True
    device_status: int = 0
    calls_taken: int = 0
    # observed state: idle | ringing | on_call | on_hold | wrapup
    state: str = "idle"
    state_since: datetime | None = None
    linkedid: str = ""
    wrapup_until: datetime | None = None
    updated_at: datetime | None = None

    def snapshot(self, now: datetime) -> dict[str, object]:
        state = self.state
        since = self.state_since
        if state == "wrapup" and (self.wrapup_until is None or now >= self.wrapup_until):
            state = "idle"
            since = self.wrapup_until or since  # the wrap-up ran out: idle since then
        return {
            "interface": self.interface,
            "name": self.name,
            "penalty": self.penalty,
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "dynamic": self.dynamic,
            "calls_taken": self.calls_taken,
            "state": state,
            "linkedid": self.linkedid,
            # since when the member is in this state (the wallboard shows how long)
            "state_since": since.isoformat() if since is not None else None,
        }


@dataclass
class Entry:
    uniqueid: str
    linkedid: str
    channel: str
    queue: str
    joined_at: datetime
    caller_num: str = ""
    position: int = 0
    ringing: set[str] = field(default_factory=set)
    updated_at: datetime | None = None
    # every member rung for this caller (``ringing`` forgets them at the answer): the
    # ones to set idle when the caller leaves, without a look at every member
    rung: set[str] = field(default_factory=set)

    def snapshot(self, now: datetime) -> dict[str, object]:
        return {
            "uniqueid": self.uniqueid,
            "linkedid": self.linkedid,
            "channel": self.channel,
            "caller_num": self.caller_num,
            "position": self.position,
            "wait_s": round(max(0.0, (now - self.joined_at).total_seconds()), 1),
            "ringing": sorted(self.ringing),
        }


@dataclass
class QueueLive:
    name: str
    strategy: str = ""
    wrapup_s: int = 0
    members: dict[str, Member] = field(default_factory=dict)  # by interface
    entries: dict[str, Entry] = field(default_factory=dict)  # by caller Uniqueid
    completed: int = 0
    abandoned: int = 0
    # a member was rung for a caller this model had no entry of: a caller who leaves
    # then looks at every member (see Entry.rung)
    rung_unseen: bool = False

    def snapshot(self, now: datetime) -> dict[str, object]:
        entries = sorted(self.entries.values(), key=lambda e: (e.position, e.joined_at))
        return {
            "name": self.name,
            "strategy": self.strategy,
            "members": [m.snapshot(now) for _, m in sorted(self.members.items())],
            "entries": [e.snapshot(now) for e in entries],
            "completed": self.completed,
            "abandoned": self.abandoned,
        }


class LiveModel:
    def __init__(self) -> None:
        self.queues: dict[str, QueueLive] = {}
        #: queue -> wrap-up seconds from the configuration (app_queue's events do not
        #: carry the queue's value; a member's own Wrapuptime, when set, wins)
        self.wrapup_config: dict[str, int] = {}
        # (queue, interface) / uniqueid -> when removed
        self._gone_members: dict[tuple[str, str], datetime] = {}
        self._gone_entries: dict[str, datetime] = {}

    def queue(self, name: str) -> QueueLive:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = QueueLive(name)
        return q

    # --- ingest ---------------------------------------------------------------------------
    def handle(self, msg: Mapping[str, str], now: datetime) -> None:
        """An AMI queue member event."""
        name = msg.get("Event")
        if name not in HANDLED_EVENTS:
            return
        at = event_time(msg, now)
        qname = msg.get("Queue", "")
        if not qname:
            return
        if name in _MEMBER_EVENTS:
            self._member_update(qname, msg, at)
        else:
            self._member_removed(qname, msg, at)

    def apply(self, event: DomainEvent) -> None:
        """One of :data:`CALL_EVENTS`."""
        if isinstance(event, CallHeld | CallResumed):
            self._hold(event.linkedid, event.at, isinstance(event, CallHeld))
        elif isinstance(event, CallQueued):
            if event.queue and event.uniqueid:
                self._caller_join(event)
        elif isinstance(event, CallLeftQueue):
            self._caller_gone(event.queue, event.uniqueid, event.linkedid, event.at)
        elif isinstance(event, CallAbandoned):
            self._caller_gone(event.queue, event.uniqueid, event.linkedid, event.at)
            self.queue(event.queue).abandoned += 1
        elif isinstance(event, CallOffered):
            self._agent_call("called", event.queue, event.interface, event.linkedid,
                             event.uniqueid, event.at)  # fmt: skip
        elif isinstance(event, CallAnswered):
            self._agent_call("connect", event.queue, event.interface, event.linkedid,
                             event.caller_uniqueid, event.at)  # fmt: skip
        elif isinstance(event, CallHandled):
            self._agent_call("complete", event.queue, event.interface, event.linkedid,
                             event.uniqueid, event.at)  # fmt: skip
        elif isinstance(event, CallRingNoAnswer):
            self._agent_call("noanswer", event.queue, event.interface, event.linkedid,
                             event.uniqueid, event.at)  # fmt: skip

    def _interface(self, msg: Mapping[str, str]) -> str:
        return msg.get("Interface") or msg.get("Location") or msg.get("DestChannel", "")

    def _member_update(self, qname: str, msg: Mapping[str, str], at: datetime) -> None:
        iface = self._interface(msg)
        if not iface:
            return
        gone = self._gone_members.get((qname, iface))
        if gone is not None:
            if at <= gone:
                return
            del self._gone_members[(qname, iface)]
        q = self.queue(qname)
        m = q.members.get(iface)
        if m is None:
            m = q.members[iface] = Member(qname, iface)
        elif m.updated_at is not None and at < m.updated_at:
            return
        m.updated_at = at
        m.name = msg.get("MemberName", m.name) or m.name
        m.penalty = _int(msg.get("Penalty"), m.penalty)
        if "Paused" in msg:
            m.paused = msg.get("Paused") == "1"
        m.paused_reason = msg.get("PausedReason", m.paused_reason) if m.paused else ""
        m.dynamic = msg.get("Membership", "dynamic") != "static"
        m.device_status = _int(msg.get("Status"), m.device_status)
        m.calls_taken = _int(msg.get("CallsTaken"), m.calls_taken)
        if msg.get("Wrapuptime"):
            q.wrapup_s = _int(msg.get("Wrapuptime"), q.wrapup_s)
        if (
            msg.get("InCall") == "0"
            and m.state in ("on_call", "on_hold")
            and (m.state_since is None or at > m.state_since)
        ):
            # a call whose CallHandled never comes (its AgentComplete carried neither
            # channel's fields and matched no single call, cti.calls.model._AGENT_EVENTS,
            # or the daemon was not connected then): the member's InCall flag still drops
            self._call_ended(q, m, at)

    def _member_removed(self, qname: str, msg: Mapping[str, str], at: datetime) -> None:
        iface = self._interface(msg)
        q = self.queue(qname)
        m = q.members.get(iface)
        if m is not None and m.updated_at is not None and at < m.updated_at:
            return
        q.members.pop(iface, None)
        self._gone_members[(qname, iface)] = at

    def _caller_join(self, event: CallQueued) -> None:
        uid = event.uniqueid
        gone = self._gone_entries.get(uid)
        if gone is not None and event.at <= gone:
            return  # a late join of a stay that is over (a re-join is newer)
        q = self.queue(event.queue)
        e = q.entries.get(uid)
        if e is None:
            e = q.entries[uid] = Entry(uid, event.linkedid, event.channel, event.queue, event.at)
        e.joined_at = min(e.joined_at, event.at)
        e.caller_num = event.caller_num or e.caller_num
        e.position = event.position or e.position

    def _caller_gone(self, qname: str, uid: str, linkedid: str, at: datetime) -> None:
        if not qname or not uid:
            return
        q = self.queue(qname)
        entry = q.entries.pop(uid, None)
        self._gone_entries[uid] = at
        if entry is None or q.rung_unseen:
            members: Iterable[Member] = q.members.values()
        else:  # a burst's callers leave one a second or more; 500 members each
            members = [m for m in map(q.members.get, entry.rung) if m is not None]
        for m in members:
            if m.state == "ringing" and m.linkedid == linkedid:
                m.state, m.linkedid = "idle", ""

    def _agent_call(
        self, what: str, qname: str, iface: str, linkedid: str, uid: str, at: datetime
    ) -> None:
        if not qname:
            return
        q = self.queue(qname)
        m = q.members.get(iface)
        entry = q.entries.get(uid)
        if m is None:
            return
        if m.state_since is not None and at < m.state_since:
            return
        if what == "called":
            if entry is not None:
                entry.ringing.add(iface)
                entry.rung.add(iface)
            else:
                q.rung_unseen = True
            m.state, m.linkedid = "ringing", linkedid
        elif what == "connect":
            if entry is not None:
                entry.ringing.clear()
            m.state, m.linkedid = "on_call", linkedid
        elif what == "complete":
            q.completed += 1
            m.calls_taken += 1
            if m.state in ("on_call", "on_hold") or m.linkedid == linkedid:
                self._call_ended(q, m, at)
        else:  # ring-no-answer
            if entry is not None:
                entry.ringing.discard(iface)
            if m.linkedid == linkedid:
                m.state, m.linkedid = "idle", ""
        m.state_since = at

    def _call_ended(self, q: QueueLive, m: Member, at: datetime) -> None:
        m.linkedid = ""
        wrapup = q.wrapup_s or self.wrapup_config.get(q.name, 0)
        if wrapup > 0:
            m.state = "wrapup"
            m.wrapup_until = at + timedelta(seconds=wrapup)
        else:
            m.state = "idle"
        m.state_since = at

    def wrapup_began(self, interface: str, until: datetime, at: datetime) -> None:
        """Enforced after-call work (acd.wrapup): the agent's members are in wrap-up
        until ``until`` (or until :meth:`wrapup_ended`)."""
        for q in self.queues.values():
            m = q.members.get(interface)
            if m is not None and m.state not in ("ringing", "on_call", "on_hold"):
                m.state, m.wrapup_until, m.linkedid = "wrapup", until, ""
                m.state_since = m.state_since if m.state_since and m.state_since > at else at

    def wrapup_ended(self, interface: str, at: datetime) -> None:
        for q in self.queues.values():
            m = q.members.get(interface)
            if m is not None and m.state == "wrapup":
                m.state, m.wrapup_until, m.state_since = "idle", None, at

    def _hold(self, linkedid: str, at: datetime, held: bool) -> None:
        for q in self.queues.values():
            for m in q.members.values():
                if m.linkedid == linkedid and m.state in ("on_call", "on_hold"):
                    m.state = "on_hold" if held else "on_call"
                    m.state_since = at

    # --- snapshot rebuild -----------------------------------------------------------------
    def resync(self, items: Sequence[Mapping[str, str]], now: datetime) -> None:
        """Replace everything with Asterisk's ``QueueStatus`` answer."""
        old = self.queues
        self.queues = {}
        self._gone_members.clear()
        self._gone_entries.clear()
        for item in items:
            kind = item.get("Event")
            qname = item.get("Queue", "")
            if not qname:
                continue
            q = self.queue(qname)
            if kind == "QueueParams":
                q.strategy = item.get("Strategy", "")
                q.completed = _int(item.get("Completed"))
                q.abandoned = _int(item.get("Abandoned"))
            elif kind == "QueueMember":
                iface = item.get("Location") or item.get("StateInterface", "")
                prev = old.get(qname, QueueLive(qname)).members.get(iface)
                m = q.members[iface] = Member(
                    qname, iface, item.get("Name", ""), _int(item.get("Penalty")),
                    item.get("Paused") == "1", item.get("PausedReason", ""),
                    item.get("Membership", "dynamic") != "static",
                    _int(item.get("Status")), _int(item.get("CallsTaken")),
                )  # fmt: skip
                m.updated_at = now
                if item.get("InCall") == "1":
                    m.state = "on_call"
                    m.linkedid = prev.linkedid if prev is not None else ""
                elif _int(item.get("Status")) == 6:  # AST_DEVICE_RINGING
                    m.state = "ringing"
                if not m.paused:
                    m.paused_reason = ""
                q.wrapup_s = _int(item.get("Wrapuptime"), q.wrapup_s)
            elif kind == "QueueEntry":
                uid = item.get("Uniqueid", "")
                wait = _int(item.get("Wait"))
                q.entries[uid] = Entry(
                    uid, item.get("Linkedid", uid), item.get("Channel", ""), qname,
                    now - timedelta(seconds=wait), item.get("CallerIDNum", ""),
                    _int(item.get("Position")), updated_at=now,
                )  # fmt: skip

    def expire(self, now: datetime) -> None:
        """Forget tombstones older than :data:`TOMBSTONE_TTL`."""
        limit = now - TOMBSTONE_TTL
        self._gone_members = {k: v for k, v in self._gone_members.items() if v > limit}
        self._gone_entries = {k: v for k, v in self._gone_entries.items() if v > limit}

    # --- views ----------------------------------------------------------------------------
    def snapshot(self, now: datetime) -> list[dict[str, object]]:
        return [q.snapshot(now) for _, q in sorted(self.queues.items())]

    def members_named(self, name: str) -> list[Member]:
        return [m for q in self.queues.values() for m in q.members.values() if m.name == name]
