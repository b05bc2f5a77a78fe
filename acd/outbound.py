"""Calls the system places: click-to-call, callbacks and callback placeholders.

Every outbound call gets a Linkedid we choose (AMI Originate ``ChannelId``), so its AMI
events are recognised without any channel variable:

- ``cti-out-<hex>``: click-to-call, or an agent dialling a callback by hand. Originate
  rings the agent's device; once answered it runs ``[cti-outbound]`` with the customer's
  number (digits of the E.164 form, validated here, FILTER()ed there) as the extension.
- ``cti-cb-<id>-<hex>``: a callback placeholder (:mod:`acd.callbacks`): a Local channel
  whose second half waits in the queue; when an agent answers it, its first half is
  redirected into ``[cti-outbound]`` and dials the customer.

Every call that reaches a customer passes the dial policy (``Services.dial_policy``,
:mod:`cti.dialpolicy`) here, in the one place that originates, right before the Originate
or Redirect: a refused number raises :class:`DialRefused` with the policy's decision.
Without a policy nothing is dialled.

The result of a call (:class:`Result`) comes from the platform's call events: the
``[cti-outbound]`` leg's CallDialing / CallDialEnded and the first channel's
CallLegEnded: ``answered`` (the customer picked up), ``unanswered`` (dialled, no
answer/busy/failed) or ``not_dialled`` (the agent never answered, or the placeholder
left the queue unanswered).

What a call placed through an agent IS (``click_to_call`` or ``callback``, and the number)
rides on its first channel as ``CTI_OUTBOUND_KIND`` / ``CTI_OUTBOUND_NUMBER`` (Originate
variables): a node that takes the server over (or a restarted daemon) finds such a call
in its channel snapshot, reads them back (:meth:`Dialer.adopt`) and follows the call to
its result as the node that placed it would have (a lost caller closed when the customer
answers). Callback placeholders and callbacks are adopted from their stored requests
(:meth:`acd.callbacks.Callbacks.resync`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.events import CallDialEnded, CallDialing, CallLegEnded, ChannelInfo, DomainEvent
from cti.services import DialDecision, Services
from cti.tasks import BackgroundTasks

__all__ = [
    "CALLBACK_PREFIX",
    "OUTBOUND_CONTEXT",
    "OUTBOUND_PREFIX",
    "DialRefused",
    "Dialer",
    "InvalidNumber",
    "OutboundCall",
    "is_own_call",
    "valid_number",
]

log = logging.getLogger(__name__)

OUTBOUND_CONTEXT = "cti-outbound"
SLOT_CONTEXT = "cti-acd-callback-slot"
OUTBOUND_PREFIX = "cti-out-"
CALLBACK_PREFIX = "cti-cb-"
#: The platform's call events the dialer follows (subscribe each to :meth:`Dialer.apply`).
CALL_EVENTS = (CallDialing, CallDialEnded, CallLegEnded)
#: channel variables a call placed through an agent is originated with: what it is,
#: read back when another node (or a restarted one) finds it up (:meth:`Dialer.adopt`)
KIND_VAR = "CTI_OUTBOUND_KIND"
NUMBER_VAR = "CTI_OUTBOUND_NUMBER"


class InvalidNumber(ValueError):
    """Not a number we dial (message meant for the API user)."""


class DialRefused(Exception):
    """The dial policy refused the number: ``decision`` says why (code, reason)."""

    def __init__(self, decision: DialDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision

    @property
    def code(self) -> str:
        return self.decision.code


def valid_number(raw: object, region: str) -> str:
    """The E.164 form of a dialable number, or raise :class:`InvalidNumber`."""
    if not isinstance(raw, str) or not 2 <= len(raw) <= 32:
        raise InvalidNumber("number: a phone number string")
    if any(c not in "+0123456789 ()-./" for c in raw):
        raise InvalidNumber("number: digits, an optional leading + and separators only")
    try:
        parsed = phonenumbers.parse(raw, region.upper() or None)
    except phonenumbers.NumberParseException:
        raise InvalidNumber("number: not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("number: not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def digits_of(e164: str) -> str:
    return "".join(c for c in e164 if c.isdigit())


def is_own_call(linkedid: str) -> bool:
    """A call this module placed (not a customer's inbound call)."""
    return linkedid.startswith((OUTBOUND_PREFIX, CALLBACK_PREFIX))


@dataclass
class OutboundCall:
    linkedid: str
    kind: str  # "click_to_call" | "callback"
    number: str  # E.164
    agent: str
    callback_id: int | None = None
    placeholder: bool = False
    offered: bool = False  # a placeholder an agent answered
    dialled: bool = False
    result: str = ""


Result = Callable[[OutboundCall, str, datetime], Awaitable[None]]


class Dialer:
    def __init__(
        self, ami: AmiClient, services: Services, *, agent_ring_s: int, customer_ring_s: int
    ) -> None:
        self.ami = ami
        self.services = services
        self.agent_ring_s = agent_ring_s
        self.customer_ring_s = customer_ring_s
        self.calls: dict[str, OutboundCall] = {}
        self._on_result: list[Result] = []
        self._tasks = BackgroundTasks("acd-dialer")

    def on_result(self, handler: Result) -> None:
        self._on_result.append(handler)

    # --- placing calls ----------------------------------------------------------------------
    async def allowed(self, number: str, *, purpose: str, agent: str = "") -> str:
        """The E.164 number to dial, if the dial policy allows it; else DialRefused.
        ``agent``: the person who starts the dial (counted against their daily limit)."""
        policy = self.services.dial_policy
        if policy is None:
            raise DialRefused(
                DialDecision(False, number, "no dial policy is configured", "unavailable")
            )
        decision = await policy.check(number, purpose=purpose, agent=agent)
        if not decision.allowed:
            raise DialRefused(decision)
        return decision.number or number

    async def dial_via_agent(
        self, agent: str, interface: str, number: str, *, kind: str,
        callback_id: int | None = None,
    ) -> OutboundCall:  # fmt: skip
        """Ring ``interface`` (the agent's device); once answered, dial ``number``
        (refused by the dial policy: DialRefused, nothing is placed)."""
        number = await self.allowed(number, purpose=kind, agent=agent)
        linkedid = f"{OUTBOUND_PREFIX}{secrets.token_hex(8)}"
        call = OutboundCall(linkedid, kind, number, agent, callback_id)
        self.calls[linkedid] = call
        label = "Callback" if kind == "callback" else "Call"
        try:
            await self.ami.send_action(
                "Originate",
                {
                    "Channel": interface, "Context": OUTBOUND_CONTEXT,
                    "Exten": digits_of(number), "Priority": "1",
                    "CallerID": f'"{label}" <{digits_of(number)}>',
                    "Timeout": str(self.agent_ring_s * 1000), "Async": "true",
                    "Variable": [f"CTI_OUTBOUND_RING={self.customer_ring_s}",
                                 f"{KIND_VAR}={kind}", f"{NUMBER_VAR}={number}"],
                    "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
                },
            )  # fmt: skip
        except BaseException:
            self.calls.pop(linkedid, None)
            raise
        return call

    @staticmethod
    def slot_linkedid(callback_id: int) -> str:
        return f"{CALLBACK_PREFIX}{int(callback_id)}-{secrets.token_hex(4)}"

    async def place_slot(
        self, linkedid: str, callback_id: int, queue: str, number: str, position: int,
        max_wait_s: int,
    ) -> OutboundCall:  # fmt: skip
        """Put placeholder ``linkedid`` (:meth:`slot_linkedid`) of callback ``callback_id``
        into ``queue`` at ``position`` (0: at the end). DialRefused: not placed."""
        number = await self.allowed(number, purpose="callback")
        call = OutboundCall(linkedid, "callback", number, "", callback_id, placeholder=True)
        self.calls[linkedid] = call
        variables = [f"CTI_CB_MAXWAIT={max_wait_s}", f"CTI_OUTBOUND_RING={self.customer_ring_s}"]
        if position > 0:
            variables.append(f"CTI_CB_POS={position}")
        try:
            await self.ami.send_action(
                "Originate",
                {
                    "Channel": f"Local/{queue}@{SLOT_CONTEXT}/n",
                    "Application": "Wait", "Data": str(max_wait_s + 60),
                    "CallerID": f'"Callback" <{digits_of(number)}>',
                    "Timeout": "10000", "Async": "true", "Variable": variables,
                    "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
                },
            )  # fmt: skip
        except BaseException:
            self.calls.pop(linkedid, None)
            raise
        return call

    async def connect_slot(self, call: OutboundCall) -> None:
        """An agent answered the placeholder: send its first half to dial the customer
        (a channel is found by its Uniqueid, which we chose). The policy is asked again
        (the number may have gone on the do-not-call list while it waited)."""
        await self.allowed(call.number, purpose="callback")
        await self.ami.send_action(
            "Redirect",
            {"Channel": call.linkedid, "Context": OUTBOUND_CONTEXT,
             "Exten": digits_of(call.number), "Priority": "1"},
        )  # fmt: skip

    async def adopt(self, channels: Sequence[ChannelInfo]) -> list[OutboundCall]:
        """After a (re)connect: the calls this module placed that are still up in
        Asterisk and unknown here (placed by a node that died, or before a restart, and
        not held by a callback request) are followed again, as what they are: their kind
        and number are read back from the first channel's ``CTI_OUTBOUND_KIND`` /
        ``CTI_OUTBOUND_NUMBER`` (set on Originate); the customer counts as dialled when a
        leg of the call is in ``[cti-outbound]``'s Dial. Their results then come from the
        call events as for any call (e.g. a lost caller closed when the customer answers)."""
        dialled: dict[str, bool] = {}
        for ch in channels:
            if ch.linkedid.startswith(OUTBOUND_PREFIX) and ch.linkedid not in self.calls:
                in_dial = ch.context == OUTBOUND_CONTEXT and ch.application == "Dial"
                dialled[ch.linkedid] = dialled.get(ch.linkedid, False) or in_dial
        adopted: list[OutboundCall] = []
        for linkedid, was_dialled in dialled.items():
            marks: dict[str, str] = {}
            for name in (KIND_VAR, NUMBER_VAR):
                try:
                    reply = await self.ami.send_action("Getvar", {"Channel": linkedid,
                                                                  "Variable": name})  # fmt: skip
                except (AmiActionError, NotConnected, TimeoutError):
                    break
                marks[name] = reply.get("Value", "") or ""
            kind, number = marks.get(KIND_VAR, ""), marks.get(NUMBER_VAR, "")
            if kind not in ("click_to_call", "callback") or not number:
                continue
            if linkedid in self.calls:  # known meanwhile (a callback request's resync)
                continue
            call = OutboundCall(linkedid, kind, number, "", dialled=was_dialled)
            self.calls[linkedid] = call
            adopted.append(call)
            log.info("outbound call %s taken over: %s to %s", linkedid, kind, number)
        return adopted

    async def hangup(self, linkedid: str) -> None:
        self.calls.pop(linkedid, None)
        await self.ami.send_action("Hangup", {"Channel": linkedid, "Cause": "16"})

    # --- results ------------------------------------------------------------------------------
    def apply(self, event: DomainEvent) -> None:
        """A dial or a hang-up of one of our calls (bus handler, synchronous)."""
        if not isinstance(event, CallDialing | CallDialEnded | CallLegEnded):
            return
        call = self.calls.get(event.linkedid)
        if call is None:
            return
        if isinstance(event, CallLegEnded):
            if event.uniqueid == call.linkedid:
                self._finish(call, "unanswered" if call.dialled else "not_dialled")
            return
        if event.context != OUTBOUND_CONTEXT:
            return
        if isinstance(event, CallDialing):
            call.dialled = True
        elif event.status == "ANSWER":
            call.dialled = True
            self._finish(call, "answered")

    def _finish(self, call: OutboundCall, result: str) -> None:
        if call.result:  # the Hangup after an answered call
            self.calls.pop(call.linkedid, None)
            return
        call.result = result
        if result != "answered":
            self.calls.pop(call.linkedid, None)
        now = datetime.now(UTC)
        for handler in self._on_result:
            self._tasks.spawn(self._run(handler, call, result, now), "result")

    async def _run(self, handler: Result, call: OutboundCall, result: str, at: datetime) -> None:
        try:
            await handler(call, result, at)
        except Exception:
            log.exception("outbound call result handling failed for %s", call.linkedid)

    async def drain(self) -> None:
        """Let result handlers that are running finish."""
        await self._tasks.drain(timeout=10)
        await self._tasks.stop()
