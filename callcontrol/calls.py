"""The calls agents talk on now, as call control sees them (built from domain events
only: CallAnswered, CallDialing/CallDialEnded, CallTransferred, CallHeld/CallResumed,
CallLegEnded, CallCompleted; no AMI is read here).

For each answered call: the caller's leg, the agent talking to it and that agent's leg,
the chain of agents so far, whether the caller is held or a consultation is running, a
pending hand-over (a transfer to an agent whose phone rings) and conference parties.
Everything is bounded; a call leaves when it completes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from cti.events import (
    CallAnswered,
    CallCompleted,
    CallDialEnded,
    CallDialing,
    CallHandedOver,
    CallHeld,
    CallLegEnded,
    CallQueued,
    CallResumed,
    CallTransferred,
    DomainEvent,
)

__all__ = [
    "AGENT_CONTEXT", "MAX_CALLS", "RECONNECT_CONTEXT", "Handover", "LiveCall", "LiveCalls",
    "phone_of",
]  # fmt: skip

#: The dialplan context that dials an agent for a transfer or a consultation.
AGENT_CONTEXT = "cti-cc-agent"
#: ... and the one that dials it back after its browser phone dropped.
RECONNECT_CONTEXT = "cti-cc-reconnect"
_DIALS_AGENT = frozenset({AGENT_CONTEXT, RECONNECT_CONTEXT})
MAX_CALLS = 5000


@dataclass
class Handover:
    """A transfer to an agent (or a take-over) in progress: the target's phone rings."""

    ref: str  # the dialplan reference (CTI_CC_IFACE_<ref>)
    to_agent: str
    kind: str  # blind | attended | take_over | reconnect
    notes: str = ""
    channel: str = ""  # the target's leg once it answered
    answered: bool = False
    completed: bool = False  # attended: the transfer itself happened (AttendedTransfer)


@dataclass
class LiveCall:
    linkedid: str
    queue: str
    caller_channel: str
    caller_uniqueid: str
    agent: str
    agent_channel: str
    agent_uniqueid: str = ""
    agents: list[str] = field(default_factory=list)  # the chain, first answerer first
    mode: str = "talking"  # talking | held | consulting
    hold_ref: str = ""
    handover: Handover | None = None
    parties: dict[str, str] = field(default_factory=dict)  # conference: channel -> label
    legs: set[str] = field(default_factory=set)  # uniqueids seen of this call
    holds: int = 0  # CallHeld seen (a hold or a consultation started)
    resumes: int = 0  # CallResumed seen (a hold or a consultation ended)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    # the agent's leg is a browser phone and the caller is kept if it drops (keep_ref: the
    # dialplan's CTI_CC_KEEP); dropped: it did, the caller waits for the agent
    browser: bool = False
    keep_ref: str = ""
    dropped: bool = False
    # who lost the caller that way, on which phone (the PJSIP endpoint), when: the agent
    # is told 409 "requeued" once the grace period sent the caller back to the queue
    lost_by: str = ""
    lost_phone: str = ""
    dropped_at: datetime | None = None
    # when the agent's current leg answered (a registration before it is not a "back")
    leg_at: datetime | None = None

    @property
    def reconnecting(self) -> bool:
        """A reconnect is under way (the caller is sent to, or rings, the agent's phone)."""
        return self.handover is not None and self.handover.kind == "reconnect"

    def view(self) -> dict[str, object]:
        h = self.handover
        return {
            "linkedid": self.linkedid,
            "queue": self.queue,
            "agent": self.agent,
            "agents": list(self.agents),
            "mode": self.mode,
            "consult": (
                {"to": h.to_agent, "kind": h.kind, "answered": h.answered}
                if h is not None else None
            ),
            "conference": sorted(self.parties.values()),
            "browser": self.browser,
            "dropped": self.dropped,
        }  # fmt: skip


def phone_of(channel: str) -> str:
    """The PJSIP endpoint (a phone's name) of ``PJSIP/<endpoint>-<sequence>``, else ''."""
    if not channel.startswith("PJSIP/") or "-" not in channel:
        return ""
    return channel[len("PJSIP/") :].rsplit("-", 1)[0]


