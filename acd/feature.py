"""The ACD feature: wiring of the live model, the agent service, lost callers, overflow,
owner routing, callbacks, click-to-call, the agent's websocket status and the REST
routes into the daemon (registered under ``cti.features`` as ``acd``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from acd.admin_routes import add_admin_routes
from acd.agent_ws import AgentStatusChannel
from acd.agi_routes import CALLBACK_ROUTE, OWNER_ROUTE, AcdAgi
from acd.callbacks import Callbacks
from acd.live import CALL_EVENTS, HANDLED_EVENTS, LiveModel
from acd.lost import LostCallers
from acd.notifier import AcdNotifier
from acd.outbound import CALL_EVENTS as DIAL_EVENTS
from acd.outbound import Dialer
from acd.outbound_routes import add_outbound_routes
from acd.queue_service import AcdQueueService
from acd.routes import add_routes
from acd.service import AcdService
from acd.settings import AcdSettings
from acd.wrapup import WRAPUP_REASON, WrapUps
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.ami.protocol import Message
from cti.config import Settings
from cti.events import (
    AgentStatusChanged,
    AmiConnected,
    CallAnswered,
    CallCompleted,
    CallDispositionSaved,
    CallHandled,
    IvrCallbackRequested,
    PhoneLocated,
    QueuesChanged,
    WrapUpEnded,
    WrapUpStarted,
)
from cti.features import FeatureContext
from cti.services import Services
from cti.store.db import Database
from cti.tasks import BackgroundTasks

__all__ = ["AcdFeature"]

log = logging.getLogger(__name__)

#: Tries of the queue/member resync after a (re)connect (app_queue may still be loading).
RESYNC_ATTEMPTS = 20


class AcdFeature:
    name = "acd"
    sections: tuple[str, ...] = ("acd",)

    def __init__(self) -> None:
        self.live = LiveModel()
        self.service: AcdService | None = None
        self.lost: LostCallers | None = None
        self.dialer: Dialer | None = None
        self.callbacks: Callbacks | None = None
        self.wrapups: WrapUps | None = None
        self._tasks = BackgroundTasks("acd")
        self._settings = AcdSettings()

    def offer(self, services: Services, db: Database, settings: Settings) -> None:
        """The ACD's queues and agents for other features (cti.services.QueueService)."""
        services.queues = AcdQueueService(db, self.live)

    def setup(self, ctx: FeatureContext) -> None:
        self._settings = s = ctx.section("acd", AcdSettings)
        region = ctx.settings.site.default_region
        notifier = AcdNotifier(ctx.bus)
        self.service = AcdService(ctx.db, ctx.ami, self.live, notifier, s)
        self.service.services = ctx.services  # agents log in on their phones (phones feature)
        self.service.cluster = bool(ctx.settings.cluster.broker_url)
        if self.service.cluster:  # statuses set on other nodes, phones registered elsewhere
            ctx.bus.subscribe(AgentStatusChanged, self._on_any_status, remote=True)
            ctx.bus.subscribe(PhoneLocated, self._on_phone_located, remote=True)
            ctx.bus.subscribe(QueuesChanged, self._on_queues_changed, remote=True)
        self.lost = LostCallers(ctx.db, region, metrics=ctx.workers)
        self.dialer = Dialer(
            ctx.ami, ctx.services, agent_ring_s=s.agent_ring_s, customer_ring_s=s.customer_ring_s
        )
        self.callbacks = Callbacks(ctx.db, ctx.ami, self.dialer, notifier, self.lost, s, region)
        service = self.service
        self.wrapups = wrapups = WrapUps(service)
        service.in_wrapup = wrapups.is_active
        services = ctx.services
        service.prompts = lambda: services.prompts
        self.callbacks.queue_exists = lambda q: service.queue_params(q) is not None
        ctx.ami.add_event_handler(self._on_member_event, events=HANDLED_EVENTS)
        for kind in CALL_EVENTS:
            ctx.bus.subscribe(kind, self.live.apply)
        for kind in DIAL_EVENTS:
            ctx.bus.subscribe(kind, self.dialer.apply)
        ctx.bus.subscribe(CallAnswered, self.callbacks.on_answered)
        ctx.bus.subscribe(AmiConnected, self._on_ami_connected)
        ctx.bus.subscribe(CallCompleted, self.lost.on_completed)
        ctx.bus.subscribe(IvrCallbackRequested, self.callbacks.on_ivr_request)
        status_channel = AgentStatusChannel(ctx.hub, self.service)
        status_channel.register()
        ctx.bus.subscribe(AgentStatusChanged, status_channel.on_changed)
        ctx.bus.subscribe(WrapUpStarted, status_channel.on_wrapup)
        ctx.bus.subscribe(WrapUpEnded, status_channel.on_wrapup)
        ctx.bus.subscribe(CallHandled, wrapups.on_handled)
        ctx.bus.subscribe(CallDispositionSaved, wrapups.on_disposition)
        ctx.bus.subscribe(AgentStatusChanged, wrapups.on_status)
        agi = AcdAgi(self.service, self.callbacks)
        ctx.agi.add_route(OWNER_ROUTE, agi.owner)
        ctx.agi.add_route(CALLBACK_ROUTE, agi.callback)
        ctx.services.extra["acd"] = self.service
        add_routes(ctx.app, self.service)
        add_admin_routes(ctx.app, self.service)
        add_outbound_routes(ctx.app, self.callbacks, region)

    async def start(self) -> None:
        assert self.lost is not None and self.service is not None
        await self.lost.start()
        speaker = self.service.prompts()
        if speaker is not None:  # apply_queues names its announcements (ivr.media_cache)
            speaker.expect("queues")
        await self.service.apply_queues()
        self._tasks.spawn(self._overflow_loop(), "overflow")

    async def stop(self) -> None:
        await self._tasks.stop()
        if self.wrapups is not None:
            await self.wrapups.stop()
        if self.callbacks is not None and self.dialer is not None:
            await self.callbacks.drain()
            await self.dialer.drain()
        if self.lost is not None:
            await self.lost.stop()

    def _on_member_event(self, msg: Message) -> None:
        """AMI queue member events (membership, pause, device state): the ACD's own."""
        if msg.event in HANDLED_EVENTS:
            self.live.handle(msg, datetime.now(UTC))

    def _on_any_status(self, event: AgentStatusChanged) -> None:
        """A status set on any node: this server's memberships follow (idempotent; the
        node that set it has applied it to its own server already)."""
        assert self.service is not None
        if self.service.set_here(event) or not self.service.ami.connected:
            return
        self._tasks.spawn(self.service.reconcile(event.agent), "reconcile")

    def _on_queues_changed(self, event: QueuesChanged) -> None:
        """Queues changed on another node: this node's server gets them now."""
        assert self.service is not None
        if event.origin != self.service.origin and self.service.ami.connected:
            self._tasks.spawn(self._apply_queues(), "queues")

    async def _apply_queues(self) -> None:
        assert self.service is not None
        try:
            await self.service.apply_queues()
        except (NotConnected, TimeoutError, AmiActionError) as exc:
            log.warning("ACD: queues changed elsewhere not applied now: %s", exc)

    def _on_phone_located(self, event: PhoneLocated) -> None:
        """A phone registered on a server (maybe another): the agents on it are members
        there only (the phones feature's map is updated before this runs)."""
        assert self.service is not None
        if self.service.ami.connected:
            self._tasks.spawn(self._reconcile_phone(f"PJSIP/{event.phone}"), "reconcile")

    async def _reconcile_phone(self, iface: str) -> None:
        assert self.service is not None
        for agent in await self.service.agents_on(iface):
            await self.service.reconcile(agent)

    def _on_ami_connected(self, event: AmiConnected) -> None:
        self._tasks.spawn(self._resync(event), "resync")

    async def _resync(self, event: AmiConnected) -> None:
        assert self.service is not None and self.callbacks is not None
        for attempt in range(RESYNC_ATTEMPTS):
            if await self.service.resync() or not self.service.ami.connected:
                break
            await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))  # Asterisk still booting
        if self.wrapups is not None and self.service.ami.connected:
            held = {m.name for q in self.live.queues.values() for m in q.members.values()
                    if m.paused and m.paused_reason == WRAPUP_REASON}  # fmt: skip
            await self.wrapups.forget_lost(held)
        queued = {u for q in self.live.queues.values() for u in q.entries}
        await self.callbacks.resync(event.channels, queued)

    async def _overflow_loop(self) -> None:
        assert self.service is not None and self.callbacks is not None
        ticks = 0
        while True:
            await asyncio.sleep(self._settings.overflow_check_s)
            try:
                await self.service.check_overflow()
                self.live.expire(datetime.now(UTC))
                if self.wrapups is not None:
                    await self.wrapups.expire(datetime.now(UTC))
                ticks += 1
                if ticks * self._settings.overflow_check_s >= 1:  # callbacks once a second
                    ticks = 0
                    await self.callbacks.place_due()
            except Exception:
                log.exception("ACD overflow/callback check failed")
