"""Outbound webhooks to external CRMs.

``publish(event, data)`` never waits: it submits one delivery per subscribed receiver to
a :class:`~cti.worker.QueueWorker` (bounded; full queue: dropped, logged, counted in
/metrics). ``CONCURRENCY`` workers post them; each delivery is retried with exponential
backoff (``backoff_s * 2**n``) and, after the last attempt, written to the dead-letter
table that admins see and can retry (a database error there is retried by the worker
without posting again). A receiver that hangs costs one worker at most ``timeout_s`` per
attempt and never touches the call path (bus handlers only submit).

At least once, across a graceful stop and across a crash, but for the last
``JOURNAL_S`` (0.2 s) before a crash:

- The worker journals its deliveries in the store (``worker_pending``, :class:`cti.
  pending.PendingStore`; cti.worker's journal): every ``JOURNAL_S`` one transaction adds
  the deliveries submitted since and deletes those delivered or dead-lettered since
  (``publish()`` itself only appends in memory). The next start, after a stop or a crash
  (SIGKILL, power loss), posts what the store holds first.
- A stop drains the deliveries for at most ``STOP_GRACE_S`` (1 s), then cancels the ones
  in hand (a post, a backoff) and keeps those and the queued ones with the attempts they
  had used; after a crash, a delivery goes on with the attempts it had used when it was
  written (usually none or one: the journal writes a delivery once, not per attempt).
- What a crash loses: the deliveries published in the last ``JOURNAL_S`` before it (and
  those of a journal write it interrupted, or of writes the store refused meanwhile:
  logged). What it repeats: a post in hand or made just before it (its row not deleted
  yet) comes again, and a delivery dead-lettered just before it may be posted and
  dead-lettered again. Receivers de-duplicate by ``X-CTI-Delivery``.
- In a cluster each node journals under its own name (``crm-webhooks@<node>``): a node's
  deliveries are posted by that node's next start (and what a stop of an earlier version
  kept under the bare name by the first node to start). A node that dies and stays dead
  has its deliveries adopted by a live node ``ADOPT_AFTER_S`` (10 s) after its lock was
  seen free, once, and never replayed by it if it comes back (:mod:`cti.cluster.orphans`:
  the window that remains, e.g. a node cut off from PostgreSQL that long is taken for
  dead and both may post its deliveries).

A delivery names its receiver by the receiver's key (``console:<id>`` for one added in
the console, ``config:<url>`` for one of the config file: :class:`Receiver`) and carries
no secret (the secret stays out of the store): each attempt posts to the receiver's URL
and signs with its secret *then*, so a receiver whose URL was changed or secret rotated
while deliveries were queued gets them at its new URL, signed with its new secret. A
delivery whose receiver was removed or disabled meanwhile is dead-lettered without being
posted; a dead letter is retried to its receiver (by key) wherever its URL is now, and
refused while it has none.

Request: ``POST url`` with JSON ``{"id", "event", "at", "data"}``, headers
``X-CTI-Event``, ``X-CTI-Delivery`` (stable across retries: receivers de-duplicate with
it), ``X-CTI-Timestamp`` and ``X-CTI-Signature: sha256=<hex>``, the HMAC-SHA256 with the
target's secret over ``<timestamp>.<body>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import aiohttp
from sqlalchemy import delete, select

from crm_bridge.config import CrmConfig, WebhookTarget
from crm_bridge.models import DeadLetter
from cti.bus import EventBus
from cti.cluster.locks import NamedLocks
from cti.cluster.orphans import ADOPT_AFTER_S, JournalOwner
from cti.events import CallAnswered, CallCompleted, CallOffered
from cti.pending import PendingStore
from cti.store.db import Database
from cti.store.models import clip_text, utcnow
from cti.tasks import BackgroundTasks
from cti.worker import QueueWorker, WorkerMetrics

log = logging.getLogger(__name__)

#: Deliveries posted side by side (one slow receiver does not hold the others back).
CONCURRENCY = 4
#: How long a stop lets the deliveries go on before it keeps the rest for the next start.
STOP_GRACE_S = 1.0
#: How often the deliveries submitted meanwhile are written to the store (what a crash
#: may lose) and those delivered or dead-lettered removed.
JOURNAL_S = 0.2
#: The worker's name (its metrics; its rows in the store, with the node's name in a cluster).
WORKER = "crm-webhooks"
#: The last error of a delivery whose receiver is no longer among the targets.
NO_RECEIVER = "no receiver any more (removed or disabled): not posted"

#: what a dead letter's retry did (:meth:`WebhookDispatcher.retry_dead_letter`)
Retry = Literal["queued", "missing", "no-receiver", "full"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Receiver:
    """A webhook receiver as the dispatcher posts to it now. ``key`` names it for good:
    ``console:<id>`` (a receiver added in the console: its URL may change) or
    ``config:<url>`` (one of the config file's, whose URL is what names it there)."""

    key: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...]

    @classmethod
    def of(cls, target: WebhookTarget, console_id: int | None = None) -> Receiver:
        url = str(target.url)
        key = f"console:{console_id}" if console_id is not None else f"config:{url}"
        return cls(key, url, target.secret, tuple(target.events))


