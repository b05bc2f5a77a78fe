"""The ACD feature: wiring of the live model, the agent service, lost callers, overflow
and the REST routes into the daemon (registered under ``cti.features`` as ``acd``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from acd.live import HANDLED_EVENTS, LiveModel
from acd.lost import LostCallers
from acd.notifier import AcdNotifier
from acd.routes import add_routes
from acd.service import AcdService
from acd.settings import AcdSettings
from cti.ami.protocol import Message
from cti.events import AmiConnected, CallCompleted
from cti.features import FeatureContext

__all__ = ["AcdFeature"]

log = logging.getLogger(__name__)


class AcdFeature:
    name = "acd"
    sections: tuple[str, ...] = ("acd",)

    def __init__(self) -> None:
        self.live = LiveModel()
        self.service: AcdService | None = None
        self.lost: LostCallers | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._settings = AcdSettings()

    def setup(self, ctx: FeatureContext) -> None:
        self._settings = ctx.section("acd", AcdSettings)
        self.service = AcdService(ctx.db, ctx.ami, self.live, AcdNotifier(ctx.bus), self._settings)
        self.lost = LostCallers(ctx.db, ctx.settings.site.default_region)
        ctx.ami.add_event_handler(self._on_ami_event)
        ctx.bus.subscribe(AmiConnected, self._on_ami_connected)
        ctx.bus.subscribe(CallCompleted, self.lost.on_completed)
        ctx.services.extra["acd"] = self.service
        add_routes(ctx.app, self.service)

    async def start(self) -> None:
        assert self.lost is not None and self.service is not None
        await self.lost.start()
        await self.service.apply_queues()
        self._tasks.append(asyncio.create_task(self._overflow_loop(), name="acd-overflow"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.lost is not None:
            await self.lost.stop()

    def _on_ami_event(self, msg: Message) -> None:
        if msg.event in HANDLED_EVENTS:
            self.live.handle(msg, datetime.now(UTC))

    def _on_ami_connected(self, _: AmiConnected) -> None:
        assert self.service is not None
        self._tasks.append(asyncio.create_task(self.service.resync(), name="acd-resync"))
        self._tasks = [t for t in self._tasks if not t.done()]

    async def _overflow_loop(self) -> None:
        assert self.service is not None
        while True:
            await asyncio.sleep(self._settings.overflow_check_s)
            try:
                await self.service.check_overflow()
                self.live.expire(datetime.now(UTC))
            except Exception:
                log.exception("ACD overflow check failed")
