"""The call-control feature (registered under ``cti.features`` as ``callcontrol``)."""

from __future__ import annotations

from collections.abc import Callable

from callcontrol.calls import LiveCalls
from callcontrol.control import CallControl
from callcontrol.routes import CallControlRoutes, add_routes
from cti.events import (
    CallAnswered,
    CallCompleted,
    CallDialEnded,
    CallDialing,
    CallHeld,
    CallLegEnded,
    CallResumed,
    CallTransferred,
    DomainEvent,
)
from cti.features import FeatureContext

__all__ = ["CallControlFeature"]

EVENTS = (
    CallAnswered, CallCompleted, CallDialEnded, CallDialing, CallHeld, CallLegEnded,
    CallResumed, CallTransferred,
)  # fmt: skip


class CallControlFeature:
    name = "callcontrol"
    sections: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.calls = LiveCalls()
        self.control: CallControl | None = None
        self._publish: Callable[[DomainEvent], None] = lambda event: None

    def setup(self, ctx: FeatureContext) -> None:
        bus = ctx.bus
        self._publish = bus.publish
        for kind in EVENTS:
            bus.subscribe(kind, self._on_event)
        self.control = CallControl(
            ctx.ami, self.calls, ctx.services, bus.publish,
            region=ctx.settings.site.default_region,
        )  # fmt: skip
        ctx.services.extra["callcontrol"] = self.control
        add_routes(ctx.app, CallControlRoutes(self.control))

    def _on_event(self, event: DomainEvent) -> None:
        for handed in self.calls.apply(event):
            self._publish(handed)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