@dataclass
class Delivery:
    """One event for one receiver (by key: its URL and secret are looked up at each
    attempt); ``url``: where it was last meant to go (what an admin sees; the receiver,
    for a delivery kept before receivers had keys); ``body`` is the JSON text posted."""

    url: str
    event: str
    body: str
    delivery_id: str
    attempts: int = 0
    last_error: str = ""
    receiver: str = ""


def _iso(value: datetime) -> str:
    return value.isoformat()


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        config: CrmConfig,
        *,
        metrics: WorkerMetrics | None = None,
        node: str = "",
        journal_s: float | None = JOURNAL_S,
        locks: NamedLocks | None = None,
        adopt_after_s: float = ADOPT_AFTER_S,
    ) -> None:
        """``node``: this node's name in a cluster ("" on one node): its journal's rows;
        ``journal_s`` None: no journal (bench/webhooks.py's baseline; a crash then loses
        the queue in memory); ``locks`` (a cluster on PostgreSQL): this node's hold on its
        journal and the adoption of dead nodes' (:mod:`cti.cluster.orphans`)."""
        self.db = db
        self._node = node
        #: the receivers now (cleared or replaced in place: crm_bridge.admin)
        self.targets: list[Receiver] = [Receiver.of(t) for t in config.webhooks]
        self.attempts = config.webhook_attempts
        self.backoff_s = config.webhook_backoff_s
        self.timeout_s = config.webhook_timeout_s
        keep: PendingStore[Delivery] = PendingStore(db, Delivery)
        self.worker: QueueWorker[Delivery] = QueueWorker(
            WORKER, self._handle, queue_size=config.webhook_queue_size,
            concurrency=CONCURRENCY, describe=lambda d: f"{d.event} to {d.url}",
            metrics=metrics, keep=keep, journal_s=journal_s,
            keep_as=f"{WORKER}@{node}" if node else WORKER,
        )  # fmt: skip
        self.owner: JournalOwner | None = None
        if locks is not None and node and journal_s is not None:
            self.owner = JournalOwner(
                locks, self.worker, keep, keep=f"{WORKER}@{node}", prefix=f"{WORKER}@",
                grace_s=adopt_after_s,
            )  # fmt: skip
        self._tasks = BackgroundTasks(WORKER)
        self._session: aiohttp.ClientSession | None = None
        self._unsubscribe: list[Any] = []
        self.delivered = 0
        self.dead = 0

    @property
    def dropped(self) -> int:
        return self.worker.dropped

    # --- producer side (sync, never blocks) ------------------------------------------

    def attach(self, bus: EventBus) -> None:
        self._unsubscribe += [
            bus.subscribe(CallOffered, self._on_offered),
            bus.subscribe(CallAnswered, self._on_answered),
            bus.subscribe(CallCompleted, self._on_completed),
        ]

    def _on_offered(self, e: CallOffered) -> None:
        self.publish(
            "call.ringing",
            {
                "linkedid": e.linkedid,
                "at": _iso(e.at),
                "queue": e.queue,
                "agent": e.member_name,
                "interface": e.interface,
                "caller_num": e.caller_num,
            },
        )

    def _on_answered(self, e: CallAnswered) -> None:
        self.publish(
            "call.answered",
            {
                "linkedid": e.linkedid,
                "at": _iso(e.at),
                "queue": e.queue,
                "agent": e.member_name,
                "interface": e.interface,
                "wait_s": e.wait_s,
            },
        )

    def _on_completed(self, e: CallCompleted) -> None:
        r = e.record
        self.publish(
            "call.ended",
            {
                "linkedid": r.linkedid,
                "started_at": _iso(r.started_at),
                "answered_at": _iso(r.answered_at) if r.answered_at else None,
                "ended_at": _iso(r.ended_at),
                "caller_num": r.caller_num,
                "queue": r.queue,
                "agent": r.agent,
                "wait_s": r.wait_s,
                "talk_s": r.talk_s,
                "disposition": r.disposition,
            },
        )

    def publish(self, event: str, data: dict[str, Any]) -> int:
        """Queue ``event`` for every target subscribed to it; returns how many."""
        queued = 0
        for target in self.targets:
            if event not in target.events:
                continue
            delivery_id = uuid.uuid4().hex
            body = json.dumps(
                {"id": delivery_id, "event": event, "at": utcnow().isoformat(), "data": data},
                ensure_ascii=False,
                default=str,
            )
            delivery = Delivery(target.url, event, body, delivery_id, receiver=target.key)
            if self.worker.submit(delivery):
                queued += 1
        return queued

    # --- worker ----------------------------------------------------------------------

    async def start(self) -> None:
        # in a cluster, this node's journal is its own (held) before its rows are read
        if self.owner is None or await self.owner.claim():
            await self.worker.resume()  # what the last run left in the store, first
        if self._node:
            await self._adopt_unnamed()
        self.worker.start()
        if self.owner is not None:  # and the journals of dead nodes become its own
            self._tasks.spawn(self.owner.run(), "orphans")

    async def _adopt_unnamed(self) -> None:
        """A node of a cluster also takes the deliveries kept under the worker's bare
        name: those a stop kept before the nodes' journals had names (an upgrade)."""
        try:
            items: list[Delivery] = await PendingStore(self.db, Delivery).take(WORKER)
        except Exception as exc:  # the store is away: they wait there for a later start
            log.error("%s: could not take back what was kept unnamed (%s)", WORKER, exc)
            return
        taken = sum(self.worker.submit(d) for d in items)
        if items:
            log.warning("%s: %d delivery(ies) kept unnamed taken back", WORKER, taken)

    def _receiver(self, key: str, url: str) -> Receiver | None:
        """The receiver ``key`` names now (``key`` "": the one at ``url``, for what was
        kept before receivers had keys); None: no such receiver (removed, disabled)."""
        if key:
            return next((t for t in self.targets if t.key == key), None)
        return next((t for t in self.targets if t.url == url), None)

    async def _handle(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            await self._deliver(delivery)

    async def _post(self, d: Delivery, secret: str) -> str:
        """ "" on success, else a one-line error."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timestamp = str(int(utcnow().timestamp()))
        body = d.body.encode()
        headers = {
            "Content-Type": "application/json",
            "X-CTI-Event": d.event,
            "X-CTI-Delivery": d.delivery_id,
            "X-CTI-Timestamp": timestamp,
            "X-CTI-Signature": sign(secret, timestamp, body),
        }
        try:
            async with self._session.post(
                d.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                allow_redirects=False,
            ) as resp:
                await resp.content.read(4096)
                if 200 <= resp.status < 300:
                    return ""
                return f"HTTP {resp.status}"
        except TimeoutError:
            return f"timeout after {self.timeout_s} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _deliver(self, d: Delivery) -> None:
        while d.attempts < self.attempts:
            if d.attempts:
                await asyncio.sleep(self.backoff_s * 2 ** (d.attempts - 1))
            receiver = self._receiver(d.receiver, d.url)
            if receiver is None:
                d.last_error = NO_RECEIVER
                break
            d.url = receiver.url
            d.attempts += 1
            d.last_error = await self._post(d, receiver.secret)
            if not d.last_error:
                self.delivered += 1
                return
            log.warning(
                "webhook %s to %s attempt %d/%d failed: %s",
                d.event, d.url, d.attempts, self.attempts, d.last_error,
            )  # fmt: skip
        # every attempt failed, or the receiver is gone; a database error here is retried
        # by the worker (the delivery stays in hand: with its attempts used up, it is not
        # posted again)
        async with self.db.session() as session, session.begin():
            session.add(
                DeadLetter(
                    url=clip_text(d.url, 2048),
                    receiver=clip_text(d.receiver, 2100),
                    event=d.event,
                    body=d.body,
                    attempts=d.attempts,
                    last_error=clip_text(d.last_error, 1024),
                )
            )
        self.dead += 1
        log.error("webhook %s to %s dead-lettered after %d attempt(s): %s",
                  d.event, d.url, d.attempts, d.last_error)  # fmt: skip

    async def flush(self) -> None:
        await self.worker.flush()

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop intake; deliveries unfinished after ``grace_s`` are kept for the next
        start (the module docstring)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        await self._tasks.stop()
        await self.worker.close(grace_s)
        if self.owner is not None:  # after the last write: the journal is let go
            await self.owner.locks.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- dead letters (admin) --------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
            )
            return [
                {
                    "id": r.id,
                    "url": r.url,
                    "receiver": r.receiver,
                    "event": r.event,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "created_at": r.created_at.isoformat(),
                    "body": json.loads(r.body),
                }
                for r in rows
            ]

    async def retry_dead_letter(self, dead_id: int) -> Retry:
        """Queue a dead letter again (same body, same delivery id) and remove it
        (``"queued"``), for its receiver wherever its URL is now; else it stays, and the
        answer says why: ``"missing"`` (no such dead letter), ``"no-receiver"`` (its
        receiver was removed or is disabled) or ``"full"`` (the queue takes nothing now:
        retry later). The delivery is in the journal before the dead letter leaves the
        store: a crash between the two posts it and leaves the dead letter (at least
        once)."""
        async with self.db.session() as session:
            row = await session.get(DeadLetter, dead_id)
        if row is None:
            return "missing"
        receiver = self._receiver(row.receiver, row.url)
        if receiver is None:
            return "no-receiver"
        delivery_id = str(json.loads(row.body).get("id", uuid.uuid4().hex))
        again = Delivery(receiver.url, row.event, row.body, delivery_id, receiver=receiver.key)
        if not self.worker.submit(again):
            return "full"
        await self.worker.sync()
        async with self.db.session() as session, session.begin():
            await session.execute(delete(DeadLetter).where(DeadLetter.id == dead_id))
        return "queued"

    def status(self) -> dict[str, Any]:
        return {
            "targets": [
                {"receiver": t.key, "url": t.url, "events": list(t.events)} for t in self.targets
            ],
            "queued": self.worker.pending,
            "delivered": self.delivered,
            "dead": self.dead,
            "dropped": self.dropped,
        }
