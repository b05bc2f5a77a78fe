"""`cti run`: wires AMI -> call model -> bus -> recorder, the web app and the features.

Ordering that matters:
- the store is migrated before anything writes to it;
- on every AMI (re)connect the model is resynced from CoreShowChannels and calls that ended
  while we were away are recovered from Asterisk's CDR/queue_log files, then published once;
- on SIGTERM: the HTTP side stops, AMI events and FastAGI calls stop being taken, the
  calls that hung up are finalised and published, then the features drain their queue
  workers (AMI actions and the store still available), AMI closes, the recorder drains,
  and the store closes last. Each worker's guarantee for what it cannot drain in its
  bound is in its module's docstring.

In a cluster (``[cluster] broker_url``, decision 0028) the bus crosses nodes and a lease
(:mod:`cti.cluster.lease`) decides when this node drives its Asterisk server: a standby
serves HTTP and websockets only; on acquiring the lease it starts FastAGI and AMI, and the
first connect recovers from the last call end recorded for that server, by any node (or
from when it was first watched: cti.calls.watchmark), as after a restart; on losing it,
it lets go of AMI and FastAGI.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select

from cti.agi.server import FastAgiServer
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.ami.screen import REASONS as AMI_DROP_REASONS
from cti.bus import EventBus
from cti.calls import recovery, watchmark
from cti.calls.model import EVENT_CLASSES, HANDLED_EVENTS, Call, CallModel, channel_info
from cti.calls.recorder import CallRecorder
from cti.cluster.lease import ServerLease, libpq_dsn
from cti.config import ConfigError, Settings
from cti.dialpolicy import StoreDialPolicy
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    CallCompleted,
    CallRecord,
    IvrCallbackRequested,
)
from cti.features import (
    Feature,
    FeatureContext,
    check_sections,
    load_features,
    offer_services,
)
from cti.gcpause import GcPolicy
from cti.records import make_source
from cti.records.cdr_watch import CdrWatch
from cti.services import Services
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import Call as CallRow
from cti.tasks import BackgroundTasks
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from cti.worker import WorkerMetrics

log = logging.getLogger(__name__)
RECORDER_GRACE_S = 10.0  # the call recorder's drain at a stop; the rest is kept (cti.pending)

EXPIRE_EVERY_S = 0.2
GAPPED_CDR_WAIT_S = 0.5
#: recovery reads the CDR from this long before the last call end recorded (one node: the
#: node's own clock stamped that end; a cluster: another node's, which may have handled
#: its events late under load, so more, and calls already recorded by any node are skipped)
RECOVERY_MARGIN = timedelta(seconds=2)
RECOVERY_MARGIN_CLUSTER = timedelta(seconds=60)
GAPPED_CDR_ATTEMPTS = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ami_connected = Gauge("cti_ami_connected", "1 while the AMI session is up", registry=r)
        self.ami_events = Counter("cti_ami_events", "AMI events received", registry=r)
        self.ami_reconnects = Counter("cti_ami_reconnects", "AMI reconnects", registry=r)
        self.calls_active = Gauge("cti_calls_active", "calls in progress", registry=r)
        self.calls_completed = Counter(
            "cti_calls_completed", "calls finished", ["disposition", "source"], registry=r
        )
        self.calls_recovered = Counter(
            "cti_calls_recovered", "calls completed from CDR/queue_log after downtime", registry=r
        )
        self.ami_dropped = Counter(
            "cti_ami_dropped", "AMI messages dropped as malformed or not Asterisk's own",
            ["reason"], registry=r,
        )  # fmt: skip
        for reason in AMI_DROP_REASONS:
            self.ami_dropped.labels(reason)


def make_bus(settings: Settings, registry: CollectorRegistry) -> EventBus:
    """The in-process bus, or with ``[cluster] broker_url`` the bus across nodes."""
    c = settings.cluster
    if not c.broker_url:
        return EventBus()
    from cti.cluster.natsbus import NatsBus

    # subjects of the stream's own (JetStream refuses a second stream whose subjects
    # overlap): two clusters on one broker, e.g. staging beside production or two test
    # runs, each name their stream; the default keeps the subjects it always had
    prefix = "cti.events" if c.stream == "CTI_EVENTS" else f"cti.{c.stream}"
    return NatsBus(
        c.broker_url, node=settings.node_name, stream=c.stream,
        subject_prefix=prefix, buffer_max=c.buffer_max, max_age_s=c.retention_s,
        registry=registry,
    )  # fmt: skip


def make_lease(
    settings: Settings,
    on_acquired: Callable[[], Awaitable[None]],
    on_lost: Callable[[], Awaitable[None]],
) -> ServerLease | None:
    """In a cluster: the lease on this node's Asterisk server (None: one node, it drives)."""
    c = settings.cluster
    if not c.broker_url:
        return None
    dsn = libpq_dsn(settings.database.url)
    if dsn is None:
        raise ConfigError(
            "cluster.broker_url is set but database.url is not PostgreSQL: the nodes of a "
            "cluster share one PostgreSQL (SQLite is for a single node)"
        )
    return ServerLease(
        dsn, settings.server_name, node=settings.node_name,
        on_acquired=on_acquired, on_lost=on_lost, check_s=c.lease_check_s,
        timeout_s=c.lease_timeout_s,
    )  # fmt: skip


