"""The outbound feature (registered under ``cti.features`` as ``outbound``): its store is
the platform's do-not-call list (``Services.do_not_call``, asked by the dial policy before
every dial), the campaign dialer, and its REST routes. In a cluster each campaign is paced
per Asterisk server, by that server's driver (:class:`cti.cluster.locks.NamedLocks`,
outbound.dialer)."""

from __future__ import annotations

import socket
from pathlib import Path

from cti.cluster.lease import libpq_dsn
from cti.cluster.locks import NamedLocks
from cti.config import Settings
from cti.events import ServerLiveState
from cti.features import FeatureContext
from cti.services import Services
from cti.store.db import Database
from cti.web.pages import add_pages
from outbound.api import OutboundApi
from outbound.dialer import CALL_EVENTS, CampaignDialer, lead_connected
from outbound.store import OutboundStore

__all__ = ["PAGE_PREFIX", "OutboundFeature"]

PAGE_PREFIX = "/outbound"


class OutboundFeature:
    name = "outbound"
    sections: tuple[str, ...] = ("outbound",)

    def __init__(self) -> None:
        self.store: OutboundStore | None = None
        self.dialer: CampaignDialer | None = None
        self.locks: NamedLocks | None = None

    def offer(self, services: Services, db: Database, settings: Settings) -> None:
        """The do-not-call list, from the store alone (commands and the daemon)."""
        self.store = OutboundStore(
            db, settings.site.default_region, lambda: services.customer_directory
        )
        services.do_not_call = self.store

    def setup(self, ctx: FeatureContext) -> None:
        if self.store is None:
            self.offer(ctx.services, ctx.db, ctx.settings)
        assert self.store is not None
        cluster = ctx.settings.cluster
        dsn = libpq_dsn(ctx.settings.database.url)
        if cluster.broker_url and dsn is not None:
            self.locks = NamedLocks(
                dsn, node=cluster.node or socket.gethostname(),
                timeout_s=cluster.lease_timeout_s,
            )  # fmt: skip
        server = ctx.settings.server_name if self.locks else None
        self.dialer = CampaignDialer(self.store, ctx.ami, ctx.services,
                                     timezone=ctx.settings.site.timezone,
                                     gate=self.locks, server=server)  # fmt: skip
        for kind in CALL_EVENTS:
            ctx.bus.subscribe(kind, self.dialer.apply)
        if self.locks is not None:  # agents members on several servers: counted once
            ctx.bus.subscribe(ServerLiveState, self.dialer.on_server_state, remote=True)
        bus = ctx.bus
        self.dialer.on_connected.append(lambda call: bus.publish(lead_connected(call)))
        OutboundApi(self.store, self.dialer, timezone=ctx.settings.site.timezone,
                    services=ctx.services).add_routes(ctx.app)  # fmt: skip
        add_pages(ctx.app, PAGE_PREFIX, Path(__file__).parent / "static")

    async def start(self) -> None:
        if self.dialer is not None:
            await self.dialer.start()

    async def stop(self) -> None:
        if self.dialer is not None:
            await self.dialer.stop()
        if self.locks is not None:
            await self.locks.close()
