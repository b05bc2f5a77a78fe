"""The live side: which answered calls exist now, MixMonitor start/stop/pause per policy.

Built from the platform's call events (no AMI is read here, decision 0013): CallAnswered
(the agent answered: start recording on the caller's channel when the queue's policy is
``always``), CallDialEnded ANSWER of a call the system placed for an agent
(OutboundCallStarted), CallHandled and CallLegEnded (stop, then process the file), and
the channel snapshot of AmiConnected (calls whose caller vanished meanwhile end).
Operations on one call are serialised by a per-call lock; file work happens afterwards
in :class:`recordings.processing.Processor`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.events import (
    AmiConnected,
    CallAnswered,
    CallDialEnded,
    CallHandled,
    CallLegEnded,
    OutboundCallStarted,
    RecordingStarted,
    RecordingStopped,
)
from cti.phone import normalize
from cti.services import Services
from cti.tasks import BackgroundTasks
from cti.web.ws import WsHub, to_agent, to_role
from recordings.config import Policy, RecordingsConfig
from recordings.naming import recording_path
from recordings.processing import Processor
from recordings.store import RecordingStore

__all__ = ["CHANNEL_RE", "ControlError", "LiveCall", "Recorder", "Segment"]

log = logging.getLogger(__name__)

# An Asterisk channel name as it may appear in MixMonitor / ChanSpy arguments.
CHANNEL_RE = re.compile(r"[A-Za-z0-9/@._;:+\-]{1,128}")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ControlError(Exception):
    """An operation that cannot be done now (HTTP 409 / 404 with this message)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Segment:
    row_id: int
    relpath: str
    started_at: datetime
    mixmonitor_id: str = ""
    paused_since: datetime | None = None
    paused_s: float = 0.0


@dataclass
class LiveCall:
    linkedid: str
    queue: str
    agent: str
    caller_channel: str
    caller_uniqueid: str
    agent_channel: str
    caller_num: str
    answered_at: datetime
    policy: Policy
    customer_id: int | None = None
    customer_name: str = ""
    segment: Segment | None = None
    segments: int = 0
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def snapshot(self) -> dict[str, Any]:
        seg = self.segment
        return {
            "linkedid": self.linkedid, "queue": self.queue, "agent": self.agent,
            "caller_num": self.caller_num, "customer_id": self.customer_id,
            "customer_name": self.customer_name, "answered_at": self.answered_at.isoformat(),
            "policy": self.policy,
            "recording": None if seg is None else {
                "id": seg.row_id, "started_at": seg.started_at.isoformat(),
                "paused": seg.paused_since is not None,
            },
        }  # fmt: skip


