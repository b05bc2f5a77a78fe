"""The desktop feature (registered under ``cti.features`` as ``desktop``): screen pops
over the websocket hub, the agent desktop page at ``/desktop/`` and its small API."""

from __future__ import annotations

from pathlib import Path

from cti.features import FeatureContext
from cti.web.pages import add_pages
from desktop.config import DesktopConfig
from desktop.notifier import DesktopNotifier
from desktop.routes import DesktopRoutes, add_routes
from desktop.service import PopService

__all__ = ["STATIC", "DesktopFeature"]

STATIC = Path(__file__).parent / "static"


class DesktopFeature:
    name = "desktop"
    sections: tuple[str, ...] = ("desktop",)

    def __init__(self) -> None:
        self.pops: PopService | None = None
        self.notifier: DesktopNotifier | None = None

    def setup(self, ctx: FeatureContext) -> None:
        config = ctx.section("desktop", DesktopConfig)
        self.notifier = DesktopNotifier(ctx.bus, ctx.hub)
        services = ctx.services
        self.pops = PopService(
            config, self.notifier, lambda: services.customer_directory,
            region=ctx.settings.site.default_region,
        )  # fmt: skip
        self.pops.attach(ctx.bus)
        ctx.hub.add_snapshot(self.pops.snapshot)
        ctx.hub.add_command("pop.dismiss", self.pops.dismiss)
        add_routes(ctx.app, DesktopRoutes(ctx.db, self.pops, ctx.settings.site.timezone))
        add_pages(ctx.app, "/desktop", STATIC)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        if self.pops is not None:
            await self.pops.stop()
