"""The event bus across nodes, on NATS JetStream (decision 0028).

Same interface as the in-process :class:`cti.bus.EventBus`; a published event is

1. dispatched at once to this node's handlers (as on a single node: the broker is never
   on the path of the node's own work), then, if other nodes receive its type
   (:data:`cti.events.SHARED_EVENTS`; every other event stays on its node),
2. encoded at once (an event that cannot cross, or too big for the broker, is refused
   there, logged and counted, never left to stop the sender) and put in a bounded local
   buffer, from which a sender publishes what is waiting as one
   message (subject ``<prefix>.batch``, up to 256 events: one publish and one
   acknowledgement for all of them, the per-message cost being what limits a Python node;
   header ``Nats-Msg-Id`` from the first event's id, so a batch retried after a lost
   acknowledgement is stored once; header ``Cti-Node`` the publishing node's durable
   name). An event leaves the buffer only when the broker acknowledged it as stored (on
   disk: file storage). While the broker is unreachable the buffer holds up to
   ``buffer_max`` events; past that the oldest is dropped and counted
   (``cti_bus_dropped_total``), never blocking the caller.
3. Each node reads the stream through its own durable push consumer (``node-<name>``)
   with explicit acknowledgement: what it had not acknowledged when the link or the broker
   went away is delivered again, and a node that was away resumes where it stopped (within
   the stream's ``max_age``). Events are deduplicated by id (a bounded memory of recent
   ids), the node's own are skipped (already dispatched in step 1: a message whose
   ``Cti-Node`` is this node is acknowledged without being decoded), the others go to the
   handlers subscribed with ``remote=True``.
4. A server's live state (:class:`~cti.events.ServerLiveState` with ``live``), a
   snapshot the next one replaces within seconds and shown for its TTL only, is not
   stored: it goes on plain NATS (subject ``<prefix>-live``, outside the stream), the
   newest one waiting replacing an older one, without waiting for an acknowledgement
   or for the events queued before it. A node away meanwhile misses it and gets the
   next. Its withdrawal (``live=False``) goes through the stream like any event.
   A live queue of 500 agents is ~100 KB: on the stream, each one was written to disk
   and held back the acknowledgement every event queued behind it waited for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cti.bus import EventBus
from cti.cluster.codec import CodecError, Envelope, decode_batch, encode, known_classes
from cti.events import SHARED_EVENTS, DomainEvent, ServerLiveState

__all__ = ["NatsBus"]

log = logging.getLogger(__name__)

BATCH = 256
BATCH_BYTES = 512 * 1024
#: the broker refuses a message over its max_payload (1 MB by default)
EVENT_BYTES_MAX = 1_000_000
LATE_S = 1.0
WATCH_S = 5.0
ACK_TIMEOUT_S = 5.0
SEEN_MAX = 100_000
NODE_HEADER = "Cti-Node"
_NAME = re.compile(r"[^A-Za-z0-9_-]")


def unstored(event: DomainEvent) -> bool:
    """Sent without being stored (step 4 above): a server's live state, not its
    withdrawal."""
    return isinstance(event, ServerLiveState) and event.live


class BusMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.published = Counter("cti_bus_published", "events stored by the broker", registry=r)
        self.received = Counter("cti_bus_received", "other nodes' events delivered", registry=r)
        self.duplicates = Counter("cti_bus_duplicates", "events received twice", registry=r)
        self.dropped = Counter("cti_bus_dropped", "events dropped: buffer full", registry=r)
        self.bad = Counter("cti_bus_bad", "broker messages not readable", registry=r)
        self.refused = Counter(
            "cti_bus_refused", "events that cannot cross nodes (type, size)", registry=r
        )
        self.buffered = Gauge("cti_bus_buffered", "events waiting for the broker", registry=r)
        self.delay = Histogram(
            "cti_bus_delay_seconds", "another node's event: published there -> handled here",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )  # fmt: skip
        self.connected = Gauge("cti_bus_connected", "1 while the broker link is up", registry=r)


class NatsBus(EventBus):
    def __init__(
        self,
        url: str,
        *,
        node: str,
        stream: str = "CTI_EVENTS",
        subject_prefix: str = "cti.events",
        buffer_max: int = 10_000,
        max_age_s: float = 3600.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.node = node
        self.stream = stream
        self.prefix = subject_prefix
        self.buffer_max = buffer_max
        self.max_age_s = max_age_s
        self.metrics = BusMetrics(registry)
        # (event, its encoding): encoded when published, so a sender that gets the broker's
        # acknowledgement sends what waited at once instead of encoding it first
        self._buffer: deque[tuple[Envelope, bytes]] = deque()
        # the newest live state waiting to go (unstored), and its subject
        self._live: tuple[Envelope, bytes] | None = None
        self._live_wake = asyncio.Event()
        self.live_subject = f"{subject_prefix}-live"
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()  # set by the sender when the buffer is empty
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._ready = asyncio.Event()  # stream and consumer exist, link up
        self._tasks: list[asyncio.Task[None]] = []
        self._classes: dict[str, type[Any]] = {}
        self._closing = False
        self._lost = asyncio.Event()
        # events sent, by type (logged at close)
        self.by_type: collections.Counter[str] = collections.Counter()
        self.delays: deque[float] = deque(maxlen=10_000)  # the last ones (logged at close)
        self._late_logged = 0.0
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.refused = 0

    @property
    def durable(self) -> str:
        return "node-" + _NAME.sub("_", self.node)

    # --- the bus interface ------------------------------------------------------------------
    def publish(self, event: DomainEvent) -> None:
        super().publish(event)
        if self._closing or type(event) not in SHARED_EVENTS:
            return
        env = Envelope(id=uuid.uuid4().hex, node=self.node, event=event, at=time.time())
        try:
            data = encode(env)
        except CodecError as exc:
            self._refuse(event, str(exc))
            return
        if len(data) > EVENT_BYTES_MAX:
            self._refuse(event, f"{len(data)} bytes, over the broker's limit")
            return
        self.by_type[type(event).__name__] += 1
        if unstored(event):
            self._live = (env, data)  # replaces an older one not sent yet
            self._live_wake.set()
            return
        if len(self._buffer) >= self.buffer_max:
            self._buffer.popleft()
            self.dropped += 1
            self.metrics.dropped.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("bus buffer full (%d): oldest events dropped", self.buffer_max)
        self._buffer.append((env, data))
        self.metrics.buffered.set(len(self._buffer))
        self._wake.set()

    def _refuse(self, event: DomainEvent, why: str) -> None:
        self.refused += 1
        self.metrics.refused.inc()
        log.error("%s cannot cross nodes: %s", type(event).__name__, why)

    async def start(self) -> None:
        """Start the link in the background: the node works (and buffers) without it."""
        self._classes = known_classes()
        self._tasks = [
            asyncio.create_task(self._link(), name="bus-link"),
            asyncio.create_task(self._send_loop(), name="bus-send"),
            asyncio.create_task(self._live_loop(), name="bus-live"),
        ]

    async def wait_ready(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set()

    async def close(self, flush_s: float = 3.0) -> None:
        """Send what is buffered (at most ``flush_s``), then disconnect."""
        if self._buffer and self._ready.is_set():
            self._empty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), flush_s)
        if self._buffer:
            log.warning("bus closing with %d event(s) not sent", len(self._buffer))
        delays = sorted(self.delays)
        p99 = delays[int(0.99 * (len(delays) - 1))] * 1000 if delays else 0.0
        log.info(
            "bus: %d sent, %d received from other nodes (delay p99 %.1f ms); most sent: %s",
            self.published, self.received, p99,
            ", ".join(f"{k} {v}" for k, v in self.by_type.most_common(6)),
        )  # fmt: skip
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._ready.clear()

    def health(self) -> dict[str, object]:
        nc = self._nc
        return {
            "kind": "nats",
            "node": self.node,
            "connected": bool(nc is not None and nc.is_connected and self._ready.is_set()),
            "buffered": len(self._buffer),
            "dropped": self.dropped,
            "refused": self.refused,
        }

    # --- the link -----------------------------------------------------------------------------
    async def _disconnected(self) -> None:
        self.metrics.connected.set(0)
        log.warning("broker link down (events are buffered)")

    async def _reconnected(self) -> None:
        self.metrics.connected.set(1)
        log.info("broker link up again")

    async def _error(self, exc: Exception) -> None:
        log.warning("broker: %s: %s", type(exc).__name__, exc)

    async def _connect(self) -> NatsClient:
        backoff = 0.2
        while True:
            try:
                return await nats.connect(
                    self.url, name=self.durable, connect_timeout=2,
                    allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                    disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                    error_cb=self._error, closed_cb=self._closed,
                )  # fmt: skip
            except (OSError, NatsError, TimeoutError) as exc:
                log.warning("broker %s not reachable (%s): retrying", self.url, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        config = StreamConfig(
            name=self.stream, subjects=[f"{self.prefix}.>"], storage=StorageType.FILE,
            max_age=self.max_age_s, duplicate_window=120.0,
        )  # fmt: skip
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)

    async def _link(self) -> None:
        """Connect, make sure the stream and this node's consumer exist, receive; start
        over after anything the client's own reconnects did not absorb."""
        while True:
            try:
                self._nc = await self._connect()
                self._js = self._nc.jetstream(timeout=ACK_TIMEOUT_S)
                await self._ensure_stream(self._js)
                self._lost = asyncio.Event()
                await self._js.subscribe(
                    f"{self.prefix}.>", durable=self.durable, stream=self.stream,
                    cb=self._on_msg, manual_ack=True, pending_msgs_limit=200_000,
                    config=ConsumerConfig(
                        deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=10.0, max_ack_pending=20_000,
                    ),
                )  # fmt: skip
                await self._nc.subscribe(self.live_subject, cb=self._on_live)
                self.metrics.connected.set(1)
                self._ready.set()
                log.info("broker link up", extra={"url": self.url, "node": self.node})
                await self._watch(self._js)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("broker link failed (%s): starting over", exc)
                self._ready.clear()
                self.metrics.connected.set(0)
                if self._nc is not None:
                    with contextlib.suppress(Exception):
                        await self._nc.close()
                await asyncio.sleep(0.5)

    async def _watch(self, js: JetStreamContext) -> None:
        """Return when the link must be made again: the connection closed for good, or
        this node's consumer is gone (a broker that lost its storage)."""
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), WATCH_S)
                return
            if self._nc is None or not self._nc.is_connected:
                continue  # the client is reconnecting by itself
            try:
                await js.consumer_info(self.stream, self.durable)
            except NotFoundError:
                log.warning("broker lost this node's consumer: making it again")
                return
            except (NatsError, OSError, TimeoutError):
                continue

    async def _closed(self) -> None:
        self._lost.set()

    async def _on_msg(self, msg: Msg) -> None:
        """Pushed by the broker as soon as stored (a durable push consumer: what was not
        acknowledged is delivered again after ``ack_wait``, also across reconnects). This
        node's own messages come back too (one stream, one consumer per node): acknowledged
        unread."""
        self._read(msg)
        with contextlib.suppress(NatsError, OSError):
            await msg.ack()

    async def _on_live(self, msg: Msg) -> None:
        """Another node's live state, sent without being stored (nothing to acknowledge)."""
        self._read(msg)

    def _read(self, msg: Msg) -> None:
        if msg.headers and msg.headers.get(NODE_HEADER) == self.durable:
            return  # this node's own: not even decoded
        try:
            envelopes, bad = decode_batch(msg.data, self._classes)
        except CodecError as exc:
            envelopes, bad = [], 1
            log.warning("unreadable broker message dropped: %s", exc)
        if bad:
            self.metrics.bad.inc(bad)
        for env in envelopes:
            self._take(env)

    def _take(self, env: Envelope) -> None:
        if env.node == self.node:
            return
        if env.id in self._seen:
            self.metrics.duplicates.inc()
            return
        self._seen[env.id] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        self.received += 1
        self.metrics.received.inc()
        if env.at:
            delay = max(0.0, time.time() - env.at)
            self.metrics.delay.observe(delay)
            self.delays.append(delay)
            if delay > LATE_S and time.monotonic() - self._late_logged > 10:
                self._late_logged = time.monotonic()
                log.warning(
                    "events from node %s arrive late: %s %.2f s after it was published",
                    env.node, type(env.event).__name__, delay,
                )  # fmt: skip
        self.deliver_remote(env.event)

    async def _live_loop(self) -> None:
        """Send the newest live state once the link is up: plain NATS, no storage, no
        acknowledgement (a state lost with the link is replaced by the next one)."""
        while True:
            await self._live_wake.wait()
            self._live_wake.clear()
            if not self._ready.is_set() or self._nc is None:
                await self._ready.wait()
            item, self._live = self._live, None
            if item is None or self._nc is None:
                continue
            data = item[1]
            try:
                await self._nc.publish(
                    self.live_subject, b'{"batch":[' + data + b"]}",
                    headers={NODE_HEADER: self.durable},
                )  # fmt: skip
            except (NatsError, OSError) as exc:
                log.info("live state not sent (%s): the next one follows", exc)

    async def _send_loop(self) -> None:
        backoff = 0.1
        while True:
            if not self._buffer:
                self._empty.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._ready.is_set() or self._js is None:
                await self._ready.wait()
                continue
            batch, payload = self._next_batch()
            try:
                await self._js.publish(
                    f"{self.prefix}.batch", payload, timeout=ACK_TIMEOUT_S,
                    headers={
                        "Nats-Msg-Id": f"{batch[0].id}+{len(batch)}", NODE_HEADER: self.durable,
                    },
                )  # fmt: skip
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("publish to broker failed (%s): %d buffered", exc, len(self._buffer))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            sent = {env.id for env in batch}
            while self._buffer and self._buffer[0][0].id in sent:
                self._buffer.popleft()
            self.published += len(batch)
            self.metrics.published.inc(len(batch))
            self.metrics.buffered.set(len(self._buffer))

    def _next_batch(self) -> tuple[list[Envelope], bytes]:
        """The oldest buffered events, at most BATCH of them and about BATCH_BYTES (the
        broker refuses messages over 1 MB), as one message (encode_batch's shape, of the
        encodings made when they were published)."""
        batch: list[Envelope] = []
        parts: list[bytes] = []
        size = 0
        for env, one in self._buffer:
            if batch and (len(batch) >= BATCH or size + len(one) > BATCH_BYTES):
                break
            batch.append(env)
            parts.append(one)
            size += len(one)
        return batch, b'{"batch":[' + b",".join(parts) + b"]}"
