"""The one queue worker: how a component hands work from the (synchronous) bus to I/O.

Its users and what a graceful stop (SIGTERM; cti.daemon stops AMI events and FastAGI
first, then drains them with the store open) guarantees for each:

- ``calls`` (cti.calls.recorder), ``crm-interactions`` (crm_bridge.interactions),
  ``acd-lost-callers`` (acd.lost), ``stats-facts`` (stats.feature), ``missed-call-sms``
  (messaging.rules), ``crm-webhooks`` (crm_bridge.webhooks: 1 s, then the posts in hand
  are cancelled): drained for a bounded time, the rest kept in the store and handled
  first at the next start (``keep``): nothing accepted is lost.
- ``crm-webhooks`` also keeps a journal (``journal_s``): a crash loses at most what was
  submitted in the last interval (below).

Guarantees, the same for every user:

- **Bounded intake, never blocking.** :meth:`QueueWorker.submit` only ``put_nowait``s onto
  a bounded queue; a full (or closed) queue drops the item, logs it and counts it
  (``dropped``; ``cti_queue_worker_dropped_total{worker=...}`` in /metrics).
- **Batches in order.** Up to ``batch_size`` queued items are handed to the handler at
  once, in submission order; ``concurrency`` workers may run side by side (order is then
  per worker only).
- **Retry with backoff.** A failing batch stays in hand and is retried with exponential
  backoff (``retry_base_s`` doubling up to ``retry_max_s``) for as long as it takes: a
  database that is down or a receiver that is away loses nothing (meanwhile the queue
  fills and later items are dropped loudly).
- **Isolation of a bad item.** An error that retrying cannot fix (``permanent(exc)``:
  integrity/data errors, values that cannot be bound) is retried ``permanent_attempts``
  times, then the batch is handled item by item and an item that still fails is logged in
  full (its ``repr``) at ERROR level, counted (``failed``) and skipped: one bad record
  never blocks the ones behind it. Elsewhere items are named by ``describe(item)``.
- **Flush on stop.** :meth:`flush` waits until everything submitted so far is handled;
  :meth:`close` stops intake, flushes (at most ``grace_s``), and ends the workers. What is
  still unhandled then (queued, or in hand: its handler is cancelled) is lost, logged item
  by item at ERROR level, unless the worker has a ``keep`` (:class:`cti.pending.
  PendingStore`): then it is written to the store and :meth:`resume`, at the next start,
  puts it back on the queue ahead of new items (the handler must be idempotent: an item
  in hand may be applied twice). Each user states its guarantee in its module docstring.
- **Journal (write-ahead), when asked for.** A worker with ``journal_s`` (and a ``keep``)
  also writes its items to the store while it runs: every ``journal_s`` seconds, one
  transaction adds the items submitted since the last one and deletes the rows of those
  handled since (an item handled before its turn is never written; an interval with
  nothing to add or delete opens no transaction); :meth:`sync` writes at once (for a
  caller about to drop another copy of an item); :meth:`resume` reads
  the rows at start and leaves them until their items are handled; the stop rewrites the
  rows of what is unhandled (the items' state then). :meth:`submit` stays an append in
  memory: the store is written by one task of the worker, never on the caller's path. A
  crash (SIGKILL, power loss) therefore loses only the items submitted in the last
  ``journal_s`` before it (and those of a write it interrupted, or of writes that failed
  meanwhile: a store that is down is retried each interval, logged once); an item handled
  just before the crash whose row was not deleted yet is handled again at the next start,
  from its state when written (the handler is idempotent, as above). Items beyond what the
  queue holds at start stay in the store for a later start. Nodes that share a store give
  the worker a ``keep_as`` each (their own rows: one node's start never replays another
  node's items in hand); :meth:`adopt` takes over the rows of a node known dead (who
  decides, and the window that remains: :mod:`cti.cluster.orphans`).

Counters (``enqueued``, ``handled``, ``dropped``, ``failed``, ``errors``, ``pending``) are
attributes and, through :class:`WorkerMetrics`, Prometheus metrics labelled by name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cti.tasks import BackgroundTasks

__all__ = ["Journal", "Keeper", "QueueWorker", "WorkerMetrics"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[Sequence[T]], Awaitable[None]]
KEEP_TIMEOUT_S = 10.0  # writing what a stop left over to the store


class Keeper(Protocol[T]):
    """Where a worker keeps what a stop left over (:class:`cti.pending.PendingStore`)."""

    async def save(self, worker: str, items: Sequence[T]) -> None: ...
    async def take(self, worker: str) -> list[T]: ...


class Journal(Keeper[T], Protocol[T]):
    """A keep that is also a journal (``journal_s``; :class:`cti.pending.PendingStore`)."""

    async def write(
        self,
        worker: str,
        add: Sequence[T] = (),
        *,
        rewrite: Mapping[int, T] | None = None,
        remove: Sequence[int] = (),
    ) -> list[int]: ...
    async def load(
        self, worker: str, limit: int, *, below: int | None = None
    ) -> list[tuple[int, T]]: ...
    async def adopt(
        self, dead: str, adopter: str, limit: int, *, guard: int | None = None
    ) -> list[tuple[int, T]]: ...


@dataclass(eq=False, slots=True)
class _Entry(Generic[T]):
    """An item on its way through the worker; ``row``: its journal row once written."""

    item: T
    row: int | None = None
    done: bool = False


def _never(_: BaseException) -> bool:
    return False


class QueueWorker(Generic[T]):
    def __init__(
        self,
        name: str,
        handler: Handler[T],
        *,
        queue_size: int = 10_000,
        batch_size: int = 1,
        concurrency: int = 1,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        permanent: Callable[[BaseException], bool] = _never,
        permanent_attempts: int = 3,
        describe: Callable[[T], str] = repr,
        metrics: WorkerMetrics | None = None,
        keep: Keeper[T] | None = None,
        journal_s: float | None = None,
        keep_as: str = "",
    ) -> None:
        """``keep``: where a stop keeps what it leaves (the module docstring); with
        ``journal_s`` it must be a :class:`Journal`, written that often; ``keep_as``: the
        name the items are kept under (default ``name``)."""
        if queue_size < 1 or batch_size < 1 or concurrency < 1:
            raise ValueError("queue_size, batch_size and concurrency must be positive")
        if journal_s is not None and (journal_s <= 0 or keep is None):
            raise ValueError("a journal needs a keep and a positive journal_s")
        self.name = name
        self._handler = handler
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self._permanent = permanent
        self.permanent_attempts = max(1, permanent_attempts)
        self._describe = describe
        self._keep = keep
        self._keep_as = keep_as or name
        self.journal_s = journal_s
        self._journal: Journal[T] | None = keep if journal_s is not None else None  # type: ignore[assignment]
        self._unwritten: list[_Entry[T]] = []  # submitted, not in the journal yet
        self._handled_rows: list[int] = []  # journal rows of handled items, to delete
        self._journal_lock = asyncio.Lock()
        self._journal_task = BackgroundTasks(f"worker-{name}-journal")
        self._journal_failing = False
        self._first_row: int | None = None  # the first journal row this run wrote
        self._queue: asyncio.Queue[_Entry[T]] = asyncio.Queue(maxsize=queue_size)
        self._tasks = BackgroundTasks(f"worker-{name}")
        self._in_flight: dict[int, list[_Entry[T]]] = {}
        self._done = 0
        self._done_changed = asyncio.Condition()
        self._closing = False
        self._stopped = False
        self._started = False
        #: Items accepted onto the queue.
        self.enqueued = 0
        #: Items handled (successfully, or given up on as failed).
        self.handled = 0
        #: Items refused because the queue was full or the worker closed.
        self.dropped = 0
        #: Items a stop left over and wrote to the store (``keep``).
        self.kept = 0
        #: Items taken back from the store at start (``keep``).
        self.resumed = 0
        #: Items adopted from another keep's journal (:meth:`adopt`).
        self.adopted = 0
        #: Items the handler refused even alone (logged in full).
        self.failed = 0
        #: Failed handler calls (each logged; retried).
        self.errors = 0
        if metrics is not None:
            metrics.add(self)

    # --- intake (synchronous) -----------------------------------------------------------

    def submit(self, item: T) -> bool:
        """Queue ``item`` without waiting; False if it was dropped."""
        if self._closing:
            self.dropped += 1
            log.error("%s closed: dropped %s", self.name, self._describe(item))
            return False
        entry = _Entry(item)
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error(
                "%s queue full (%d): dropped %s (%d dropped so far)",
                self.name, self._queue.maxsize, self._describe(item), self.dropped,
            )  # fmt: skip
            return False
        self.enqueued += 1
        if self._journal is not None:
            self._unwritten.append(entry)
        return True

    @property
    def pending(self) -> int:
        """Items queued or being handled."""
        return self._queue.qsize() + sum(len(b) for b in self._in_flight.values())

    @property
    def maxsize(self) -> int:
        return self._queue.maxsize

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError(f"{self.name} already started")
        self._started = True
        for i in range(self.concurrency):
            self._tasks.spawn(self._run(i), f"run-{i}")
        if self._journal is not None:
            self._journal_task.spawn(self._journal_loop(self.journal_s or 1.0), "journal")

    async def resume(self) -> int:
        """Put back on the queue, in their order, the items the last stop kept (``keep``);
        call it at start, before the bus delivers. Returns how many (0, logged, if the
        store does not answer: they wait there for a later start). With a journal it may
        also come later, once and before any :meth:`adopt` (:mod:`cti.cluster.orphans`):
        it reads only rows older than the first this run wrote."""
        if self._keep is None:
            return 0
        room = self._queue.maxsize - self._queue.qsize()
        try:
            if self._journal is not None:  # the rows stay until their items are handled
                async with self._journal_lock:  # rows this run wrote are in memory
                    rows = await self._journal.load(self._keep_as, room, below=self._first_row)
                entries = [_Entry(item, row) for row, item in rows]
                items: list[T] = []
            else:
                items = await self._keep.take(self._keep_as)
                entries = [_Entry(item) for item in items[:room]]
        except Exception as exc:  # the store is away: they stay there for a later start
            log.error("%s: could not take back what the last stop kept (%s)",
                      self.name, _describe_exc(exc))  # fmt: skip
            return 0
        for entry in entries:
            self._queue.put_nowait(entry)
        fits = len(entries)
        self.enqueued += fits
        self.resumed += fits
        if len(items) > fits:  # more than the queue holds: the rest stays in the store
            await self._keep.save(self._keep_as, items[fits:])
        if fits:
            log.warning("%s: %d item(s) kept by the last run taken back", self.name, fits)
        return fits

    async def adopt(self, keep: str, *, guard: int | None = None) -> int:
        """Take over the journal rows kept under ``keep`` (a dead node's; the caller
        decides it is dead, :mod:`cti.cluster.orphans`): they move to this worker's keep in
        one transaction (``guard``: :meth:`cti.pending.PendingStore.adopt`) and join the
        queue, as many as it has room for (the rest at a later call); their rows go when
        they are handled, as this worker's own. Returns how many (0 with no journal)."""
        if self._journal is None or self._closing:
            return 0
        room = self._queue.maxsize - self._queue.qsize()
        rows = await self._journal.adopt(keep, self._keep_as, room, guard=guard)
        for row, item in rows:  # now this worker's rows: a crash here leaves them to its start
            await self._queue.put(_Entry(item, row))
            self.enqueued += 1
            self.adopted += 1
        if rows:
            log.warning("%s: %d item(s) of %s adopted", self.name, len(rows), keep)
        return len(rows)

    async def flush(self) -> None:
        """Wait until every item submitted so far is handled (or given up on)."""
        target = self.enqueued
        if self._done >= target:
            return
        if not self._started or self._stopped:
            unhandled = target - self._done
            raise RuntimeError(f"{self.name} is not running; {unhandled} item(s) unhandled")
        async with self._done_changed:
            await self._done_changed.wait_for(lambda: self._done >= target or self._stopped)
        if self._done < target:
            raise RuntimeError(f"{self.name} stopped; {target - self._done} item(s) unhandled")

    async def close(self, grace_s: float | None = 30.0) -> None:
        """Stop intake, handle what is queued (at most ``grace_s`` seconds; None: as long as
        it takes; what is unhandled then is logged), stop the workers. Idempotent."""
        self._closing = True
        if self._stopped:
            return
        if not self._started:
            self._stopped = True
            await self._leave(self._unhandled(), "before it started")
            return
        try:
            await asyncio.wait_for(self.flush(), grace_s)
        except TimeoutError:
            pass
        finally:
            await self._tasks.stop()
            self._stopped = True
            async with self._done_changed:
                self._done_changed.notify_all()
        await self._leave(self._unhandled(), f"after {grace_s}s")

    async def _leave(self, entries: list[_Entry[T]], when: str) -> None:
        """What a stop could not handle: kept in the store (``keep``), else logged."""
        if self._journal is not None:
            await self._close_journal(entries, when)
            return
        if not entries:
            return
        items = [e.item for e in entries]
        if self._keep is not None:
            try:
                await asyncio.wait_for(self._keep.save(self._keep_as, items), KEEP_TIMEOUT_S)
            except Exception as exc:
                log.error("%s: could not keep %d item(s) for the next start (%s)",
                          self.name, len(items), _describe_exc(exc))  # fmt: skip
            else:
                self.kept += len(items)
                log.warning("%s closing %s: %d item(s) kept for the next start",
                            self.name, when, len(items))  # fmt: skip
                return
        log.error("%s closing %s with %d item(s) unhandled: %s",
                  self.name, when, len(items), ", ".join(map(self._describe, items)))  # fmt: skip

    def _unhandled(self) -> list[_Entry[T]]:
        """Items in hand (their handlers ended) and queued, in submission order."""
        entries = [e for batch in self._in_flight.values() for e in batch]
        self._in_flight.clear()
        while not self._queue.empty():
            entries.append(self._queue.get_nowait())
        return entries

    # --- journal --------------------------------------------------------------------------

    async def _journal_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            if self._unwritten or self._handled_rows:
                async with self._journal_lock:
                    await self._write_journal()

    async def _write_journal(self, rewrite: Mapping[int, T] | None = None) -> bool:
        """One transaction: the items submitted since the last write (those not handled
        meanwhile) in, the rows of the items handled since out, ``rewrite`` rewritten.
        False (logged once until a write succeeds; kept for the next write) if the store
        refused."""
        assert self._journal is not None
        add = [e for e in self._unwritten if not e.done]
        remove = self._handled_rows
        self._unwritten, self._handled_rows = [], []
        if not (add or remove or rewrite):  # all handled before their turn: no transaction
            return True
        try:
            rows = await self._journal.write(
                self._keep_as, [e.item for e in add], rewrite=rewrite, remove=remove
            )
        except Exception as exc:
            self._unwritten[:0] = add
            self._handled_rows[:0] = remove
            if not self._journal_failing:
                self._journal_failing = True
                log.error("%s: journal write failed (%s); %d item(s) not in the store yet, "
                          "retried every %.2f s", self.name, _describe_exc(exc), len(add),
                          self.journal_s or 0.0)  # fmt: skip
            return False
        if self._journal_failing:
            self._journal_failing = False
            log.warning("%s: journal written again", self.name)
        if rows and self._first_row is None:
            self._first_row = min(rows)
        for entry, row in zip(add, rows, strict=True):
            entry.row = row
            if entry.done:  # handled while it was being written
                self._handled_rows.append(row)
        return True

    async def sync(self) -> bool:
        """Write the journal now (not waiting for the interval): what was submitted so far
        is in the store when it returns True (False: the store refused, logged; without a
        journal there is nothing to write). Off the hot path: for a caller that must not
        let go of an item's other copy before it is in the store."""
        if self._journal is None:
            return False
        async with self._journal_lock:
            return await self._write_journal()

    async def _close_journal(self, left: list[_Entry[T]], when: str) -> None:
        """The stop's last write: what is left (in the store already, or not yet) kept
        with its state now, the rows of everything handled deleted."""
        async with self._journal_lock:
            await self._journal_task.stop()
            rewrite = {e.row: e.item for e in left if e.row is not None}
            try:
                written = await asyncio.wait_for(self._write_journal(rewrite), KEEP_TIMEOUT_S)
            except TimeoutError:
                written = False
        if written:
            if left:
                self.kept += len(left)
                log.warning("%s closing %s: %d item(s) kept for the next start",
                            self.name, when, len(left))  # fmt: skip
            return
        lost = [e.item for e in left if e.row is None]
        log.error("%s closing %s: the journal's last write failed; %d item(s) in the store "
                  "from earlier writes, %d not: %s", self.name, when, len(left) - len(lost),
                  len(lost), ", ".join(map(self._describe, lost)))  # fmt: skip

    def _settle(self, batch: list[_Entry[T]]) -> None:
        """``batch`` is handled: its journal rows go at the next write."""
        for entry in batch:
            entry.done = True
            if entry.row is not None:
                self._handled_rows.append(entry.row)

    # --- workers --------------------------------------------------------------------------

    async def _run(self, index: int) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self._in_flight[index] = batch
            items = [e.item for e in batch]
            try:
                await self._handle_with_retry(items)
            except Exception:  # a bug in the retry logic itself: never end the worker
                self.failed += len(batch)
                log.exception("%s: unexpected error; items lost: %s",
                              self.name, ", ".join(map(self._describe, items)))  # fmt: skip
            self._in_flight.pop(index, None)
            if self._journal is not None:
                self._settle(batch)
            async with self._done_changed:
                self._done += len(batch)
                self.handled += len(batch)
                self._done_changed.notify_all()

    async def _handle_with_retry(self, batch: Sequence[T]) -> None:
        attempt = 0
        while True:
            try:
                await self._handler(batch)
            except Exception as exc:
                attempt += 1
                self.errors += 1
                if self._permanent(exc) and attempt >= self.permanent_attempts:
                    if len(batch) > 1:
                        log.error(
                            "%s: a batch of %d keeps failing (%s); handling it item by item",
                            self.name, len(batch), _describe_exc(exc),
                        )  # fmt: skip
                        for item in batch:
                            await self._handle_with_retry([item])
                        return
                    self.failed += 1
                    log.error(
                        "%s: given up after %d attempt(s) (%s): %r",
                        self.name, attempt, _describe_exc(exc), batch[0],
                    )  # fmt: skip
                    return
                delay = min(self.retry_max_s, self.retry_base_s * 2 ** (attempt - 1))
                log.warning(
                    "%s: %d item(s) failed (attempt %d, retrying in %.1f s): %s",
                    self.name, len(batch), attempt, delay, _describe_exc(exc),
                )  # fmt: skip
                await asyncio.sleep(delay)
            else:
                if attempt:
                    log.warning("%s: %d item(s) done after %d failed attempt(s)",
                                self.name, len(batch), attempt)  # fmt: skip
                return