def _complete(record: CallRecord) -> bool:
    """Recovery found the call's CDR, and its talk time when it was answered in a queue."""
    talk_known = record.talk_s is not None or not (record.queue and record.answered_at)
    return record.source == "cdr" and talk_known


class Daemon:
    def __init__(
        self, settings: Settings, *, demo: bool = False, features: list[Feature] | None = None
    ) -> None:
        """``features``: None loads every registered feature (entry points)."""
        self.settings = settings
        self.features = load_features() if features is None else features
        check_sections(settings, self.features)
        self.services = Services()
        self.metrics = Metrics()
        self.bus = make_bus(settings, self.metrics.registry)
        # in a cluster, the lease says when this node drives its Asterisk server
        self.lease = make_lease(settings, self._drive, self._stop_driving)
        self.model = CallModel(inbound_contexts=settings.asterisk.inbound_contexts)
        self.db = Database.from_url(settings.database.url)
        self.services.dial_policy = StoreDialPolicy(
            settings.dial, region=settings.site.default_region, timezone=settings.site.timezone,
            db=self.db, services=self.services,
        )  # fmt: skip
        self.workers = WorkerMetrics(self.metrics.registry)
        self.recorder = CallRecorder(
            self.db, default_region=settings.site.default_region, metrics=self.workers
        )
        # the server's own records: its files, or the store's tables (cti.records)
        self.records = make_source(settings, self.db)
        self.recovery = recovery.Recovery(self.records)
        a = settings.ami
        self.ami = AmiClient(
            a.host, a.port, a.username, a.secret,
            events=EVENT_CLASSES, ping_interval=a.ping_interval,
            action_timeout=a.action_timeout, backoff_max=a.reconnect_max_s,
            on_drop=lambda reason: self.metrics.ami_dropped.labels(reason).inc(),
        )  # fmt: skip
        self.hub = WsHub(self.db, allowed_origins=settings.http.allowed_origins)
        # Asterisk writes its CDRs into the store: the driver keeps cdr_pgsql writing
        self.cdr_watch = (
            CdrWatch(self.ami, self.records) if settings.asterisk.records == "postgresql" else None
        )
        self.demo_enabled = demo
        self._runner: web.AppRunner | None = None
        self._tasks = BackgroundTasks("cti")
        self._disconnected_at: datetime | None = None
        self._startup_since: datetime | None = None
        self._connected_once = False
        self._stopping = asyncio.Event()
        self.http_port: int | None = None
        self.draining = False
        self._accepting = True  # AMI events are turned into domain events (until stop)
        self._model_synced = False  # the call model reflects Asterisk (AMI up, resynced)
        g = settings.agi
        self.agi = FastAgiServer(
            g.host, g.port, command_timeout=g.command_timeout_s, media_timeout=g.media_timeout_s,
            channel_alive=self._channel_alive, allow=g.allow,
        )  # fmt: skip

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(upgrade, self.settings.database.url)
        await self.db.warm()
        await self.bus.start()
        self._startup_since = await self._last_recorded_end()
        self.recorder.attach(self.bus)
        await self.recorder.start()
        self.bus.subscribe(CallCompleted, self._count_completed)
        self.bus.subscribe(IvrCallbackRequested, self._on_callback_requested)
        if self.cdr_watch is not None:
            self.bus.subscribe(CallCompleted, self.cdr_watch.on_completed)
            self._tasks.spawn(self.cdr_watch.run(), "cdr-watch")
        self.ami.add_event_handler(self._on_ami_event, events=HANDLED_EVENTS)
        self.ami.add_connected_handler(self._on_connected)
        self.ami.add_disconnected_handler(self._on_disconnected)
        app = create_app(
            WebDeps(
                db=self.db,
                live=self,
                registry=self.metrics.registry,
                hub=self.hub,
                vendor_dir=self.settings.http.vendor_dir,
                http=self.settings.http,
                auth=self.settings.auth,
                site_name=self.settings.site.name,
            )
        )
        ctx = FeatureContext(
            settings=self.settings, bus=self.bus, db=self.db, ami=self.ami, app=app,
            registry=self.metrics.registry, services=self.services, calls=self.model,
            hub=self.hub, agi=self.agi, workers=self.workers,
        )  # fmt: skip
        offer_services(self.features, self.services, self.db, self.settings)
        for feature in self.features:
            feature.setup(ctx)
        await self._start_http(app)
        if self.lease is None:  # in a cluster the driver of the server serves its FastAGI
            await self.agi.start()
        for feature in self.features:
            await feature.start()
        self._tasks.spawn(self._expire_loop(), "expire")
        if self.lease is None:
            await self.ami.start()
        else:
            self._tasks.spawn(self.lease.run(), "lease")
        if self.demo_enabled:
            from cti.demo import DemoTraffic

            self._tasks.spawn(DemoTraffic(self.ami).run(), "demo")
        log.info("cti daemon started", extra={"http_port": self.http_port})

    async def stop(self) -> None:
        log.info("stopping")
        self.draining = True  # /readyz: 503, the load balancer sends no one new
        await self.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # 1. no new work: no AMI events (the lease, the demo, the expiry loop end first),
        # no FastAGI calls
        self._accepting = False
        await self._tasks.stop()
        await self.agi.stop()
        # 2. calls that hung up (closing) are final now: their records reach every
        # subscriber while the features' workers still take them
        for event in self.model.expire(utcnow() + timedelta(days=1)):
            self.bus.publish(event)
        # 3. the features drain their workers (the store and AMI actions still there)
        for feature in reversed(self.features):
            try:
                await feature.stop()
            except Exception:
                log.exception("feature %s failed to stop", feature.name)
        await self.ami.close()
        # 4. the recorder drains (what is left is kept for the next start), then the
        # store closes
        await self.recorder.close(grace_s=RECORDER_GRACE_S)
        await self.bus.close()
        await self.db.dispose()
        log.info("stopped")

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        # collect and freeze what loading the features built before serving anyone: done
        # after start (HTTP up, a standby ready), the full collection stalled the loop of a
        # node a load balancer already sent desktops to (seconds on a loaded machine)
        gc_policy = GcPolicy(quiet=lambda: not self.model.calls)
        gc_policy.install()
        await self.start()
        self._tasks.spawn(gc_policy.run(), "gc")
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    async def _start_http(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.http.port

    async def _last_recorded_end(self, system_name: str | None = None) -> datetime | None:
        """The last call end recorded (of this Asterisk server's calls when its
        ``systemname`` is known: their Uniqueids start with it; else of any call). None of
        its calls recorded yet: the server's watch mark bounds the window (cti.calls.watchmark)."""
        query = select(func.max(CallRow.ended_at))
        if system_name:
            query = query.where(CallRow.linkedid.startswith(system_name + "-", autoescape=True))
        async with self.db.session() as session:
            value = (await session.execute(query)).scalar()
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    # --- AMI ---------------------------------------------------------------------------------
    def _on_ami_event(self, msg: Message) -> None:
        if not self._accepting:  # stopping: the calls' ends come from recovery at start
            return
        self.metrics.ami_events.inc()
        for event in self.model.handle(msg, utcnow()):
            self.bus.publish(event)

    def _on_disconnected(self, reason: str) -> None:
        now = utcnow()
        if self._disconnected_at is None:
            self._disconnected_at = now
        self.metrics.ami_connected.set(0)
        self._model_synced = False
        self.model.link_lost()
        log.warning("AMI disconnected: %s", reason)
        self.bus.publish(AmiDisconnected(now, reason))

    async def _advertise_agi(self) -> None:
        """The server's FastAGI calls come to this node, the one driving it: CTI_AGI is
        set to ``agi.advertise`` (nodes on other hosts; a standby that takes over)."""
        host = self.settings.agi.advertise
        if not host:
            return
        url = f"agi://{f'[{host}]' if ':' in host else host}:{self.agi.port}"
        try:
            await self.ami.send_action("Setvar", {"Variable": "CTI_AGI", "Value": url})
        except Exception:  # the resync below sees the link's state; the generated one stays
            log.exception("could not set CTI_AGI to %s", url)

    async def _drive(self) -> None:
        """The lease is ours: drive the server as after a restart (resync, recovery since
        the last call end recorded for it, by whichever node)."""
        self._connected_once = False
        self._disconnected_at = None
        await self.agi.start()
        await self.ami.start()

    async def _stop_driving(self) -> None:
        """The lease is lost (or about to be another node's): let go of the server."""
        await self.ami.close()
        await self.agi.stop()
        self._model_synced = False

    async def _on_connected(self, reconnect: bool) -> None:
        if not self._connected_once:
            if self.lease is not None:
                self._startup_since = await self._last_recorded_end(self.ami.system_name)
            # a server none of whose calls is recorded yet: from when it was first watched
            server = self.ami.system_name or self.settings.server_name
            mark = await watchmark.first_watched(self.db, server, utcnow())
            self._startup_since = watchmark.window_start(self._startup_since, mark)
        await self._advertise_agi()
        if self.cdr_watch is not None:
            self._tasks.spawn(self.cdr_watch.on_connected(), "cdr-check")
        snapshot_at = utcnow()
        _, channels = await self.ami.send_list_action("CoreShowChannels")
        now = utcnow()
        ended = self.model.resync(channels, now, snapshot_at)
        since = self._disconnected_at or (None if self._connected_once else self._startup_since)
        if ended or since is not None:
            await self._recover(ended, since or snapshot_at, now)
        if self._connected_once:
            self.metrics.ami_reconnects.inc()
        self._connected_once = True
        self._disconnected_at = None
        self._model_synced = True
        self.metrics.ami_connected.set(1)
        log.info("AMI connected", extra={"reconnect": reconnect, "channels": len(channels)})
        snapshot = tuple(channel_info(ch, now) for ch in channels if ch.get("Uniqueid"))
        self.bus.publish(AmiConnected(now, reconnect, snapshot))

    async def _recover(
        self,
        ended: list[Call],
        since: datetime,
        now: datetime,
        fallback_end: datetime | None = None,
    ) -> list[CallRecord]:
        known = self.model.is_known
        margin = RECOVERY_MARGIN
        if self.lease is not None:
            # a cluster: the calls of the window any node recorded are not published again
            margin = RECOVERY_MARGIN_CLUSTER
            recorded = await self._recorded_since(since - margin)

            def known(linkedid: str) -> bool:
                return self.model.is_known(linkedid) or linkedid in recorded

        records = await self.recovery.run(
            ended=ended,
            since=since - margin,
            fallback_end=fallback_end or self._disconnected_at or now,
            known=known,
        )
        self._publish_recovered(records, now)
        return records

    async def _recorded_since(self, since: datetime) -> set[str]:
        """Linkedids of the calls recorded (by any node) that ended at or after ``since``."""
        async with self.db.session() as session:
            rows = await session.scalars(select(CallRow.linkedid).where(CallRow.ended_at >= since))
            return set(rows)

    def _publish_recovered(self, records: list[CallRecord], now: datetime) -> None:
        for record in records:
            self.model.mark_finished(record.linkedid, now)
            self.metrics.calls_recovered.inc()
            self.bus.publish(CallCompleted(record))
        if records:
            log.info("recovered %d call(s) from CDR/queue_log", len(records))

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            for event in self.model.expire(utcnow()):
                self.bus.publish(event)
            gapped = self.model.take_gapped()
            if gapped:
                self._tasks.spawn(self._recover_gapped(gapped), "recover")
            self.metrics.calls_active.set(len(self.model.calls))

    async def _recover_gapped(self, calls: list[Call]) -> None:
        """Calls whose events had a gap (adopted after a restart, or in progress across an
        AMI outage) ended: their record comes from Asterisk's CDR and queue_log. The CDR
        line is written as the last channel goes: wait for it a little."""
        pending = {c.linkedid: c for c in calls}
        for attempt in range(GAPPED_CDR_ATTEMPTS):
            await asyncio.sleep(GAPPED_CDR_WAIT_S * (attempt + 1))
            todo = list(pending.values())
            end = max(c.closing_since or utcnow() for c in todo)
            records = await self.recovery.run(
                ended=todo, since=end, fallback_end=end, known=lambda _: True
            )
            last = attempt == GAPPED_CDR_ATTEMPTS - 1
            done = [r for r in records if _complete(r) or last]
            self._publish_recovered(done, utcnow())
            for r in done:
                pending.pop(r.linkedid, None)
            if not pending:
                return

    def _on_callback_requested(self, event: IvrCallbackRequested) -> None:
        self.model.callback_requested(event.linkedid)

    def _count_completed(self, event: CallCompleted) -> None:
        rec = event.record
        self.metrics.calls_completed.labels(rec.disposition, rec.source).inc()
        log.info(
            "call completed",
            extra={
                "linkedid": rec.linkedid, "disposition": rec.disposition, "queue": rec.queue,
                "agent": rec.agent, "source": rec.source,
            },
        )  # fmt: skip

    def _channel_alive(self, uniqueid: str) -> bool | None:
        """For the FastAGI server: is this channel up in Asterisk (None: cannot tell)?"""
        if not self._model_synced or not self.ami.connected or not uniqueid:
            return None
        for call in self.model.calls.values():
            leg = call.legs.get(uniqueid)
            if leg is not None:
                return leg.ended_at is None
        return False

    # --- web.LiveCalls ------------------------------------------------------------------------
    def live_calls(self) -> list[dict[str, object]]:
        return [call.snapshot() for call in self.model.active()]

    def health(self) -> dict[str, object]:
        if self.lease is None:
            role = "single"
        else:
            role = "driver" if self.lease.held else "standby"
        return {
            # a standby node serves HTTP and websockets; it drives no Asterisk
            "ok": self.ami.connected or role == "standby",
            "role": role,
            "draining": self.draining,
            "ami": "connected" if self.ami.connected else "disconnected",
            "calls_active": len(self.model.calls),
            "recorder_backlog": self.recorder.pending,
            "bus": self.bus.health(),
        }
