"""After-call work (wrap-up) enforced per queue (decision 0026).

When a call of a queue with ``acw_max_s`` > 0 ends (:class:`CallHandled`), the agent who
took it is paused in every queue with the reason ``wrapup`` (AMI QueuePause on its
interface) and stays so until the call's disposition is saved
(:class:`CallDispositionSaved`, published by the CRM) or ``acw_max_s`` passes; then it
is unpaused. An agent who sets a status meanwhile ends the wrap-up (the status wins).

The wrap-up is measured per call, from the call's end to the unpause, and written to
Asterisk's own queue_log (AMI ``QueueLog``: ``WRAPUPEND`` with the call's queue_log
callid, the agent, ``seconds|reason``), so statistics derive it from queue_log like
every other figure, also in a rebuild. :class:`WrapUpStarted` / :class:`WrapUpEnded`
tell the desktop and the wallboard.

app_queue's ``wrapuptime`` of such queues is at least ``ACW_GUARD_S`` (queues_conf), so
no call reaches the agent between the call's end and the pause.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from acd import store
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.events import (
    AgentStatusChanged,
    CallDispositionSaved,
    CallHandled,
    WrapUpEnded,
    WrapUpStarted,
)
from cti.tasks import BackgroundTasks

if TYPE_CHECKING:
    from acd.service import AcdService

__all__ = ["QUEUE_LOG_EVENT", "WRAPUP_REASON", "WrapUp", "WrapUps"]

log = logging.getLogger(__name__)

#: the pause reason Asterisk shows while an agent is in after-call work
WRAPUP_REASON = "wrapup"
#: the queue_log event the ACD writes when a wrap-up ends (data: seconds|reason)
QUEUE_LOG_EVENT = "WRAPUPEND"
END_REASONS = ("disposition", "timeout", "status", "lost", "next")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class WrapUp:
    agent: str
    interface: str
    linkedid: str
    callid: str  # the queue_log callid (the caller channel's Uniqueid)
    queue: str
    started_at: datetime
    until: datetime

    def view(self, now: datetime) -> dict[str, object]:
        return {
            "agent": self.agent, "linkedid": self.linkedid, "queue": self.queue,
            "started_at": self.started_at.isoformat(), "until": self.until.isoformat(),
            "elapsed_s": round(max(0.0, (now - self.started_at).total_seconds()), 1),
        }  # fmt: skip


class WrapUps:
    """The agents in after-call work now (by agent name)."""

    def __init__(self, service: AcdService) -> None:
        self.service = service
        self.active: dict[str, WrapUp] = {}
        #: linkedids whose disposition was saved (during the call: no wrap-up after it)
        self._dispositioned: dict[str, datetime] = {}
        self._tasks = BackgroundTasks("acd-wrapup")

    def is_active(self, agent: str) -> bool:
        return agent in self.active

    def by_linkedid(self, linkedid: str) -> list[WrapUp]:
        return [w for w in self.active.values() if w.linkedid == linkedid]

    # --- bus handlers (sync: the work runs as a task) ----------------------------------------
    def on_handled(self, event: CallHandled) -> None:
        params = self.service.queue_params(event.queue)
        if params is None or params.acw_max_s <= 0 or not event.member_name:
            return
        if not event.interface or not event.uniqueid:
            return
        self._tasks.spawn(self.begin(event, params.acw_max_s), "begin")

    def on_disposition(self, event: CallDispositionSaved) -> None:
        self._dispositioned.setdefault(event.linkedid, event.at)
        if len(self._dispositioned) > 10_000:  # oldest first (insertion order)
            for key in list(self._dispositioned)[:5_000]:
                del self._dispositioned[key]
        for w in self.by_linkedid(event.linkedid):
            self._tasks.spawn(self.end(w.agent, "disposition"), "end")

    def on_status(self, event: AgentStatusChanged) -> None:
        """The agent (or a supervisor) set a status: that status replaced the pause."""
        w = self.active.get(event.agent)
        if w is not None and event.at >= w.started_at:
            self._tasks.spawn(self.end(w.agent, "status", unpause=False), "end")

    # --- operations --------------------------------------------------------------------------
    async def begin(self, event: CallHandled, max_s: int) -> WrapUp | None:
        svc = self.service
        agent = event.member_name
        async with svc._lock:
            cfg = await store.get_agent(svc.db, agent)
            if cfg is None or cfg["status"] != "available":
                return None  # paused or gone: nothing to hold the agent out of
            iface = cfg["interface"] or event.interface
            now = utcnow()
            started = min(event.at, now)
            w = WrapUp(agent, iface, event.linkedid, event.uniqueid, event.queue, started,
                       now + timedelta(seconds=max_s))  # fmt: skip
            if event.linkedid in self._dispositioned:  # saved during the call: done
                await self._log_end(w, "disposition", started)
                return None
            previous = self.active.pop(agent, None)
            try:
                await svc._pause_checked(iface, True, WRAPUP_REASON)
            except (AmiActionError, NotConnected, TimeoutError) as exc:
                log.warning("wrap-up of %s not enforced: %s", agent, exc)
                return None
            self.active[agent] = w
        if previous is not None:
            await self._log_end(previous, "next", now)
        svc.live.wrapup_began(iface, w.until, started)
        svc.notifier.publish(WrapUpStarted(agent, w.linkedid, started, w.queue, w.until))
        return w

    async def end(self, agent: str, reason: str, *, unpause: bool = True) -> WrapUp | None:
        svc = self.service
        async with svc._lock:
            w = self.active.pop(agent, None)
            if w is None:
                return None
            if unpause:
                cfg = await store.get_agent(svc.db, agent)
                # only when the agent is still "available" (a status set meanwhile wins)
                if cfg is not None and cfg["status"] == "available" and cfg["interface"]:
                    try:
                        await svc._pause_checked(cfg["interface"], False, "")
                    except (AmiActionError, NotConnected, TimeoutError) as exc:
                        log.warning("end of %s's wrap-up: unpause failed: %s", agent, exc)
            now = utcnow()
        await self._log_end(w, reason, now)
        svc.live.wrapup_ended(w.interface, now)
        return w

    async def expire(self, now: datetime) -> None:
        """End the wrap-ups whose maximum passed."""
        for w in [w for w in self.active.values() if w.until <= now]:
            await self.end(w.agent, "timeout")

    async def forget_lost(self, paused_in_asterisk: set[str]) -> None:
        """After a resync: wrap-ups Asterisk no longer holds (it restarted) are over."""
        for agent in [a for a in self.active if a not in paused_in_asterisk]:
            await self.end(agent, "lost", unpause=False)

    async def _log_end(self, w: WrapUp, reason: str, at: datetime) -> None:
        seconds = max(0.0, (at - w.started_at).total_seconds())
        try:
            await self.service.ami.send_action(
                "QueueLog",
                {"Queue": w.queue, "Event": QUEUE_LOG_EVENT, "UniqueId": w.callid,
                 "Interface": w.agent, "Message": f"{seconds:.3f}|{reason}"},
            )  # fmt: skip
        except (AmiActionError, NotConnected, TimeoutError) as exc:
            log.warning("wrap-up of %s (%s) not written to queue_log: %s", w.agent, w.linkedid, exc)
        self.service.notifier.publish(
            WrapUpEnded(w.agent, w.linkedid, at, w.queue, seconds, reason)
        )

    async def stop(self) -> None:
        await self._tasks.stop()
