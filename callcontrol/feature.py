"""The call-control feature (registered under ``cti.features`` as ``callcontrol``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from callcontrol.calls import LiveCall, LiveCalls
from callcontrol.control import CallControl
from callcontrol.rejoin import Rejoins
from callcontrol.routes import CallControlRoutes, add_routes
from cti.events import (
    CallAnswered,
    CallCompleted,
    CallDialEnded,
    CallDialing,
    CallHeld,
    CallLegEnded,
    CallQueued,
    CallResumed,
    CallTransferred,
    DomainEvent,
    PhoneRegistered,
)
from cti.features import FeatureContext
from cti.tasks import BackgroundTasks
from cti.web.errors import ApiError

__all__ = ["CallControlFeature"]

log = logging.getLogger(__name__)

EVENTS = (
    CallAnswered, CallCompleted, CallDialEnded, CallDialing, CallHeld, CallLegEnded,
    CallQueued, CallResumed, CallTransferred,
)  # fmt: skip


class CallControlConfig(BaseModel):
    """``[callcontrol]``: how long a caller whose agent's browser phone dropped waits for
    it (hold music) before going back to the queue's front."""

    model_config = ConfigDict(extra="forbid")
    reconnect_grace_s: int = Field(30, ge=5, le=600)


class CallControlFeature:
    name = "callcontrol"
    sections: tuple[str, ...] = ("callcontrol",)

    def __init__(self) -> None:
        self.calls = LiveCalls()
        self.rejoins = Rejoins(self.calls)
        self.control: CallControl | None = None
        self._publish: Callable[[DomainEvent], None] = lambda event: None
        self._tasks = BackgroundTasks("callcontrol")

    def setup(self, ctx: FeatureContext) -> None:
        config = ctx.section("callcontrol", CallControlConfig)
        bus = ctx.bus
        self._publish = bus.publish
        for kind in EVENTS:
            bus.subscribe(kind, self._on_event)
        bus.subscribe(PhoneRegistered, self._on_registered)
        self.control = CallControl(
            ctx.ami, self.calls, ctx.services, bus.publish,
            region=ctx.settings.site.default_region, grace_s=config.reconnect_grace_s,
        )  # fmt: skip
        ctx.services.extra["callcontrol"] = self.control
        add_routes(ctx.app, CallControlRoutes(self.control))

    def _on_event(self, event: DomainEvent) -> None:
        handed_over = self.calls.apply(event)
        for handed in handed_over:
            self._publish(handed)
        answered = [h.linkedid for h in handed_over if h.state == "answered"]
        if isinstance(event, CallAnswered):
            answered.append(event.linkedid)
        for linkedid in answered:  # a browser phone's caller is kept if the leg drops
            call = self.calls.get(linkedid)
            if call is not None and self.control is not None:
                self._tasks.spawn(self.control.arm(call), "arm")
        if isinstance(event, CallLegEnded):  # a browser leg dropped after its phone came back
            call = self.calls.get(event.linkedid)
            if call is not None and self.rejoins.dropped(call, event.at):
                self._reconnect(call)

    def _on_registered(self, event: PhoneRegistered) -> None:
        """A phone registered (again): the callers its dropped browser leg left waiting
        are rung back on it."""
        for call in self.rejoins.registered(event):
            self._reconnect(call)

    def _reconnect(self, call: LiveCall) -> None:
        if self.control is not None:
            self._tasks.spawn(self._reconnect_now(self.control, call), "reconnect")

    @staticmethod
    async def _reconnect_now(control: CallControl, call: LiveCall) -> None:
        try:
            if await control.reconnect(call):
                log.info("callcontrol: %s's phone is back, reconnecting call %s",
                         call.agent, call.linkedid)  # fmt: skip
        except ApiError as exc:
            log.warning("callcontrol: call %s not reconnected to %s: %s",
                        call.linkedid, call.agent, exc)  # fmt: skip

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self._tasks.stop()
