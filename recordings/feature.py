"""The recordings feature (registered under ``cti.features`` as ``recordings``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cti.features import FeatureContext
from cti.tasks import BackgroundTasks
from cti.web.pages import add_pages
from recordings.api import RecordingsApi
from recordings.config import RecordingsConfig
from recordings.control import Recorder
from recordings.peers import Peers
from recordings.policy import PolicyBook, add_policy_routes
from recordings.processing import Processor, ProcessorMetrics
from recordings.reconcile import reconcile
from recordings.signing import PeerSigner, UrlSigner
from recordings.store import RecordingStore

__all__ = ["RecordingsFeature"]

log = logging.getLogger(__name__)

PAGE_PREFIX = "/supervisor/recordings"


class RecordingsFeature:
    name = "recordings"
    sections: tuple[str, ...] = ("recordings",)

    def __init__(self) -> None:
        self.config: RecordingsConfig | None = None
        self.recorder: Recorder | None = None
        self.processor: Processor | None = None
        self.api: RecordingsApi | None = None
        self._tasks = BackgroundTasks("recordings")
        self.policy: PolicyBook | None = None
        self.node, self.node_url = "", ""
        self.store: RecordingStore | None = None

    def setup(self, ctx: FeatureContext) -> None:
        config = ctx.section("recordings", RecordingsConfig).with_root(
            ctx.settings.asterisk.log_dir
        )
        self.config = config
        store = RecordingStore(ctx.db)
        self.node = ctx.settings.node_name
        self.node_url = ctx.settings.cluster.http_url
        self.store = store
        self.processor = Processor(config, store, node=self.node)
        ProcessorMetrics(self.processor, ctx.registry)
        self.recorder = Recorder(
            config, store, self.processor, ctx.ami, ctx.bus, services=ctx.services,
            hub=ctx.hub, region=ctx.settings.site.default_region,
        )  # fmt: skip
        self.recorder.attach(ctx.bus)
        self.api = RecordingsApi(
            config, store, self.processor, self.recorder,
            UrlSigner(config.url_secret, config.url_ttl_s), ctx.ami,
            Peers(store, PeerSigner(config.url_secret), self.node),
        )  # fmt: skip
        self.api.add_routes(ctx.app)
        self.policy = PolicyBook(config, ctx.db, on_change=self.recorder.publish_policies)
        add_policy_routes(ctx.app, self.policy)
        add_pages(ctx.app, PAGE_PREFIX, Path(__file__).parent / "static")

    async def start(self) -> None:
        assert self.config is not None and self.policy is not None
        await self.policy.load()
        assert self.recorder is not None
        if self.recorder.ami.connected:  # else at the connect (AmiConnected)
            await self.recorder.publish_policies()
        if self.node and self.store is not None:
            if not self.config.url_secret:
                log.warning(
                    "cluster node without [recordings] url_secret: recordings held by other "
                    "nodes cannot be relayed, nor signed playback links used on another node"
                )
            if self.node_url:  # how the other nodes fetch what this node's root holds
                await self.store.announce(self.node, self.node_url)
        if not self.config.root_dir.is_dir():
            log.warning("recordings root %s does not exist (yet)", self.config.root_dir)
        if self.config.reconcile_interval_s > 0:
            self._tasks.spawn(self._loop(), "reconcile")

    async def _loop(self) -> None:
        assert self.config is not None and self.processor is not None
        assert self.recorder is not None
        while True:
            await asyncio.sleep(self.config.reconcile_interval_s)
            try:
                await reconcile(self.processor, live_linkedids=set(self.recorder.calls))
            except Exception:
                log.exception("recordings reconcile failed")

    async def stop(self) -> None:
        await self._tasks.stop()
        if self.recorder is not None:
            await self.recorder.close()
        if self.processor is not None:
            self.processor.close()
        if self.api is not None:
            await self.api.peers.close()
