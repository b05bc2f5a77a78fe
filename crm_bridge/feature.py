"""The daemon's CRM feature: store + directory + interaction writer + webhooks + pool job.

Register as ``crm = "crm_bridge.feature:CrmFeature"`` in the ``cti.features`` group.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crm_bridge.admin import CrmSettings, add_admin_routes
from crm_bridge.api import CrmServices, add_routes
from crm_bridge.config import CrmConfig
from crm_bridge.conversions import StoreSalesPipeline
from crm_bridge.directory import ExternalCrmLookup, StoreDirectory
from crm_bridge.interactions import Interactions, InteractionWriter
from crm_bridge.opportunities import Opportunities, StoreReminders
from crm_bridge.pool import Pool
from crm_bridge.recipients import StoreRecipients
from crm_bridge.sales_api import add_sales_routes
from crm_bridge.store import CrmStore
from crm_bridge.webhooks import WebhookDispatcher
from crm_bridge.workspace_api import add_workspace_routes
from cti.cluster import orphans
from cti.cluster.lease import libpq_dsn
from cti.cluster.locks import NamedLocks
from cti.events import CallDispositionSaved, RecordingStopped
from cti.features import FeatureContext
from cti.tasks import BackgroundTasks
from cti.web.pages import add_pages

log = logging.getLogger(__name__)
#: the customer pages (/crm/): customers, customer, opportunities, dashboard
STATIC = Path(__file__).parent / "static"


class CrmFeature:
    name = "crm"
    sections: tuple[str, ...] = ("crm",)

    def __init__(self) -> None:
        self.services: CrmServices | None = None
        self.writer: InteractionWriter | None = None
        self._tasks = BackgroundTasks("crm")
        self.settings: CrmSettings | None = None

    def setup(self, ctx: FeatureContext) -> None:
        config = ctx.section("crm", CrmConfig)
        store = CrmStore(ctx.db, ctx.settings.site.default_region)
        cluster = ctx.settings.cluster
        dsn = libpq_dsn(ctx.settings.database.url)
        locks = None  # in a cluster: the webhooks' journal held, dead nodes' adopted
        if cluster.broker_url and dsn is not None:
            locks = NamedLocks(
                dsn, node=ctx.settings.node_name, timeout_s=cluster.lease_timeout_s,
                check_s=orphans.EVERY_S,
            )  # fmt: skip
        webhooks = WebhookDispatcher(
            ctx.db, config, metrics=ctx.workers, node=ctx.settings.node_name, locks=locks
        )
        bus = ctx.bus

        def notify(event: str, data: dict[str, Any]) -> object:
            if event == "interaction.updated" and data.get("disposition") and data.get("linkedid"):
                # ends the agent's after-call work (acd.wrapup, decision 0026)
                bus.publish(
                    CallDispositionSaved(
                        str(data["linkedid"]), datetime.now(UTC), str(data["disposition"]),
                        str(data.get("agent") or ""),
                    )
                )  # fmt: skip
            return webhooks.publish(event, data)

        interactions = Interactions(store, notify=notify)
        pool = Pool(store, notify=webhooks.publish, claims_per_day=config.pool_claims_per_day)
        opportunities = Opportunities(pool, config, webhooks.publish)
        external = ExternalCrmLookup(config.external_lookup)
        directory = StoreDirectory(store, external if external.enabled else None)
        self.services = CrmServices(config, store, interactions, pool, webhooks, directory)
        self.writer = InteractionWriter(interactions, metrics=ctx.workers)
        self.writer.attach(ctx.bus)
        ctx.bus.subscribe(RecordingStopped, self._on_recording)
        webhooks.attach(ctx.bus)
        ctx.services.customer_directory = directory
        ctx.services.customer_recipients = StoreRecipients(store)
        ctx.services.sales = StoreSalesPipeline(pool)
        ctx.services.reminders = StoreReminders(pool, config.dormant_days)
        add_routes(ctx.app, self.services)
        add_workspace_routes(ctx.app)
        add_sales_routes(ctx.app, opportunities)
        add_pages(ctx.app, "/crm", STATIC)
        self.settings = CrmSettings(ctx.db, config, webhooks)
        add_admin_routes(ctx.app, self.settings)

    def _on_recording(self, event: RecordingStopped) -> None:
        # the id's API path, not the file: transcoding renames files and retention
        # deletes them, while /api/v1/recordings/{id} is what plays (access-checked)
        ref = (
            f"/api/v1/recordings/{event.recording_id}"
            if event.recording_id is not None
            else event.filename
        )
        if self.writer is not None:
            self.writer.attach_recording(event.linkedid, ref)

    async def start(self) -> None:
        assert self.services is not None and self.writer is not None
        assert self.settings is not None
        await self.settings.load()  # the console's dispositions and webhook receivers
        await self.writer.start()
        await self.services.webhooks.start()
        self._tasks.spawn(self._pool_loop(), "pool")

    async def _pool_loop(self) -> None:
        assert self.services is not None
        config = self.services.config
        while True:
            try:
                moved = await self.services.pool.return_dormant(config.pool_after_days)
                if moved:
                    log.info("pool job: %d customers returned to the pool", len(moved))
            except Exception:
                log.exception("pool job failed")
            await asyncio.sleep(config.pool_check_interval_s)

    async def stop(self) -> None:
        await self._tasks.stop()
        if self.writer is not None:
            await self.writer.stop()
        if self.services is not None:
            await self.services.webhooks.stop()
            await self.services.directory.close()

    def status(self) -> dict[str, Any]:
        if self.services is None:
            return {}
        return {"webhooks": self.services.webhooks.status()}
