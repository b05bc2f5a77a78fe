"""The statistics feature (registered under ``cti.features`` as ``stats``).

- queue_log -> store: on start, after every AMI (re)connect (AmiConnected) and every
  ``tail_interval_s`` while connected (:class:`stats.service.StatsService`).
- call events -> wallboard: CallQueued / CallAnswered / CallHandled / CallAbandoned /
  CallTimedOut update today's figures; those and the agents' call and status events
  push a frame (coalesced, to supervisors: ``{"type": "wallboard", ...}``), with a
  snapshot on connect and a refresh every tail interval (waits grow by themselves).
- bus -> store: CallQueued (caller Uniqueid -> Linkedid link), IvrAbandoned (IVR
  abandons), CallHeld / CallResumed (in-call hold). No AMI is read here (decision 0013).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cti.events import (
    AgentStatusChanged,
    AmiConnected,
    AmiDisconnected,
    CallHeld,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    CallResumed,
    CallRingNoAnswer,
    DomainEvent,
    IvrAbandoned,
)
from cti.features import FeatureContext
from cti.store.tokens import Principal
from cti.web.pages import add_pages
from cti.web.ws import WsHub, to_role
from stats.routes import add_routes
from stats.service import StatsService
from stats.settings import StatsSettings, queue_log_path
from stats.wallboard import WALLBOARD_EVENTS

__all__ = ["StatsFeature"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
RULES_TTL_S = 5.0


class StatsFeature:
    name = "stats"
    sections: tuple[str, ...] = ("stats",)

    def __init__(self) -> None:
        self.service: StatsService | None = None
        self._ctx: FeatureContext | None = None
        self._hub: WsHub | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tail_task: asyncio.Task[None] | None = None
        self._push_handle: asyncio.TimerHandle | None = None
        self._connected = False
        self._rules_at = 0.0

    def setup(self, ctx: FeatureContext) -> None:
        settings = ctx.section("stats", StatsSettings)
        qlog = queue_log_path(ctx.settings, settings)
        self._ctx = ctx
        self._hub = ctx.hub
        self.service = StatsService(ctx.db, ZoneInfo(ctx.settings.site.timezone), qlog, settings)
        self.service.on_ingested = self.schedule_push
        ctx.services.extra["stats"] = self.service
        for kind in WALLBOARD_EVENTS:
            ctx.bus.subscribe(kind, self._on_call_event)
        # agents' states change with these (the ACD's live model follows them too)
        for other in (CallOffered, CallRingNoAnswer, CallLeftQueue, AgentStatusChanged):
            ctx.bus.subscribe(other, self._on_state_event)
        ctx.bus.subscribe(AmiConnected, self._on_connected)
        ctx.bus.subscribe(AmiDisconnected, self._on_disconnected)
        ctx.bus.subscribe(IvrAbandoned, self._on_ivr_abandoned)
        ctx.bus.subscribe(CallHeld, self._on_held)
        ctx.bus.subscribe(CallResumed, self._on_resumed)
        ctx.hub.add_snapshot(self._snapshot)
        add_routes(ctx.app, self.service, self._live_queues)
        add_pages(ctx.app, "/wallboard", STATIC / "wallboard")
        add_pages(ctx.app, "/reports", STATIC / "reports")
        add_pages(ctx.app, "/static/stats", STATIC / "common")

    async def start(self) -> None:
        assert self.service is not None
        await self.service.refresh_rules()
        try:
            await self.service.tail()  # catch up on what happened while we were down
        except Exception:
            log.exception("statistics: initial queue_log ingest failed")

    async def stop(self) -> None:
        if self._push_handle is not None:
            self._push_handle.cancel()
        tasks = list(self._tasks) + ([self._tail_task] if self._tail_task else [])
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self._tail_task = None

    # --- background work ------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("statistics task %s failed", task.get_name(), exc_info=task.exception())

    def _on_connected(self, _: AmiConnected) -> None:
        assert self.service is not None
        self._connected = True
        self._spawn(self.service.tail(), "stats-catch-up")
        if self._tail_task is None or self._tail_task.done():
            self._tail_task = asyncio.create_task(self._tail_loop(), name="stats-tail")
        self.schedule_push()

    def _on_disconnected(self, _: AmiDisconnected) -> None:
        self._connected = False

    async def _tail_loop(self) -> None:
        assert self.service is not None
        while self._connected:
            await asyncio.sleep(self.service.settings.tail_interval_s)
            try:
                await self.service.tail()
            except Exception:
                log.exception("statistics: queue_log tail failed")
            self.schedule_push()  # waits grow, device states change: refresh anyway

    # --- events ---------------------------------------------------------------------------
    def _on_call_event(self, event: DomainEvent) -> None:
        assert self.service is not None
        if isinstance(event, CallQueued) and event.uniqueid:
            self._spawn(self.service.link(event.uniqueid, event.linkedid), "stats-link")
        self.service.wallboard.apply(event, datetime.now(UTC))
        self.schedule_push()

    def _on_state_event(self, _: DomainEvent) -> None:
        self.schedule_push()

    def _on_ivr_abandoned(self, ev: IvrAbandoned) -> None:
        assert self.service is not None
        self._spawn(self.service.ivr_abandoned(ev.linkedid, ev.at, ev.dnis, ev.menu), "stats-ivr")
        self.schedule_push()

    def _on_held(self, ev: CallHeld) -> None:
        assert self.service is not None
        self._spawn(self.service.held(ev.linkedid, ev.uniqueid, ev.at), "stats-hold")
        self.schedule_push()

    def _on_resumed(self, ev: CallResumed) -> None:
        assert self.service is not None
        self._spawn(self.service.resumed(ev.uniqueid, ev.at), "stats-unhold")
        self.schedule_push()

    # --- wallboard ------------------------------------------------------------------------
    def _live_queues(self) -> list[dict[str, Any]]:
        acd = self._ctx.services.extra.get("acd") if self._ctx is not None else None
        live = getattr(acd, "live", None)
        if live is None:
            return []
        snap: list[dict[str, Any]] = live.snapshot(datetime.now(UTC))
        return snap

    def schedule_push(self) -> None:
        """Push a frame soon (coalesced: at most one per ``wallboard_interval_s``)."""
        if self._push_handle is not None or self.service is None:
            return
        loop = asyncio.get_running_loop()
        self._push_handle = loop.call_later(self.service.settings.wallboard_interval_s, self._push)

    def _push(self) -> None:
        self._push_handle = None
        self._spawn(self._push_now(), "stats-wallboard")

    async def _push_now(self) -> None:
        if self.service is None or self._hub is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._rules_at > RULES_TTL_S:  # queue thresholds may have been edited
            self._rules_at = now
            await self.service.refresh_rules()
        self._hub.publish(to_role("supervisor"), self.service.frame(self._live_queues()))

    async def _snapshot(self, principal: Principal) -> list[dict[str, Any]]:
        if self.service is None or principal.role not in ("supervisor", "admin"):
            return []
        return [self.service.frame(self._live_queues())]
