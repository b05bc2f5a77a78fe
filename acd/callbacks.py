"""Callback requests that keep the caller's place in the queue.

A request (from a waiting caller's key, the overflow offer, or the IVR's callback
option) is stored first (it survives restarts), then represented in its queue by a
placeholder call (:meth:`acd.outbound.Dialer.place_slot`) entering at the caller's
position, so callers who came later are not served before it. When an agent answers
the placeholder, the agent is offered the callback (:class:`CallbackOffered`) and the
placeholder dials the customer into the same conversation. An unreached customer is
retried ``callback_attempts`` times, ``callback_retry_s`` apart; then the request stays
open as ``unreached`` until someone dials it by hand or closes it.

Every step that dials asks the dial policy (through :class:`acd.outbound.Dialer`): the
request itself (a caller presenting a premium-rate number who asks to be called back is
told "sorry" and stays in the queue), each placeholder, the dial of the customer when an
agent answered, and a dial by hand. A refused request is closed at once with the reason
(outcome ``refused_<code>``: refused_type, refused_dnc...), never retried; only an agent's
own daily limit leaves it open for someone else.
See docs/decisions/0010-acd-routing.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from acd import callback_store as cbs
from acd.lost import LostCallers, caller_key
from acd.notifier import AcdNotifier
from acd.outbound import Dialer, DialRefused, OutboundCall, is_own_call
from acd.settings import AcdSettings
from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.events import CallAnswered, ChannelInfo, IvrCallbackRequested
from cti.phone import normalize
from cti.store.db import Database
from cti.tasks import BackgroundTasks

__all__ = ["CallbackError", "CallbackRefused", "Callbacks"]

log = logging.getLogger(__name__)

_AMI_ERRORS = (NotConnected, TimeoutError, AmiActionError)


class CallbackError(ValueError):
    """The request cannot be taken (message meant for the API user)."""


class CallbackRefused(CallbackError):
    """The dial policy refused the number (``code``: the policy's code)."""

    def __init__(self, refused: DialRefused) -> None:
        super().__init__(str(refused))
        self.code = refused.code
        self.decision = refused.decision


def utcnow() -> datetime:
    return datetime.now(UTC)


class Callbacks:
    def __init__(
        self,
        db: Database,
        ami: AmiClient,
        dialer: Dialer,
        notifier: AcdNotifier,
        lost: LostCallers,
        settings: AcdSettings,
        region: str,
    ) -> None:
        self.db = db
        self.ami = ami
        self.dialer = dialer
        self.notifier = notifier
        self.lost = lost
        self.settings = settings
        self.region = region
        self._lock = asyncio.Lock()
        self._tasks = BackgroundTasks("acd-callbacks")
        #: set by the feature: whether a queue is configured (a placeholder for a queue
        #: that does not exist would be queued again forever)
        self.queue_exists: Callable[[str], bool] | None = None
        dialer.on_result(self._on_result)

    # --- requests ---------------------------------------------------------------------------
    async def request(
        self, *, number: str, queue: str, source: str, linkedid: str = "",
        caller_name: str = "", position: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """Store a request and queue its placeholder now (at ``position``; 0 = the end).
        Raises CallbackError for a number that cannot be called back."""
        e164 = normalize(number, self.region)
        if not e164:
            raise CallbackError("no number to call back")
        if self.queue_exists is not None and not self.queue_exists(queue):
            raise CallbackError(f"no queue {queue[:64]!r}")
        now = utcnow()
        refused: DialRefused | None = None
        try:
            e164 = await self.dialer.allowed(e164, purpose="callback")
        except DialRefused as exc:
            refused = exc
        row = await cbs.create(
            self.db, number=e164, caller_key=caller_key(e164, self.region),
            caller_name=caller_name, queue=queue, source=source, at=now, linkedid=linkedid,
            position=position,
        )  # fmt: skip
        if refused is not None:  # kept, closed, for the supervisors to see
            await self._refused(int(row["id"]), refused, ("waiting",))
            raise CallbackRefused(refused)
        log.info("callback %s requested (%s) for queue %s", row["id"], source, queue)
        await self._place(row)
        return row

    async def _refused(
        self, callback_id: int, refused: DialRefused, statuses: tuple[str, ...]
    ) -> None:
        """Close a request the dial policy refuses: with the reason, never retried."""
        now = utcnow()
        await cbs.update(
            self.db, callback_id, statuses, status="done", outcome=f"refused_{refused.code}"[:32],
            closed_at=now, call_linkedid="", next_attempt_at=None, updated_at=now,
        )  # fmt: skip
        log.warning("callback %s closed: the dial policy refuses it (%s)", callback_id, refused)

    def on_ivr_request(self, event: IvrCallbackRequested) -> None:
        """The IVR's callback option (bus handler: synchronous, so spawn)."""

        async def go() -> None:
            try:
                await self.request(
                    number=event.number, queue=event.queue, source="ivr", linkedid=event.linkedid
                )
            except CallbackError as exc:
                log.warning("IVR callback for %s not taken: %s", event.linkedid, exc)

        self._spawn(go())

    async def _place(self, row: Mapping[str, Any]) -> None:
        """Queue the placeholder of a ``waiting`` request (it stays waiting when Asterisk
        is away; the worker tries again)."""
        cid = int(row["id"])
        linkedid = self.dialer.slot_linkedid(cid)
        # recorded first: the placeholder may be answered before Originate returns
        if not await cbs.update(
            self.db, cid, ("waiting",), status="queued", call_linkedid=linkedid,
            next_attempt_at=None, updated_at=utcnow(),
        ):  # fmt: skip
            return  # closed or taken meanwhile
        try:
            await self.dialer.place_slot(
                linkedid, cid, row["queue"], row["number"], int(row["position"]),
                self.settings.callback_max_wait_s,
            )  # fmt: skip
        except DialRefused as exc:
            await self._refused(cid, exc, ("queued",))
        except _AMI_ERRORS as exc:
            log.warning("callback %s: placeholder not queued: %s", cid, exc)
            await cbs.update(
                self.db, cid, ("queued",), status="waiting", call_linkedid="",
                next_attempt_at=utcnow() + timedelta(seconds=self.settings.callback_retry_s),
            )  # fmt: skip

    # --- an agent answered a placeholder (CallAnswered) ------------------------------------------
    def on_answered(self, event: CallAnswered) -> None:
        call = self.dialer.calls.get(event.linkedid)
        if call is None or not call.placeholder or call.offered:
            return
        call.offered = True
        call.agent = event.member_name or event.interface
        self._spawn(self._offered(call))

    async def _offered(self, call: OutboundCall) -> None:
        assert call.callback_id is not None
        now = utcnow()
        ok = await cbs.update(
            self.db, call.callback_id, ("queued",), status="dialing", agent=call.agent[:64],
            updated_at=now,
        )  # fmt: skip
        row = await cbs.get(self.db, call.callback_id)
        if not ok or row is None:
            await self._hangup(call.linkedid)
            return
        if call.agent:  # unknown when it was answered while the daemon was away
            self.notifier.callback_offered(call.agent, now, row)
        self.notifier.outbound_started(call.agent, now, call.linkedid, row["number"], "callback",
                                       call.callback_id)  # fmt: skip
        try:
            await self.dialer.connect_slot(call)
        except DialRefused as exc:
            async with self._lock:
                await self._refused(call.callback_id, exc, ("dialing",))
            await self._hangup(call.linkedid)
        except _AMI_ERRORS as exc:
            log.warning("callback %s: could not dial the customer: %s", call.callback_id, exc)

    # --- results ---------------------------------------------------------------------------------
    async def _on_result(self, call: OutboundCall, result: str, at: datetime) -> None:
        if result == "answered":
            await self.lost.close_key(
                caller_key(call.number, self.region), at, call.linkedid,
                "called_back" if call.kind == "callback" else "click_to_call",
            )  # fmt: skip
        if call.callback_id is None:
            return
        cid = call.callback_id
        async with self._lock:
            row = await cbs.get(self.db, cid)
            if row is None or row["call_linkedid"] != call.linkedid:
                return  # superseded (dialled by hand, closed)
            if result == "answered":
                await cbs.update(
                    self.db, cid, cbs.OPEN, status="done", outcome="reached", reached_at=at,
                    closed_at=at, agent=call.agent[:64] or row["agent"], updated_at=at,
                )  # fmt: skip
                log.info("callback %s: customer reached", cid)
            elif result == "unanswered":
                attempts = int(row["attempts"]) + 1
                if attempts >= self.settings.callback_attempts:
                    values: dict[str, Any] = {"status": "unreached", "next_attempt_at": None}
                else:
                    values = {"status": "waiting", "next_attempt_at": at + timedelta(
                        seconds=self.settings.callback_retry_s)}  # fmt: skip
                await cbs.update(
                    self.db, cid, ("queued", "dialing"), attempts=attempts, call_linkedid="",
                    outcome="no_answer", updated_at=at, **values,
                )  # fmt: skip
                log.info("callback %s: customer not reached (attempt %d)", cid, attempts)
            else:  # the placeholder left the queue unanswered, or the agent did not answer
                await cbs.update(
                    self.db, cid, ("queued", "dialing"), status="waiting", call_linkedid="",
                    position=0, updated_at=at,
                    next_attempt_at=at + timedelta(seconds=self.settings.callback_retry_s),
                )  # fmt: skip

    # --- agents' actions ------------------------------------------------------------------
    async def dial(self, callback_id: int, agent: str, interface: str) -> OutboundCall:
        """An agent takes a request and dials it now (its placeholder leaves the queue)."""
        async with self._lock:
            row = await cbs.get(self.db, callback_id)
            if row is None:
                raise LookupError(callback_id)
            if row["status"] not in ("waiting", "queued", "unreached"):
                raise CallbackError(f"callback is {row['status']}")
            try:
                call = await self.dialer.dial_via_agent(
                    agent, interface, row["number"], kind="callback", callback_id=callback_id
                )
            except DialRefused as exc:
                if exc.code != "limit":  # the number, not this agent's limit: closed
                    await self._refused(callback_id, exc, (row["status"],))
                    if row["call_linkedid"]:
                        await self._hangup(row["call_linkedid"])
                raise CallbackRefused(exc) from None
            old = row["call_linkedid"]
            ok = await cbs.update(
                self.db, callback_id, (row["status"],), status="dialing", agent=agent[:64],
                call_linkedid=call.linkedid, next_attempt_at=None, updated_at=utcnow(),
            )  # fmt: skip
            if not ok:
                await self._hangup(call.linkedid)
                raise CallbackError("callback changed meanwhile")
        if old:
            await self._hangup(old)
        now = utcnow()
        self.notifier.outbound_started(agent, now, call.linkedid, row["number"], "callback",
                                       callback_id)  # fmt: skip
        return call

    async def close(self, callback_id: int, outcome: str, by: str) -> bool:
        async with self._lock:
            row = await cbs.get(self.db, callback_id)
            if row is None or row["status"] == "done":
                return False
            now = utcnow()
            ok = await cbs.update(
                self.db, callback_id, cbs.OPEN, status="done", outcome=outcome[:32],
                closed_at=now, agent=row["agent"] or by[:64], updated_at=now,
            )  # fmt: skip
        if ok and row["call_linkedid"] and row["status"] == "queued":
            await self._hangup(row["call_linkedid"])
        return ok

    async def _hangup(self, linkedid: str) -> None:
        try:
            await self.dialer.hangup(linkedid)
        except _AMI_ERRORS as exc:
            log.debug("hangup of %s: %s", linkedid, exc)

    # --- the worker and restarts ------------------------------------------------------------
    async def place_due(self) -> None:
        """Queue the placeholders of waiting requests whose time has come."""
        if not self.ami.connected:
            return
        now = utcnow()
        for row in await cbs.with_status(self.db, ("waiting",)):
            due = row["next_attempt_at"]
            if due is None or datetime.fromisoformat(due) <= now:
                await self._place(row)

    async def resync(self, channels: Sequence[ChannelInfo], queued: set[str]) -> None:
        """After an AMI (re)connect: pick up placeholders and calls still in Asterisk;
        requests whose call vanished meanwhile are queued again. ``channels``: the
        platform's channel snapshot (AmiConnected); ``queued``: Uniqueids waiting in
        queues now."""
        alive = {c.linkedid for c in channels}
        for row in await cbs.with_status(self.db, ("queued", "dialing")):
            lid = row["call_linkedid"]
            cid = int(row["id"])
            if lid and lid in alive:
                if lid not in self.dialer.calls:
                    call = OutboundCall(
                        lid, "callback", row["number"], row["agent"], cid,
                        placeholder=lid.startswith("cti-cb-"),
                        dialled=row["status"] == "dialing",
                    )  # fmt: skip
                    self.dialer.calls[lid] = call
                    if call.placeholder and row["status"] == "queued" and lid + "-2" not in queued:
                        # an agent answered it while we were away: dial the customer now
                        call.offered = True
                        self._spawn(self._offered(call))
                continue
            await cbs.update(
                self.db, cid, ("queued", "dialing"), status="waiting", call_linkedid="",
                next_attempt_at=utcnow(), updated_at=utcnow(),
            )  # fmt: skip
        await self.dialer.adopt(channels)  # click-to-call and by-hand dials still up

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro, "job")

    async def drain(self) -> None:
        """Let running jobs (a request being stored, a customer being dialled) finish."""
        await self._tasks.drain(timeout=10)
        await self._tasks.stop()

    @staticmethod
    def ignores(linkedid: str) -> bool:
        return is_own_call(linkedid)