class Recorder:
    def __init__(
        self,
        config: RecordingsConfig,
        store: RecordingStore,
        processor: Processor,
        ami: AmiClient,
        bus: EventBus,
        *,
        services: Services | None = None,
        hub: WsHub | None = None,
        region: str = "",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config, self.store, self.processor = config, store, processor
        self.ami, self.bus, self.services, self.hub = ami, bus, services, hub
        self.region, self.clock = region, clock
        self.calls: dict[str, LiveCall] = {}
        self._by_uniqueid: dict[str, str] = {}
        self._outbound: dict[str, tuple[str, str]] = {}  # linkedid -> (agent, number)
        self.tasks = BackgroundTasks("recordings")

    # --- call events ------------------------------------------------------------------------
    def attach(self, bus: EventBus) -> None:
        bus.subscribe(OutboundCallStarted, self.on_outbound)
        bus.subscribe(CallAnswered, self.on_answered)
        bus.subscribe(CallDialEnded, self.on_dial_ended)
        bus.subscribe(CallHandled, self.on_handled)
        bus.subscribe(CallLegEnded, self.on_leg_ended)
        bus.subscribe(AmiConnected, self.on_connected)

    def on_outbound(self, event: OutboundCallStarted) -> None:
        """The system dials a customer for an agent: recorded once the customer answers
        (CallDialEnded ANSWER of that call), under ``outbound_policy``."""
        if event.linkedid not in self.calls and len(self._outbound) < 10000:
            self._outbound[event.linkedid] = (event.agent, event.number)

    def on_answered(self, event: CallAnswered) -> None:
        lid = event.linkedid
        if not lid or lid in self.calls:
            return
        channel, agent_channel = event.caller_channel, event.agent_channel
        if CHANNEL_RE.fullmatch(channel) is None or CHANNEL_RE.fullmatch(agent_channel) is None:
            log.warning("answered call with unusable channel names for %s", lid)
            return
        call = LiveCall(
            linkedid=lid, queue=event.queue, agent=event.member_name,
            caller_channel=channel, caller_uniqueid=event.caller_uniqueid,
            agent_channel=agent_channel, caller_num=event.caller_num[:64],
            answered_at=self.clock(), policy=self.config.policy_for(event.queue),
        )  # fmt: skip
        self._track(call, event.agent_uniqueid)

    def on_dial_ended(self, event: CallDialEnded) -> None:
        lid = event.linkedid
        if lid in self._outbound and event.status == "ANSWER":
            agent, number = self._outbound.pop(lid)
            self._on_outbound_answer(event, agent, number)

    def on_handled(self, event: CallHandled) -> None:
        if event.linkedid in self.calls:
            self.tasks.spawn(self._end(event.linkedid, stop=True), "end")

    def on_leg_ended(self, event: CallLegEnded) -> None:
        uid = event.uniqueid
        lid = self._by_uniqueid.get(uid, "")
        if uid in self._outbound:  # the agent never answered, or nobody was dialled
            self._outbound.pop(uid, None)
        if lid in self.calls:
            # the agent's leg went: the caller's channel (and MixMonitor on it) may go
            # on in the dialplan, so stop it explicitly; the caller's own hang-up closes it
            caller_gone = uid == self.calls[lid].caller_uniqueid
            self.tasks.spawn(self._end(lid, stop=not caller_gone), "end")

    def on_connected(self, event: AmiConnected) -> None:
        """After an AMI (re)connect: calls whose caller channel vanished while we were
        away are ended (their MixMonitor closed with the channel)."""
        if not event.reconnect or not self.calls:
            return
        present = {c.channel for c in event.channels}
        for lid, call in list(self.calls.items()):
            if call.caller_channel not in present:
                self.tasks.spawn(self._end(lid, stop=False), "end")

    def _on_outbound_answer(self, event: CallDialEnded, agent: str, number: str) -> None:
        # the dialling channel is the agent's leg: it carries both directions
        lid, channel = event.linkedid, event.channel
        if lid in self.calls or CHANNEL_RE.fullmatch(channel) is None:
            return
        self._track(
            LiveCall(
                linkedid=lid, queue="", agent=agent, caller_channel=channel,
                caller_uniqueid=event.uniqueid, agent_channel=channel,
                caller_num=number[:64], answered_at=self.clock(),
                policy=self.config.policy_for(""),
            ),
            event.dest_uniqueid,
        )  # fmt: skip

    def _track(self, call: LiveCall, other_uniqueid: str) -> None:
        self.calls[call.linkedid] = call
        self._by_uniqueid[call.caller_uniqueid] = call.linkedid
        if other_uniqueid:
            self._by_uniqueid[other_uniqueid] = call.linkedid
        self.tasks.spawn(self._answered(call), "answered")

    async def _answered(self, call: LiveCall) -> None:
        async with call.lock:
            await self._lookup_customer(call)
            if call.policy == "always" and not call.ended:
                await self._start(call, mode="always")
        self._push(call, "recording.live")

    async def _lookup_customer(self, call: LiveCall) -> None:
        directory = self.services.customer_directory if self.services else None
        e164 = normalize(call.caller_num, self.region) if call.caller_num else ""
        if directory is None or not e164:
            return
        try:
            card = await asyncio.wait_for(directory.lookup_number(e164), timeout=2.0)
        except Exception:
            log.exception("customer lookup failed for a recording")
            return
        if card is not None:
            call.customer_id, call.customer_name = card.customer_id, card.name

    # --- operations (AMI-driven and REST) ------------------------------------------------
    async def _start(self, call: LiveCall, *, mode: str) -> Segment:
        now = self.clock()
        relpath = recording_path(call.linkedid, now, call.segments)
        call.segments += 1
        row = await self.store.add(
            linkedid=call.linkedid, uniqueid=call.caller_uniqueid, channel=call.caller_channel,
            agent=call.agent, queue=call.queue, caller_num=call.caller_num,
            customer_id=call.customer_id, customer_name=call.customer_name, mode=mode,
            started_at=now, path=relpath, format="wav", status="recording",
        )  # fmt: skip
        try:
            resp = await self.ami.send_action(
                "MixMonitor", {"Channel": call.caller_channel, "File": relpath}
            )
        except Exception as exc:
            await self.store.update(row.id, status="failed", reason=f"MixMonitor: {exc}")
            raise ControlError(f"recording could not start: {exc}") from None
        seg = Segment(row.id, relpath, now, resp.get("MixMonitorID", "") or "")
        call.segment = seg
        self.bus.publish(
            RecordingStarted(call.linkedid, now, call.caller_uniqueid, relpath, recording_id=row.id)
        )
        return seg

    async def _stop(self, call: LiveCall, *, send_stop: bool) -> None:
        seg, call.segment = call.segment, None
        if seg is None:
            return
        now = self.clock()
        if seg.paused_since is not None:
            seg.paused_s += (now - seg.paused_since).total_seconds()
        if send_stop:
            headers = {"Channel": call.caller_channel}
            if seg.mixmonitor_id:
                headers["MixMonitorID"] = seg.mixmonitor_id
            try:
                await self.ami.send_action("StopMixMonitor", headers)
            except Exception as exc:  # the channel may be gone already: the file closes anyway
                log.debug("StopMixMonitor for %s: %s", call.linkedid, exc)
        await self.store.update(
            seg.row_id, status="processing", ended_at=now, paused_s=round(seg.paused_s, 3)
        )
        self.tasks.spawn(self._process(seg.row_id, call), "process")

    async def _process(self, row_id: int, call: LiveCall) -> None:
        outcome = await self.processor.finish(row_id)
        row = outcome.row
        if row is None:
            return
        if row.status == "ready":
            self.bus.publish(
                RecordingStopped(
                    row.linkedid, row.ended_at or self.clock(), row.uniqueid, row.path,
                    recording_id=row.id,
                )
            )  # fmt: skip
        self._push(call, "recording.ready", recording_id=row.id, status=row.status)

    async def _end(self, linkedid: str, *, stop: bool) -> None:
        call = self.calls.get(linkedid)
        if call is None:
            return
        async with call.lock:
            if call.ended:
                return
            call.ended = True
            await self._stop(call, send_stop=stop)
            if call.segments == 0:
                reason = (
                    "policy: never recorded" if call.policy == "never"
                    else "on demand: nobody started a recording"
                )  # fmt: skip
                now = self.clock()
                await self.store.add(
                    linkedid=call.linkedid, uniqueid=call.caller_uniqueid,
                    channel=call.caller_channel, agent=call.agent, queue=call.queue,
                    caller_num=call.caller_num, customer_id=call.customer_id,
                    customer_name=call.customer_name, mode=call.policy, started_at=call.answered_at,
                    ended_at=now, status="not_recorded", reason=reason, format="",
                )  # fmt: skip
        self.calls.pop(linkedid, None)
        for uid in [u for u, lid in self._by_uniqueid.items() if lid == linkedid]:
            del self._by_uniqueid[uid]
        self._push(call, "recording.ended")

    def live(self, linkedid: str) -> LiveCall:
        call = self.calls.get(linkedid)
        if call is None or call.ended:
            raise ControlError("no such call in progress", 404)
        return call

    async def command(self, linkedid: str, action: str, *, by_supervisor: bool) -> LiveCall:
        """start / stop / pause / resume on a live call (permissions checked by the caller,
        except what the queue's policy forbids)."""
        call = self.live(linkedid)
        async with call.lock:
            if call.ended:
                raise ControlError("the call has ended", 404)
            if action == "start":
                if call.policy == "never":
                    raise ControlError("recording is disabled on this queue")
                if call.segment is not None:
                    raise ControlError("already recording")
                await self._start(call, mode="on_demand")
            elif action == "stop":
                if call.segment is None:
                    raise ControlError("not recording")
                if call.policy == "always" and not by_supervisor:
                    raise ControlError("recording is mandatory on this queue (pause instead)")
                await self._stop(call, send_stop=True)
            elif action in ("pause", "resume"):
                seg = call.segment
                if seg is None:
                    raise ControlError("not recording")
                if (seg.paused_since is not None) == (action == "pause"):
                    raise ControlError(f"already {'paused' if action == 'pause' else 'running'}")
                await self.ami.send_action(
                    "MixMonitorMute",
                    {"Channel": call.caller_channel, "Direction": "both",
                     "State": "1" if action == "pause" else "0"},
                )  # fmt: skip
                now = self.clock()
                if action == "pause":
                    seg.paused_since = now
                else:
                    assert seg.paused_since is not None
                    seg.paused_s += (now - seg.paused_since).total_seconds()
                    seg.paused_since = None
            else:
                raise ControlError(f"unknown action {action}", 400)
        self._push(call, "recording.live")
        return call

    def live_calls(self, agent: str | None = None) -> list[dict[str, Any]]:
        return [
            c.snapshot() for c in self.calls.values()
            if not c.ended and (agent is None or c.agent == agent)
        ]  # fmt: skip

    def _push(self, call: LiveCall, kind: str, **extra: Any) -> None:
        if self.hub is None:
            return
        frame = {"type": kind, **call.snapshot(), **extra}
        self.hub.publish(to_role("supervisor"), frame)
        if call.agent:
            self.hub.publish(to_agent(call.agent), frame)

    async def close(self) -> None:
        await self.tasks.stop()