class LiveCalls:
    """Linkedid -> :class:`LiveCall`; :meth:`apply` returns the hand-overs it saw."""

    def __init__(self, limit: int = MAX_CALLS) -> None:
        self.limit = limit
        self.calls: OrderedDict[str, LiveCall] = OrderedDict()

    def get(self, linkedid: str) -> LiveCall | None:
        return self.calls.get(linkedid)

    def of_agent(self, agent: str) -> list[LiveCall]:
        return [c for c in self.calls.values() if c.agent == agent]

    def apply(self, event: DomainEvent) -> list[CallHandedOver]:
        if isinstance(event, CallAnswered):
            self._answered(event)
        elif isinstance(event, CallCompleted):
            self.calls.pop(event.record.linkedid, None)
            return []
        call = self.calls.get(getattr(event, "linkedid", ""))
        if call is None:
            return []
        if isinstance(event, CallQueued):  # back in a queue (e.g. after the grace period)
            call.agent, call.dropped, call.keep_ref, call.browser = "", False, "", False
            call.handover = None
            return []
        if isinstance(event, CallDialing):
            return self._dialing(call, event)
        if isinstance(event, CallDialEnded):
            return self._dial_ended(call, event)
        if isinstance(event, CallTransferred):
            return self._transferred(call, event)
        # the mode is ours (hold and consultation both hold the caller); these counters let
        # an operation wait until Asterisk did what it asked
        if isinstance(event, CallHeld):
            call.holds += 1
            call.changed.set()
        elif isinstance(event, CallResumed):
            call.resumes += 1
            call.changed.set()
        elif isinstance(event, CallLegEnded):
            self._leg_ended(call, event)
        return []

    def _answered(self, event: CallAnswered) -> None:
        if not event.caller_channel or not event.agent_channel:
            return
        agent = event.member_name or event.interface
        call = self.calls.get(event.linkedid)
        if call is not None:  # answered again: the call was transferred to a queue
            call.queue, call.caller_channel = event.queue, event.caller_channel
            call.caller_uniqueid = event.caller_uniqueid
            call.agent, call.agent_channel = agent, event.agent_channel
            call.agent_uniqueid, call.mode, call.handover = event.agent_uniqueid, "talking", None
            call.dropped, call.keep_ref, call.browser = False, "", False
            call.leg_at = event.at
            if call.agents[-1:] != [agent]:
                call.agents.append(agent)
            return
        self.calls[event.linkedid] = LiveCall(
            event.linkedid, event.queue, event.caller_channel, event.caller_uniqueid,
            agent, event.agent_channel, event.agent_uniqueid, [agent], leg_at=event.at,
        )  # fmt: skip
        while len(self.calls) > self.limit:
            self.calls.popitem(last=False)

    def _dialing(self, call: LiveCall, event: CallDialing) -> list[CallHandedOver]:
        h = call.handover
        if h is None or event.context not in _DIALS_AGENT:
            return []
        return [self._event(call, h, event.at, "ringing")]

    def _dial_ended(self, call: LiveCall, event: CallDialEnded) -> list[CallHandedOver]:
        h = call.handover
        if h is None or event.context not in _DIALS_AGENT:
            return []
        if event.status != "ANSWER":
            call.handover = None
            if call.mode == "consulting":
                call.mode = "talking"  # Asterisk gives the caller back to the agent
            return [self._event(call, h, event.at, "failed")]
        h.answered, h.channel = True, event.dest_channel
        if h.kind == "attended" and not h.completed:
            return []  # a consultation: the agents talk, the caller waits
        return [self._take(call, h, event.at)]

    def _transferred(self, call: LiveCall, event: CallTransferred) -> list[CallHandedOver]:
        h = call.handover
        if event.kind != "attended" or h is None or h.kind != "attended":
            return []
        h.completed = True
        call.mode = "talking"
        if h.answered:
            return [self._take(call, h, event.at)]
        return []  # completed while the target still rings: handed over when it answers

    def _leg_ended(self, call: LiveCall, event: CallLegEnded) -> None:
        call.parties.pop(event.channel, None)
        if event.channel == call.agent_channel and call.keep_ref and event.remaining:
            # the browser phone's leg dropped: the dialplan keeps the caller waiting
            call.dropped, call.keep_ref, call.browser = True, "", False
            call.mode, call.handover = "talking", None
            call.lost_by, call.dropped_at = call.agent, event.at
            call.lost_phone = phone_of(event.channel)
        h = call.handover
        if h is not None and h.answered and event.channel == h.channel:
            if h.kind == "attended" and not h.completed:
                call.handover = None  # the consulted agent hung up: back to the caller
                call.mode = "talking"

    def _take(self, call: LiveCall, h: Handover, at: datetime) -> CallHandedOver:
        before = call.agent
        call.agent, call.agent_channel, call.agent_uniqueid = h.to_agent, h.channel, ""
        call.dropped, call.keep_ref, call.browser = False, "", False
        call.lost_by = call.lost_phone = ""
        call.leg_at = at
        if not call.agents or call.agents[-1] != h.to_agent:
            call.agents.append(h.to_agent)
        call.handover = None
        call.mode = "talking"
        return CallHandedOver(
            call.linkedid, at, before, h.to_agent, h.kind, "answered", h.channel, h.notes
        )

    @staticmethod
    def _event(call: LiveCall, h: Handover, at: datetime, state: str) -> CallHandedOver:
        return CallHandedOver(
            call.linkedid, at, call.agent, h.to_agent, h.kind, state, h.channel, h.notes
        )
