"""Call control: what an agent (or a supervisor) asks for, checked, and the AMI actions
that do it on the real Asterisk (through cti's AMI client).

How each operation is done on Asterisk 22 (decision 0023), keeping app_queue's bridge,
the channels' identities, the recording on the caller's leg and queue_log intact:

- hold: ``Atxfer`` of the agent's leg to ``[cti-cc-hold]`` (a consultation with music):
  Asterisk holds the caller in the call's bridge, which plays music on hold to them;
  resume is ``CancelAtxfer``. (A Redirect out of the bridge and a Bridge back would end
  the queue call in queue_log and hang up the yanked legs.)
- blind transfer: ``BlindTransfer`` of the agent's leg to ``[cti-cc-agent]`` (the target
  agent's interface, a global per reference), ``[cti-queue]`` (a queue) or
  ``[cti-outbound]`` (an E.164 number that passed the dial policy). queue_log gets
  BLINDTRANSFER.
- attended transfer: ``Atxfer`` to ``[cti-cc-agent]`` / ``[cti-outbound]``; complete =
  hang up the agent's leg (Asterisk joins caller and target: ATTENDEDTRANSFER), cancel =
  ``CancelAtxfer``.
- conference: ``Originate`` of the party into ``[cti-cc-join]`` whose ``BridgeAdd`` joins
  the caller's bridge (three parties: Asterisk mixes them).
- hang-up: ``Hangup`` of the agent's leg. DTMF: ``PlayDTMF`` on the caller's leg.
- take over (supervisor): a blind transfer to the supervisor's own phone.

No operation takes free text into a dial string: agents are looked up in the ACD's live
members (their provisioned interface), queues among the ACD's queues, numbers through
:class:`cti.services.DialPolicy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from callcontrol.calls import AGENT_CONTEXT, RECONNECT_CONTEXT, Handover, LiveCall, LiveCalls
from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient
from cti.events import CallCallerKept, CallHandedOver, DomainEvent
from cti.principal import Principal
from cti.services import Services
from cti.web.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, Unavailable

__all__ = ["HOLD_CONTEXT", "JOIN_CONTEXT", "CallControl"]

log = logging.getLogger(__name__)

HOLD_CONTEXT = "cti-cc-hold"
JOIN_CONTEXT = "cti-cc-join"
QUEUE_CONTEXT = "cti-queue"
OUTBOUND_CONTEXT = "cti-outbound"
#: interfaces call control may dial (what the ACD provisions as members)
INTERFACE_RE = re.compile(r"(?:PJSIP/[A-Za-z0-9_.\-]{1,64}|Local/[0-9]{1,20}@[a-z0-9\-]{1,40}/n)")
CHANNEL_RE = re.compile(r"[A-Za-z0-9/@._;:+\-]{1,128}")
QUEUE_RE = re.compile(r"[a-z0-9_]{1,64}")
DTMF_RE = re.compile(r"[0-9*#A-D]{1,32}")


def utcnow() -> datetime:
    return datetime.now(UTC)


class CallControl:
    def __init__(
        self,
        ami: AmiClient,
        calls: LiveCalls,
        services: Services,
        publish: Callable[[DomainEvent], None],
        *,
        region: str = "CN",
        grace_s: int = 30,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ami = ami
        self.calls = calls
        self.services = services
        self.publish = publish
        self.region = region
        self.grace_s = grace_s
        self.clock = clock
        self._webrtc: dict[str, bool] = {}  # endpoint -> is a browser phone

    # --- who may act on which call -----------------------------------------------------------
    def call_for(self, who: Principal, linkedid: str) -> LiveCall:
        call = self.calls.get(linkedid)
        if call is None:
            raise NotFound("no such call in progress", code="no-call")
        if call.agent == who.name:
            return call
        if not who.at_least("supervisor"):
            raise Forbidden("an agent controls only its own call", code="not-your-call")
        if not who.sees_agent(call.agent) or (call.queue and not who.sees_queue(call.queue)):
            raise Forbidden("the call's agent is not in your teams", code="not-in-scope")
        return call

    def mine(self, who: Principal) -> list[dict[str, object]]:
        return [c.view() for c in self.calls.of_agent(who.name)]

    # --- targets ----------------------------------------------------------------------------
    def _members(self) -> list[dict[str, object]]:
        queues = self.services.queues
        if queues is None:
            raise Unavailable("the ACD is not running", code="no-acd")
        members: list[dict[str, object]] = []
        for q in queues.live_queues(self.clock()):
            members.extend(q.get("members", []))
        return members

    def interface_of(self, agent: str) -> str:
        """The agent's phone (its ACD member interface), if it is signed in."""
        for m in self._members():
            if m.get("name") == agent:
                iface = str(m.get("interface", ""))
                if INTERFACE_RE.fullmatch(iface):
                    return iface
        raise Conflict(f"agent {agent!r} is not signed in to any queue", code="agent-absent")

    def _queue(self, name: str) -> str:
        queues = self.services.queues
        if queues is None:
            raise Unavailable("the ACD is not running", code="no-acd")
        names = {str(q.get("name")) for q in queues.live_queues(self.clock())}
        if not QUEUE_RE.fullmatch(name) or name not in names:
            raise NotFound(f"no such queue {name!r}", code="no-queue")
        return name

    async def _number(self, number: str, who: Principal) -> str:
        policy = self.services.dial_policy
        if policy is None:
            raise Unavailable("no dial policy is configured: external numbers are off")
        decision = await policy.check(number, purpose="transfer", agent=who.name)
        if not decision.allowed:
            raise ApiError(
                decision.reason or "this number may not be dialled", status=422,
                code=f"dial-{decision.code or 'refused'}",
            )  # fmt: skip
        digits = decision.number.lstrip("+")
        if not digits.isdigit():
            raise BadRequest("the number could not be normalised", code="bad-number")
        return digits

    async def _ref(self, name: str, value: str) -> str:
        """A fresh numeric reference with ``value`` in the global ``CTI_CC_<name>_<ref>``."""
        ref = f"{secrets.randbelow(900000) + 100000}"
        await self._send("Setvar", {"Variable": f"CTI_CC_{name}_{ref}", "Value": value})
        return ref

    # --- operations -------------------------------------------------------------------------
    async def hold(self, call: LiveCall) -> None:
        if call.mode != "talking":
            raise Conflict(f"the call is {call.mode}", code=f"call-{call.mode}")
        ref, before = f"{secrets.randbelow(900000) + 100000}", call.holds
        await self._send("Atxfer", {"Channel": call.agent_channel, "Context": HOLD_CONTEXT,
                                    "Exten": ref})  # fmt: skip
        call.mode, call.hold_ref = "held", ref
        await self._settled(call, lambda: call.holds > before)

    async def resume(self, call: LiveCall) -> None:
        if call.mode != "held":
            raise Conflict("the call is not on hold", code="not-held")
        before = call.resumes
        # hanging up the hold leg ends the "consultation": Asterisk gives the agent back to
        # the caller at once (CancelAtxfer's queued abort code races with what follows)
        held = await self._hold_leg(call.hold_ref)
        if held:
            await self._send("Hangup", {"Channel": held, "Cause": "16"})
        else:
            await self._send("CancelAtxfer", {"Channel": call.agent_channel})
        call.mode, call.hold_ref = "talking", ""
        await self._settled(call, lambda: call.resumes > before)

    async def _hold_leg(self, ref: str) -> str:
        """The channel of the hold extension ``ref`` (``Local/<ref>@cti-cc-hold-…;1``)."""
        if not ref or not self.ami.connected:
            return ""
        try:
            _, items = await self.ami.send_list_action("CoreShowChannels")
        except (AmiActionError, TimeoutError, ConnectionError):
            return ""
        prefix = f"Local/{ref}@{HOLD_CONTEXT}-"
        for item in items:
            channel = item.get("Channel", "")
            if channel.startswith(prefix) and channel.endswith(";1"):
                return channel
        return ""

    @staticmethod
    async def _settled(call: LiveCall, done: Callable[[], bool], timeout: float = 3.0) -> None:
        """Wait (bounded) until Asterisk reported the change, so that the next operation
        acts on the call as it is now."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not done():
                    call.changed.clear()
                    await call.changed.wait()

    async def transfer(
        self, call: LiveCall, who: Principal, *, agent: str = "", queue: str = "",
        number: str = "", notes: str = "", attended: bool = False, kind: str = "",
    ) -> dict[str, str]:  # fmt: skip
        if call.mode != "talking":
            raise Conflict(f"the call is {call.mode}", code=f"call-{call.mode}")
        if sum(bool(x) for x in (agent, queue, number)) != 1:
            raise BadRequest("give exactly one of agent, queue, number", code="one-target")
        action = "Atxfer" if attended else "BlindTransfer"
        if not attended:
            await self._unkeep(call)
        if agent:
            if agent == call.agent:
                raise Conflict("the call is already with that agent", code="same-agent")
            ref = await self._ref("IFACE", self.interface_of(agent))
            call.handover = Handover(
                ref, agent, kind or ("attended" if attended else "blind"), notes[:4000]
            )
            context, exten, target = AGENT_CONTEXT, ref, {"agent": agent}
        elif queue:
            if attended:
                raise BadRequest("a queue takes blind transfers only", code="queue-blind")
            context, exten, target = QUEUE_CONTEXT, self._queue(queue), {"queue": queue}
        else:
            digits = await self._number(number, who)
            context, exten, target = OUTBOUND_CONTEXT, digits, {"number": "+" + digits}
        try:
            await self._send(action, {"Channel": call.agent_channel, "Context": context,
                                      "Exten": exten})  # fmt: skip
        except ApiError:
            call.handover = None
            raise
        if attended:
            call.mode = "consulting"
        elif queue:  # whoever the queue finds gets the card with the notes
            self.publish(
                CallHandedOver(call.linkedid, self.clock(), call.agent, "", "queue", "ringing",
                               notes=notes[:4000])
            )  # fmt: skip
        return target

    async def complete(self, call: LiveCall) -> None:
        if call.mode != "consulting":
            raise Conflict("no consultation in progress", code="no-consult")
        await self._unkeep(call)
        await self._send("Hangup", {"Channel": call.agent_channel, "Cause": "16"})

    async def cancel(self, call: LiveCall) -> None:
        if call.mode != "consulting":
            raise Conflict("no consultation in progress", code="no-consult")
        h, before = call.handover, call.resumes
        if h is not None and h.answered and CHANNEL_RE.fullmatch(h.channel):
            # the consulted party talks: hanging its leg up gives the caller back to the
            # agent at once (CancelAtxfer's queued abort code can be lost right after the
            # target answered)
            await self._send("Hangup", {"Channel": h.channel, "Cause": "16"})
        else:
            await self._send("CancelAtxfer", {"Channel": call.agent_channel})
        call.handover = None
        call.mode = "talking"
        await self._settled(call, lambda: call.resumes > before)

    async def conference(
        self, call: LiveCall, who: Principal, *, agent: str = "", number: str = ""
    ) -> dict[str, str]:
        if call.mode != "talking":
            raise Conflict(f"the call is {call.mode}", code=f"call-{call.mode}")
        if bool(agent) == bool(number):
            raise BadRequest("give exactly one of agent, number", code="one-target")
        if agent:
            channel, label = self.interface_of(agent), agent
        else:
            digits = await self._number(number, who)
            channel, label = f"Local/{digits}@{OUTBOUND_CONTEXT}/n", "+" + digits
        if not CHANNEL_RE.fullmatch(call.caller_channel):
            raise Conflict("the call's channel cannot be joined", code="bad-channel")
        ref = await self._ref("JOIN", call.caller_channel)
        await self._send(
            "Originate",
            {"Channel": channel, "Context": JOIN_CONTEXT, "Exten": ref, "Priority": "1",
             "Async": "true", "Timeout": "30000", "CallerID": f"conference <{ref}>"},
        )  # fmt: skip
        call.parties[channel] = label
        return {"agent": agent} if agent else {"number": label}

    async def hangup(self, call: LiveCall) -> None:
        await self._unkeep(call)
        await self._send("Hangup", {"Channel": call.agent_channel, "Cause": "16"})

    async def dtmf(self, call: LiveCall, digits: str) -> None:
        if not DTMF_RE.fullmatch(digits):
            raise BadRequest("digits are 0-9 * # A-D, at most 32", code="bad-dtmf")
        for digit in digits:
            await self._send("PlayDTMF", {"Channel": call.caller_channel, "Digit": digit,
                                          "Duration": "120"})  # fmt: skip

    async def take_over(self, call: LiveCall, who: Principal, notes: str = "") -> None:
        if call.agent == who.name:
            raise Conflict("the call is already yours", code="same-agent")
        if call.mode == "held":
            await self.resume(call)
        await self.transfer(call, who, agent=who.name, notes=notes, kind="take_over")

    # --- no caller lost to a browser -----------------------------------------------------
    async def arm(self, call: LiveCall) -> None:
        """The agent answered on ``call.agent_channel``: if that is a browser phone, the
        dialplan keeps the caller (music, then the queue's front after the grace period)
        should that leg drop, and it is reconnected when its phone registers again."""
        channel = call.agent_channel
        if not channel.startswith("PJSIP/") or not await self._is_webrtc(channel):
            return
        if call.agent_channel != channel or not CHANNEL_RE.fullmatch(call.caller_channel):
            return  # moved on meanwhile
        ref = f"{secrets.randbelow(900000) + 100000}"
        for name, value in (("CTI_CC_GRACE", str(self.grace_s)), ("CTI_CC_KEEP", ref)):
            await self._send("Setvar", {"Channel": call.caller_channel, "Variable": name,
                                        "Value": value})  # fmt: skip
        call.browser, call.keep_ref = True, ref
        self.publish(CallCallerKept(call.linkedid, self.clock(), call.agent, channel))

    async def _is_webrtc(self, channel: str) -> bool:
        endpoint = channel[len("PJSIP/") :].rsplit("-", 1)[0]
        if endpoint in self._webrtc:
            return self._webrtc[endpoint]
        try:
            _, items = await self.ami.send_list_action("PJSIPShowEndpoint",
                                                       {"Endpoint": endpoint})  # fmt: skip
        except (AmiActionError, TimeoutError, ConnectionError):
            return False
        webrtc = any(
            k.lower() == "webrtc" and v.lower() in ("yes", "true")
            for item in items if item.event == "EndpointDetail" for k, v in item.headers
        )  # fmt: skip
        if len(self._webrtc) < 10000:
            self._webrtc[endpoint] = webrtc
        return webrtc

    async def _unkeep(self, call: LiveCall) -> None:
        """The agent ends its part on purpose (hang-up, transfer): no waiting for it."""
        if call.keep_ref:
            call.keep_ref = ""
            await self._send("Setvar", {"Channel": call.caller_channel, "Variable": "CTI_CC_KEEP",
                                        "Value": ""})  # fmt: skip

    def reclaimable(self, who: Principal, linkedid: str) -> LiveCall:
        """The call ``who`` asks back (its page, after its phone registered again): its
        own call, or 409 ``requeued`` when the grace period gave the caller back to the
        queue meanwhile (or another agent has it now)."""
        call = self.calls.get(linkedid)
        if call is not None and call.agent != who.name and call.lost_by == who.name:
            raise Conflict("the caller went back to the queue (grace period over)",
                           code="requeued")  # fmt: skip
        call = self.call_for(who, linkedid)
        if call.agent != who.name:
            raise Forbidden("only the agent whose phone dropped", code="not-your-call")
        return call

    async def reconnect(self, call: LiveCall) -> bool:
        """The agent's browser phone is back (it registered again, or its page asks): ring
        it again with the same caller, answered by the page by itself (the caller waits
        with music meanwhile, or still sits in the bridge with a dead leg that Asterisk
        has not noticed yet). Idempotent: False, and nothing sent, when a reconnect is
        under way already."""
        if call.reconnecting:
            return False
        if not call.dropped and not call.browser:
            if call.lost_by and call.agent != call.lost_by:
                raise Conflict("the caller went back to the queue (grace period over)",
                               code="requeued")  # fmt: skip
            raise Conflict("the call is not on a browser phone", code="not-browser")
        iface = self.interface_of(call.agent)
        # marked before the first await: a second trigger meanwhile does nothing
        h = call.handover = Handover("", call.agent, "reconnect")
        try:
            h.ref = await self._ref("IFACE", iface)
            await self._unkeep(call)
            await self._send("Redirect", {"Channel": call.caller_channel,
                                          "Context": RECONNECT_CONTEXT, "Exten": h.ref,
                                          "Priority": "1"})  # fmt: skip
        except ApiError:
            if call.handover is h:
                call.handover = None
            raise
        call.dropped = False
        return True

    # --- AMI --------------------------------------------------------------------------------
    async def _send(self, action: str, headers: dict[str, str]) -> None:
        if not self.ami.connected:
            raise Unavailable("Asterisk is not connected", code="no-asterisk")
        try:
            resp = await self.ami.send_action(action, headers)
        except AmiActionError as exc:
            log.info("%s refused: %s", action, exc)
            raise Conflict(f"Asterisk refused {action}: {exc}", code="asterisk-refused") from exc
        except (TimeoutError, ConnectionError) as exc:
            raise Unavailable(f"Asterisk did not answer {action}", code="no-asterisk") from exc
        if resp.get("Response") not in ("Success", None):
            raise Conflict(f"Asterisk refused {action}", code="asterisk-refused")
