"""The live side: which answered calls exist now, MixMonitor start/stop/pause per policy.

Built from the platform's call events (no AMI is read here, decision 0013): CallAnswered
(the agent answered: start recording on the caller's channel when the queue's policy is
``always``), CallDialEnded ANSWER of a call the system placed for an agent
(OutboundCallStarted), CallHandled and CallLegEnded (stop, then process the file), and
the channel snapshot of AmiConnected (calls whose caller vanished meanwhile end).
Operations on one call are serialised by a per-call lock; file work happens afterwards
in :class:`recordings.processing.Processor`.

Queue calls are recorded by Asterisk itself (decision 0027): the dialplan's
``[cti-rec-arm]`` starts MixMonitor (option ``b``: audio only while bridged) on the
caller's channel before each Queue() of a queue whose policy is ``always``, read from
the globals ``CTI_REC_<queue>`` / ``CTI_REC_DEFAULT`` that :meth:`Recorder.publish_policies`
sets (at every AMI connect and on every console change, so the next call follows it).
The recording therefore begins at the bridge, with no daemon round trip. At the answer
the daemon **adopts** it (:class:`~cti.events.CallRecordingArmed`, or the channel
variable ``CTI_REC_PATH`` when that event has not arrived): same row, pause/resume,
stop and processing as its own, no MixMonitor sent. A queue call that was not armed
(globals unset, a callback placeholder) and calls the system places for an agent are
recorded by the daemon as before (MixMonitor sent at the answer). An armed caller who
is never answered leaves a header-only file, removed when the caller's leg ends.

The answer is the hot path (decision 0027): MixMonitor is sent first, with a file name
made from Asterisk ids alone, and nothing waits for the database before it. The
metadata row (with the customer, looked up in the directory's cache), the
"processing" update at the stop and the "not recorded" rows are written afterwards by
:meth:`Recorder._write`, which retries a database that is failing or locked with
backoff for as long as it takes (a value the database refuses is given up after a few
attempts, logged): a failing side step stops neither the recording nor its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.events import (
    AmiConnected,
    CallAnswered,
    CallCallerKept,
    CallDialEnded,
    CallHandled,
    CallLegEnded,
    CallRecordingArmed,
    CallTransferred,
    OutboundCallStarted,
    RecordingStarted,
    RecordingStopped,
)
from cti.phone import normalize
from cti.services import Services
from cti.store.db import is_data_error
from cti.store.models import clip_text
from cti.tasks import BackgroundTasks
from cti.web.ws import WsHub, to_agent, to_role
from recordings import audio
from recordings.config import Policy, RecordingsConfig
from recordings.models import Recording
from recordings.naming import PathRefused, parse_name, recording_path, resolve_inside
from recordings.processing import Processor
from recordings.store import CLAIM_STALE_S, RecordingStore

__all__ = ["CHANNEL_RE", "ControlError", "LiveCall", "Recorder", "Segment"]

log = logging.getLogger(__name__)

# An Asterisk channel name as it may appear in MixMonitor / ChanSpy arguments.
CHANNEL_RE = re.compile(r"[A-Za-z0-9/@._;:+\-]{1,128}")
# a queue name that may become part of a dialplan variable's name
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
#: the customer's name on the row is worth this much waiting (the cache answers in µs)
LOOKUP_TIMEOUT_S = 1.0
#: a slower lookup goes on this much longer; the row gets the customer when it ends
LATE_LOOKUP_S = 30.0
#: armed recordings remembered (callers waiting in queues); the oldest is forgotten first
MAX_ARMED = 20_000
#: a write the database refuses for its values is given up after this many attempts
DATA_ATTEMPTS = 3
RETRY_MAX_S = 5.0
#: how often a stopped recording that another process is processing is looked at again
SETTLE_POLL_S = 1.0
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ControlError(Exception):
    """An operation that cannot be done now (HTTP 409 / 404 with this message)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Segment:
    relpath: str
    started_at: datetime
    mixmonitor_id: str = ""
    paused_since: datetime | None = None
    paused_s: float = 0.0
    row_id: int | None = None  # known once the row is written (after MixMonitor)
    row_written: asyncio.Event = field(default_factory=asyncio.Event)


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
    other_uniqueid: str = ""  # the agent's leg (or the dialled party's)
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
        # calls transferred to someone else: recorded on until the caller hangs up
        self._transferred: set[str] = set()
        # recordings the dialplan started on a queued caller's channel, by its Uniqueid
        self._armed: dict[str, CallRecordingArmed] = {}
        self.tasks = BackgroundTasks("recordings")
        #: recordings adopted from the dialplan / started by the daemon (counters)
        self.adopted = 0
        self.started = 0

    # --- call events ------------------------------------------------------------------------
    def attach(self, bus: EventBus) -> None:
        bus.subscribe(OutboundCallStarted, self.on_outbound)
        bus.subscribe(CallAnswered, self.on_answered)
        bus.subscribe(CallDialEnded, self.on_dial_ended)
        bus.subscribe(CallHandled, self.on_handled)
        bus.subscribe(CallLegEnded, self.on_leg_ended)
        bus.subscribe(CallTransferred, self.on_transferred)
        bus.subscribe(CallCallerKept, self.on_transferred)
        bus.subscribe(AmiConnected, self.on_connected)
        bus.subscribe(CallRecordingArmed, self.on_armed)

    # --- the dialplan's side --------------------------------------------------------------
    async def publish_policies(self, *queues: str) -> None:
        """The policies in force as dialplan globals ``CTI_REC_DEFAULT`` and
        ``CTI_REC_<queue>`` (every configured queue, and ``queues``: by default every
        queue Asterisk has), read by ``[cti-rec-arm]`` at the next Queue(). A failure is
        logged: the daemon then records at the answer as before (nothing is armed, or
        it adopts what was)."""
        try:
            if not queues:  # (re)connect: every queue Asterisk has (no stale value stays)
                _, items = await self.ami.send_list_action("QueueSummary")
                queues = tuple(
                    m.get("Queue", "") for m in items if m.get("Event") == "QueueSummary"
                )
            names = sorted(q for q in {*self.config.queues, *queues} if QUEUE_NAME.fullmatch(q))
            values = [("CTI_REC_DEFAULT", self.config.policy)]
            values += [(f"CTI_REC_{q}", self.config.policy_for(q)) for q in names]
            for variable, value in values:
                await self.ami.send_action("Setvar", {"Variable": variable, "Value": value})
        except Exception as exc:
            log.warning("recording policies not given to the dialplan: %r", exc)

    def on_armed(self, event: CallRecordingArmed) -> None:
        """The dialplan started (or stopped) MixMonitor on a queued caller's channel."""
        if not event.armed:
            armed = self._armed.pop(event.uniqueid, None)
            live = self.calls.get(event.linkedid)
            in_use = (
                live is not None
                and live.segment is not None
                and (live.segment.relpath == event.path)
            )
            if armed is not None and not in_use:
                self.tasks.spawn(self._discard_unused(armed.path), "discard")
            return
        if not self._valid_armed(event):
            log.warning("armed recording of %s ignored: unusable path", event.linkedid)
            return
        if len(self._armed) >= MAX_ARMED:
            self._armed.pop(next(iter(self._armed)))
        self._armed[event.uniqueid] = event

    @staticmethod
    def _valid_armed(event: CallRecordingArmed) -> bool:
        try:
            _, _, segment = parse_name(event.path)
        except PathRefused:
            return False
        return segment == 0

    async def _discard_unused(self, relpath: str) -> None:
        """An armed recording that never had its caller bridged: a header-only file."""
        try:
            path = resolve_inside(self.config.root_dir, relpath)
            if await asyncio.to_thread(lambda: path.exists() and audio.is_empty_file(path)):
                await asyncio.to_thread(path.unlink, True)
        except (PathRefused, OSError) as exc:
            log.debug("unused recording %s left to reconcile: %r", relpath, exc)

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

    def on_transferred(self, event: CallTransferred | CallCallerKept) -> None:
        """The agent transferred the call, or its caller is kept if the agent's browser
        phone drops: the recording (on the caller's leg) goes on with the next party (or
        the same agent again), until the caller's leg ends."""
        if event.linkedid in self.calls:
            self._transferred.add(event.linkedid)

    def on_handled(self, event: CallHandled) -> None:
        if event.reason == "transfer" or event.linkedid in self._transferred:
            return
        if event.linkedid in self.calls:
            self.tasks.spawn(self._end(event.linkedid, stop=True), "end")

    def on_leg_ended(self, event: CallLegEnded) -> None:
        uid = event.uniqueid
        lid = self._by_uniqueid.get(uid, "")
        armed = self._armed.pop(uid, None)
        if armed is not None and not lid:  # armed, never answered: nothing was recorded
            self.tasks.spawn(self._discard_unused(armed.path), "discard")
        if uid in self._outbound:  # the agent never answered, or nobody was dialled
            self._outbound.pop(uid, None)
        if lid in self._transferred:
            live = self.calls.get(lid)
            if live is not None and uid != live.caller_uniqueid:
                return  # an agent's leg of a transferred call: the caller talks on
            self._transferred.discard(lid)
        if lid in self.calls:
            # the agent's leg went: the caller's channel (and MixMonitor on it) may go
            # on in the dialplan, so stop it explicitly; the caller's own hang-up closes it
            caller_gone = uid == self.calls[lid].caller_uniqueid
            self.tasks.spawn(self._end(lid, stop=not caller_gone), "end")

    def on_connected(self, event: AmiConnected) -> None:
        """After an AMI (re)connect: the policies go to the dialplan; calls whose caller
        channel vanished while we were away are ended (their MixMonitor closed with the
        channel)."""
        self.tasks.spawn(self.publish_policies(), "policies")
        if event.reconnect and self._armed:
            here = {c.uniqueid for c in event.channels}
            for uid in [u for u in self._armed if u not in here]:
                del self._armed[uid]
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
            call.other_uniqueid = other_uniqueid
            self._by_uniqueid[other_uniqueid] = call.linkedid
        self.tasks.spawn(self._answered(call), "answered")

    async def _answered(self, call: LiveCall) -> None:
        async with call.lock:
            armed = self._armed.pop(call.caller_uniqueid, None)
            if armed is None and call.queue and call.policy != "never" and not call.ended:
                armed = await self._armed_by_variable(call)
            if armed is not None and not call.ended:
                if call.policy == "never":  # a stale global armed it: the daemon's word wins
                    await self._refuse_armed(call, armed)
                else:
                    self._adopt(call, armed)
            elif call.policy == "always" and not call.ended:
                with contextlib.suppress(ControlError):  # logged, and a "failed" row
                    await self._start(call, mode="always")
        self._push(call, "recording.live")

    async def _armed_by_variable(self, call: LiveCall) -> CallRecordingArmed | None:
        """The recording the dialplan armed on the caller's channel, read from the channel
        (its CtiRecording event may not have arrived yet: AMI order is not guaranteed)."""
        values: dict[str, str] = {}
        for variable in ("CTI_REC_PATH", "CTI_REC_ID"):
            try:
                resp = await self.ami.send_action(
                    "Getvar", {"Channel": call.caller_channel, "Variable": variable}
                )
            except Exception as exc:
                log.debug("Getvar %s on %s: %s", variable, call.caller_channel, exc)
                return None
            values[variable] = str(resp.get("Value", "") or "")
            if not values["CTI_REC_PATH"]:
                return None
        armed = CallRecordingArmed(
            call.linkedid, call.answered_at, call.caller_uniqueid, call.caller_channel,
            call.queue, values["CTI_REC_PATH"], values.get("CTI_REC_ID", ""),
        )  # fmt: skip
        return armed if self._valid_armed(armed) else None

    def _adopt(self, call: LiveCall, armed: CallRecordingArmed) -> None:
        """The recording Asterisk started at the bridge becomes this call's segment."""
        call.segments = max(call.segments, 1)  # the dialplan's file is segment 0
        seg = Segment(armed.path, call.answered_at, armed.mixmonitor_id)
        call.segment = seg
        self.adopted += 1
        self.tasks.spawn(
            self._write_row(
                call, seg, mode="always", started_at=call.answered_at, path=armed.path,
                format="wav", status="recording",
            ),
            "row",
        )  # fmt: skip

    async def _refuse_armed(self, call: LiveCall, armed: CallRecordingArmed) -> None:
        headers = {"Channel": call.caller_channel}
        if armed.mixmonitor_id:
            headers["MixMonitorID"] = armed.mixmonitor_id
        try:
            await self.ami.send_action("StopMixMonitor", headers)
        except Exception as exc:
            log.warning("armed recording of %s not stopped: %s", call.linkedid, exc)
            return
        self.tasks.spawn(self._discard_unused(armed.path), "discard")

    async def _lookup_customer(self, call: LiveCall, bound: float = LOOKUP_TIMEOUT_S) -> bool:
        """The caller's customer on ``call``, waiting at most ``bound``. True when the
        lookup is still running then (the directory goes on loading, decision 0027)."""
        directory = self.services.customer_directory if self.services else None
        e164 = normalize(call.caller_num, self.region) if call.caller_num else ""
        if directory is None or not e164 or call.customer_id is not None:
            return False
        try:
            card = await asyncio.wait_for(directory.lookup_number(e164), bound)
        except TimeoutError:
            return True
        except Exception as exc:  # the row goes without the name; the call is recorded
            log.warning("no customer for the recording of %s: %r", call.linkedid, exc)
            return False
        if card is not None:
            call.customer_id, call.customer_name = card.customer_id, card.name
        return False

    async def _late_customer(self, call: LiveCall, row_id: int) -> None:
        """The row was written before the lookup ended (issue #19: under load a lookup took
        seconds): the customer goes on the row when it comes, within LATE_LOOKUP_S."""
        if await self._lookup_customer(call, LATE_LOOKUP_S):
            log.warning("no customer for the recording of %s: lookup timed out", call.linkedid)
            return
        if call.customer_id is None:
            return
        customer_id, name = call.customer_id, clip_text(call.customer_name, 128)
        await self._write(
            "customer", call.linkedid,
            lambda: self.store.update(row_id, customer_id=customer_id, customer_name=name),
        )  # fmt: skip

    async def _write(self, what: str, linkedid: str, op: Callable[[], Awaitable[T]]) -> T | None:
        """``op()`` until it succeeds: a database that is down or locked is retried with
        capped backoff for as long as it takes; values it refuses, DATA_ATTEMPTS times."""
        delay, failures = 0.05, 0
        while True:
            try:
                return await op()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if is_data_error(exc) and failures >= DATA_ATTEMPTS:
                    log.error("recording %s of %s given up: %r", what, linkedid, exc)
                    return None
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "recording %s of %s retried (%d): %r", what, linkedid, failures, exc
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _row_values(self, call: LiveCall, **values: Any) -> dict[str, Any]:
        return {
            "linkedid": call.linkedid, "uniqueid": call.caller_uniqueid,
            "channel": call.caller_channel, "agent": call.agent, "queue": call.queue,
            "caller_num": call.caller_num, "customer_id": call.customer_id,
            "customer_name": call.customer_name, "node": self.processor.node, **values,
        }  # fmt: skip

    # --- operations (AMI-driven and REST) ------------------------------------------------
    async def _start(self, call: LiveCall, *, mode: str) -> Segment:
        now = self.clock()
        relpath = recording_path(call.linkedid, now, call.segments)
        call.segments += 1
        try:
            resp = await self.ami.send_action(
                "MixMonitor", {"Channel": call.caller_channel, "File": relpath}
            )
        except Exception as exc:
            log.warning("MixMonitor for %s refused: %s", call.linkedid, exc)
            self.tasks.spawn(
                self._write_row(
                    call, None, mode=mode, started_at=now, path=relpath, format="wav",
                    status="failed", reason=f"MixMonitor: {exc}",
                ),
                "row",
            )  # fmt: skip
            raise ControlError(f"recording could not start: {exc}") from None
        seg = Segment(relpath, now, resp.get("MixMonitorID", "") or "")
        call.segment = seg
        self.started += 1
        self.tasks.spawn(
            self._write_row(
                call, seg, mode=mode, started_at=now, path=relpath, format="wav",
                status="recording",
            ),
            "row",
        )  # fmt: skip
        return seg

    async def _write_row(self, call: LiveCall, seg: Segment | None, **values: Any) -> None:
        """The row of a segment MixMonitor already records (or of one it refused)."""
        try:
            late = await self._lookup_customer(call)
            row = await self._write(
                "row", call.linkedid, lambda: self.store.add(**self._row_values(call, **values))
            )
            if row is not None and late:
                self.tasks.spawn(self._late_customer(call, row.id), "customer")
            if row is None or seg is None:
                return
            seg.row_id = row.id
            self.bus.publish(
                RecordingStarted(
                    call.linkedid, seg.started_at, call.caller_uniqueid, seg.relpath,
                    recording_id=row.id,
                )
            )  # fmt: skip
        finally:
            if seg is not None:
                seg.row_written.set()

    async def wait_row(self, seg: Segment, timeout: float) -> int | None:
        """The segment's row id, waiting at most ``timeout`` for it to be written."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seg.row_written.wait(), timeout)
        return seg.row_id

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
        self.tasks.spawn(self._stopped(seg, call, now), "process")

    async def _stopped(self, seg: Segment, call: LiveCall, ended_at: datetime) -> None:
        await seg.row_written.wait()
        row_id = seg.row_id
        if row_id is None:
            return  # the row was given up (logged); reconcile reports the file
        paused_s = round(seg.paused_s, 3)

        async def update() -> Recording | None:
            return await self.store.update(
                row_id, status="processing", ended_at=ended_at, paused_s=paused_s
            )

        if await self._write("stop", call.linkedid, update) is not None:
            await self._process(row_id, call)

    async def _process(self, row_id: int, call: LiveCall) -> None:
        outcome = await self.processor.finish(row_id)
        row = outcome.row
        if outcome.status == "busy":  # a reconcile got to it first: its result, when done
            row = await self._settled(row_id)
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

    async def _settled(self, row_id: int) -> Recording | None:
        """The row once whoever holds its processing claim wrote the result (None when
        that takes longer than a claim may be held)."""
        deadline = asyncio.get_running_loop().time() + CLAIM_STALE_S
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(SETTLE_POLL_S)
            row = await self.store.get(row_id)
            if row is None or row.status not in ("recording", "processing"):
                return row
        return None

    async def _end(self, linkedid: str, *, stop: bool) -> None:
        self._transferred.discard(linkedid)  # (bounded: a call's end forgets it)
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
                self.tasks.spawn(
                    self._write_row(
                        call, None, mode=call.policy, started_at=call.answered_at,
                        ended_at=self.clock(), status="not_recorded", reason=reason, format="",
                    ),
                    "row",
                )  # fmt: skip
        self.calls.pop(linkedid, None)
        for uid in (call.caller_uniqueid, call.other_uniqueid):  # not a scan of every call
            if self._by_uniqueid.get(uid) == linkedid:
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
                started = await self._start(call, mode="on_demand")
                await self.wait_row(started, 5.0)  # the answer shows the recording's id
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
        await self.store.close()