def _describe_exc(exc: BaseException) -> str:
    """One line about an error (SQLAlchemy's statement and parameters left out)."""
    orig = getattr(exc, "orig", None)
    if orig is not None:
        return f"{type(exc).__name__}: {orig}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


class WorkerMetrics(Collector):
    """Prometheus view of every QueueWorker created with it (one per registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._workers: list[QueueWorker[object]] = []
        if registry is not None:
            registry.register(self)

    def add(self, worker: QueueWorker[T]) -> None:
        self._workers.append(worker)  # type: ignore[arg-type]

    def collect(self) -> Iterable[Metric]:
        families = {
            "enqueued": CounterMetricFamily(
                "cti_queue_worker_enqueued", "items accepted by a queue worker", labels=["worker"]
            ),
            "handled": CounterMetricFamily(
                "cti_queue_worker_handled", "items a queue worker finished", labels=["worker"]
            ),
            "dropped": CounterMetricFamily(
                "cti_queue_worker_dropped",
                "items a queue worker refused (queue full or closed)",
                labels=["worker"],
            ),
            "failed": CounterMetricFamily(
                "cti_queue_worker_failed",
                "items a queue worker gave up on (bad item, logged)",
                labels=["worker"],
            ),
            "errors": CounterMetricFamily(
                "cti_queue_worker_errors", "failed attempts (retried)", labels=["worker"]
            ),
            "kept": CounterMetricFamily(
                "cti_queue_worker_kept",
                "items a stop left over and kept in the store for the next start",
                labels=["worker"],
            ),
            "adopted": CounterMetricFamily(
                "cti_queue_worker_adopted",
                "items taken over from a dead node's journal (cti.cluster.orphans)",
                labels=["worker"],
            ),
        }
        pending = GaugeMetricFamily(
            "cti_queue_worker_pending", "items queued or in hand", labels=["worker"]
        )
        for w in self._workers:
            for attr, family in families.items():
                family.add_metric([w.name], float(getattr(w, attr)))
            pending.add_metric([w.name], float(w.pending))
        yield from families.values()
        yield pending
