"""The statistics feature (registered under ``cti.features`` as ``stats``).

- queue_log -> store: on start, after every AMI (re)connect (AmiConnected) and every
  ``tail_interval_s`` while connected (:class:`stats.service.StatsService`).
- call events -> wallboard: CallQueued / CallAnswered / CallHandled / CallAbandoned /
  CallTimedOut update today's figures; those and the agents' call and status events
  push a frame (coalesced, to supervisors: ``{"type": "wallboard", ...}``), with a
  snapshot on connect and a refresh every tail interval (waits grow by themselves).
- bus -> store: CallQueued (caller Uniqueid -> Linkedid link), IvrAbandoned (IVR
  abandons), CallHeld / CallResumed (in-call hold), written in order by one queue worker
  (cti.worker, "stats-facts"). On a graceful stop it drains for at most
  ``FACTS_GRACE_S`` with the store open; the facts left then are kept in the store
  (cti.pending) and written first at the next start: none is lost (their writes are
  idempotent: insert-or-ignore, a hold closed once). The queue_log figures need no such
  thing: they are re-read from queue_log at start, from the stored cursor. No AMI is
  read here (decision 0016); the ACD is reached only through
  ``cti.services.QueueService`` (thresholds, agents' time, the live queues).
- In a cluster (``[cluster] broker_url``): while this node drives its Asterisk server it
  publishes the server's live queues (``ServerLiveState``: on every change, coalesced
  with the frames, and every ``tail_interval_s``; ``live=False`` when it lets go), and
  every node's wallboard shows every server's (:mod:`cti.cluster.live`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cti.bus import EventBus
from cti.cluster.live import ServerBoard
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
    ServerLiveState,
    WrapUpEnded,
    WrapUpStarted,
)
from cti.features import FeatureContext
from cti.pending import PendingStore
from cti.store.db import is_data_error
from cti.store.tokens import Principal
from cti.tasks import BackgroundTasks
from cti.web.pages import add_pages
from cti.web.ws import WsHub, to_role
from cti.worker import QueueWorker
from stats.routes import add_routes
from stats.service import StatsService, scoped_frame
from stats.settings import StatsSettings, stats_records
from stats.wallboard import WALLBOARD_EVENTS

__all__ = ["StatsFeature"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
RULES_TTL_S = 5.0
#: Facts the worker takes at once: consecutive links among them share one transaction.
FACTS_BATCH = 32
FACTS_GRACE_S = 5.0  # a stop's drain of the facts worker; the rest is kept (cti.pending)


@dataclass(frozen=True, slots=True)
class Fact:
    """A bus fact for the statistics store, written in arrival order (a hold's end after
    its start, a link before both): ``kind`` is link | held | resumed | ivr."""

    kind: str
    linkedid: str
    uniqueid: str = ""
    at: datetime | None = None
    dnis: str = ""
    menu: str = ""


class StatsFeature:
    name = "stats"
    sections: tuple[str, ...] = ("stats",)

    def __init__(self) -> None:
        self.service: StatsService | None = None
        self._hub: WsHub | None = None
        self._tasks = BackgroundTasks("stats")
        self._facts: QueueWorker[Fact] | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._push_handle: asyncio.TimerHandle | None = None
        self._connected = False
        self._rules_at = 0.0
        self._bus: EventBus | None = None
        self._publish_due = False  # in a cluster: this server's live state changed

    def setup(self, ctx: FeatureContext) -> None:
        settings = ctx.section("stats", StatsSettings)
        records = stats_records(ctx.settings, settings, ctx.db)
        self._hub = ctx.hub
        services = ctx.services
        self.service = StatsService(
            ctx.db, ZoneInfo(ctx.settings.site.timezone), records, settings,
            queues=lambda: services.queues,
        )  # fmt: skip
        self.service.on_ingested = self.schedule_push
        self._facts = QueueWorker(
            "stats-facts", self._write_facts, permanent=is_data_error, batch_size=FACTS_BATCH,
            describe=lambda f: f"{f.kind} of {f.linkedid or f.uniqueid}", metrics=ctx.workers,
            keep=PendingStore(ctx.db, Fact),
        )  # fmt: skip
        ctx.services.extra["stats"] = self.service
        for kind in WALLBOARD_EVENTS:
            ctx.bus.subscribe(kind, self._on_call_event)
        # agents' states change with these (the ACD's live model follows them too)
        self.service.wallboard.default_region = ctx.settings.site.default_region
        for other in (CallOffered, CallRingNoAnswer, CallLeftQueue, AgentStatusChanged,
                      WrapUpStarted, WrapUpEnded):  # fmt: skip
            ctx.bus.subscribe(other, self._on_state_event)
        ctx.bus.subscribe(AmiConnected, self._on_connected)
        ctx.bus.subscribe(AmiDisconnected, self._on_disconnected)
        ctx.bus.subscribe(IvrAbandoned, self._on_ivr_abandoned)
        ctx.bus.subscribe(CallHeld, self._on_held)
        ctx.bus.subscribe(CallResumed, self._on_resumed)
        ctx.hub.add_snapshot(self._snapshot)
        if ctx.settings.cluster.broker_url:
            self._bus = ctx.bus
            self.service.board = ServerBoard()
            self.service.own_server = ctx.settings.server_name
            ctx.bus.subscribe(ServerLiveState, self._on_server_state, remote=True)
        add_routes(ctx.app, self.service)
        add_pages(ctx.app, "/wallboard", STATIC / "wallboard")
        add_pages(ctx.app, "/reports", STATIC / "reports")
        add_pages(ctx.app, "/static/stats", STATIC / "common")

    async def start(self) -> None:
        assert self.service is not None and self._facts is not None
        await self._facts.resume()  # what the last stop left over, first
        self._facts.start()
        if self.service.board is not None:
            self._tasks.spawn(self._cluster_loop(), "cluster-live")
        await self.service.refresh_rules()
        try:
            await self.service.tail()  # catch up on what happened while we were down
            if self.service.wallboard.day is None:  # nothing new: the day so far, still
                await self.service.load_today()
        except Exception:
            log.exception("statistics: initial queue_log ingest failed")

    async def stop(self) -> None:
        if self._push_handle is not None:
            self._push_handle.cancel()
        await self._tasks.stop()
        self._tail_task = None
        if self._facts is not None:
            await self._facts.close(grace_s=FACTS_GRACE_S)

    # --- background work ------------------------------------------------------------------
    def _on_connected(self, _: AmiConnected) -> None:
        assert self.service is not None
        self._connected = self.service.driving = True
        self._publish_due = True
        self._tasks.spawn(self.service.tail(), "catch-up")
        if self._tail_task is None or self._tail_task.done():
            self._tail_task = self._tasks.spawn(self._tail_loop(), "tail")
        self.schedule_push()

    def _on_disconnected(self, ev: AmiDisconnected) -> None:
        self._connected = False
        if self.service is not None and self.service.driving:
            self.service.driving = False
            if self._bus is not None:  # the other nodes stop showing this server now
                self._bus.publish(ServerLiveState(self.service.own_server, ev.at, live=False))
        self.schedule_push()

    async def _cluster_loop(self) -> None:
        """Republish this server's state while driving (it expires otherwise) and refresh
        the frame (other servers' states expire, waits grow) even on a standby."""
        assert self.service is not None
        while True:
            await asyncio.sleep(self.service.settings.tail_interval_s)
            self.schedule_push(publish=self._connected)

    def _on_server_state(self, ev: ServerLiveState) -> None:
        if self.service is not None and self.service.board is not None:
            if self.service.board.put(ev, datetime.now(UTC)):
                self.schedule_push(publish=False)

    async def _tail_loop(self) -> None:
        assert self.service is not None
        while self._connected:
            await asyncio.sleep(self.service.settings.tail_interval_s)
            try:
                await self.service.tail()
            except Exception:
                log.exception("statistics: queue_log tail failed")
            self.schedule_push()  # waits grow, device states change: refresh anyway

    async def _write_facts(self, facts: Sequence[Fact]) -> None:
        assert self.service is not None
        svc = self.service
        links: list[tuple[str, str]] = []
        for f in facts:
            if f.kind == "link":  # consecutive links: one transaction
                links.append((f.uniqueid, f.linkedid))
                continue
            if links:
                await svc.links(links)
                links = []
            if f.kind == "ivr" and f.at is not None:
                await svc.ivr_abandoned(f.linkedid, f.at, f.dnis, f.menu)
            elif f.kind == "held" and f.at is not None:
                await svc.held(f.linkedid, f.uniqueid, f.at)
            elif f.kind == "resumed" and f.at is not None:
                await svc.resumed(f.uniqueid, f.at)
        if links:
            await svc.links(links)

    def _fact(self, fact: Fact) -> None:
        if self._facts is not None:
            self._facts.submit(fact)

    # --- events ---------------------------------------------------------------------------
    def _on_call_event(self, event: DomainEvent) -> None:
        assert self.service is not None
        if isinstance(event, CallQueued) and event.uniqueid:
            self._fact(Fact("link", event.linkedid, event.uniqueid))
        self.service.wallboard.apply(event, datetime.now(UTC))
        self.schedule_push()

    def _on_state_event(self, _: DomainEvent) -> None:
        self.schedule_push()

    def _on_ivr_abandoned(self, ev: IvrAbandoned) -> None:
        self._fact(Fact("ivr", ev.linkedid, at=ev.at, dnis=ev.dnis, menu=ev.menu))
        self.schedule_push()

    def _on_held(self, ev: CallHeld) -> None:
        self._fact(Fact("held", ev.linkedid, ev.uniqueid, ev.at))
        self.schedule_push()

    def _on_resumed(self, ev: CallResumed) -> None:
        self._fact(Fact("resumed", ev.linkedid, ev.uniqueid, ev.at))
        self.schedule_push()

    # --- wallboard ------------------------------------------------------------------------
    def schedule_push(self, *, publish: bool = True) -> None:
        """Push a frame soon (coalesced: at most one per ``wallboard_interval_s``);
        ``publish``: in a cluster, this node's server state changed (send it too)."""
        self._publish_due = self._publish_due or publish
        if self._push_handle is not None or self.service is None:
            return
        loop = asyncio.get_running_loop()
        self._push_handle = loop.call_later(self.service.settings.wallboard_interval_s, self._push)

    def _push(self) -> None:
        self._push_handle = None
        self._tasks.spawn(self._push_now(), "wallboard")

    async def _push_now(self) -> None:
        if self.service is None or self._hub is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._rules_at > RULES_TTL_S:  # queue thresholds may have been edited
            self._rules_at = now
            await self.service.refresh_rules()
        if self._publish_due and self._bus is not None and self.service.driving:
            self._bus.publish(self._live_state())
        self._publish_due = False
        if not self._hub.has_audience(to_role("supervisor")):
            return  # nobody watches: a supervisor who connects gets a snapshot built then
        frame = await self.service.frame()
        await asyncio.sleep(0)  # its encoding and sending: one more step of its own
        # each supervisor's cut of it: a supervisor scoped to teams gets their queues only
        self._hub.publish_each(to_role("supervisor"), lambda who: scoped_frame(frame, who))

    def _live_state(self) -> ServerLiveState:
        assert self.service is not None
        interval = self.service.settings.tail_interval_s
        return ServerLiveState(
            self.service.own_server, datetime.now(UTC), tuple(self.service.own_live_queues()),
            ttl_s=max(5.0, 3 * interval + 1),
        )  # fmt: skip

    async def _snapshot(self, principal: Principal) -> list[dict[str, Any]]:
        if self.service is None or principal.role not in ("supervisor", "admin"):
            return []
        return [scoped_frame(await self.service.frame(), principal)]
