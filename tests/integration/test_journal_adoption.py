"""A node that dies for good does not keep its journal to itself (cti.cluster.orphans,
cti.worker's ``adopt``, decision 0035): a live node takes its rows over once, handles
every item, and the dead node coming back finds nothing of its own to replay.

- Two workers on one store (SQLite and PostgreSQL): node a journals and dies; node b
  adopts a's rows, handles each item once, and a's next start reads none; two adopters
  racing take each row once.
- A cluster of webhook dispatchers on PostgreSQL with the real locks (cti.cluster.locks)
  and a real receiver on 127.0.0.1: a's rows stay a's while a holds its journal, however
  long; a dies (its tasks end, its PostgreSQL session with them); b adopts after the
  grace period and the receiver gets every delivery once, signed; a's restart posts
  nothing again; two survivors racing take each row once; what a graceful stop of a kept
  is adopted the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select

from crm_bridge.config import CrmConfig
from crm_bridge.webhooks import WORKER, WebhookDispatcher, verify
from cti.cluster.lease import libpq_dsn
from cti.cluster.locks import NamedLocks
from cti.cluster.orphans import JournalOwner
from cti.pending import PendingStore
from cti.store.db import Database
from cti.store.models import PendingItem
from cti.worker import QueueWorker, WorkerMetrics
from stats.feature import Fact
from tests.local_http import serving

N = 30
SECRET = "adopt-adopt-adopt-adopt"
GRACE_S = 1.0


async def rows(db: Database, worker: str | None = None) -> int:
    query = select(func.count()).select_from(PendingItem)
    if worker is not None:
        query = query.where(PendingItem.worker == worker)
    async with db.session() as s:
        return int(await s.scalar(query) or 0)


async def until(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, f"not in {timeout} s: {what}"
        await asyncio.sleep(0.02)


async def die(worker: QueueWorker[Any]) -> None:
    """The process dies: the worker's tasks end where they are, no stop runs."""
    await worker._tasks.stop()
    await worker._journal_task.stop()


Write = Callable[[Sequence[Fact]], Awaitable[None]]


def journaled(
    db: Database, name: str, handler: Write, *, batch_size: int = 1, queue_size: int = 10_000,
    metrics: WorkerMetrics | None = None,
) -> QueueWorker[Fact]:  # fmt: skip
    """The worker of node ``name``, journaling under ``stats-facts@<name>``."""
    return QueueWorker(
        "stats-facts", handler, keep=PendingStore(db, Fact), journal_s=0.05,
        keep_as=f"stats-facts@{name}", batch_size=batch_size, queue_size=queue_size,
        metrics=metrics,
    )  # fmt: skip


async def never(facts: Sequence[Fact]) -> None:
    await asyncio.Event().wait()  # the dependency is away


async def dead_node_a(db: Database, n: int = N) -> list[Fact]:
    """Node a journals ``n`` items it cannot handle, then dies."""
    facts = [Fact("link", f"L{i}", f"U{i}") for i in range(n)]
    a = journaled(db, "a", never)
    a.start()
    assert all(a.submit(f) for f in facts)

    async def in_the_store() -> bool:
        return await rows(db, "stats-facts@a") == n

    await until(in_the_store, f"{n} items journaled under stats-facts@a")
    await die(a)
    return facts


async def test_a_live_node_adopts_a_dead_nodes_journal_and_the_dead_node_finds_nothing(
    db: Database,
) -> None:
    facts = await dead_node_a(db)
    seen: list[str] = []

    async def write(batch: Sequence[Fact]) -> None:
        seen.extend(f.uniqueid for f in batch)

    registry = CollectorRegistry()
    b = journaled(db, "b", write, batch_size=4, metrics=WorkerMetrics(registry))
    b.start()
    assert await b.adopt("stats-facts@a") == N  # moved to b's name in one transaction
    assert await rows(db, "stats-facts@a") == 0
    text = generate_latest(registry).decode()
    assert f'cti_queue_worker_adopted_total{{worker="stats-facts"}} {N}.0' in text
    await b.flush()
    assert seen == [f.uniqueid for f in facts]  # every item, once, in order

    async def store_empty() -> bool:
        return await rows(db) == 0

    await until(store_empty, "the adopted rows deleted once handled, as b's own")
    assert await b.adopt("stats-facts@a") == 0  # nothing left to take
    await b.close()
    a_again = journaled(db, "a", write)  # a comes back: nothing of its own to replay
    assert await a_again.resume() == 0
    await a_again.close()
    assert len(seen) == N


async def test_two_adopters_racing_take_each_row_once(db_url: str, db: Database) -> None:
    """b and c, each on a connection pool of its own, adopt a's rows at the same moment,
    over and over, a few at a time (their queues hold 7): each item is handled once."""
    facts = await dead_node_a(db, 120)
    other = Database.from_url(db_url)
    got: dict[str, list[str]] = {"b": [], "c": []}

    def writer(name: str) -> Write:
        async def write(batch: Sequence[Fact]) -> None:
            got[name].extend(f.uniqueid for f in batch)
            await asyncio.sleep(0.005)

        return write

    b = journaled(db, "b", writer("b"), queue_size=7)
    c = journaled(other, "c", writer("c"), queue_size=7)
    b.start()
    c.start()
    try:
        while await rows(db, "stats-facts@a"):
            await asyncio.gather(b.adopt("stats-facts@a"), c.adopt("stats-facts@a"))
        await asyncio.gather(b.flush(), c.flush())
    finally:
        await b.close()
        await c.close()
        await other.dispose()
    assert b.adopted + c.adopted == len(facts)
    assert b.adopted and c.adopted  # both took part
    assert not set(got["b"]) & set(got["c"])
    assert sorted(got["b"] + got["c"]) == sorted(f.uniqueid for f in facts)
    assert await rows(db) == 0


# --- a cluster of webhook dispatchers (PostgreSQL, the real locks) ------------------------


@dataclass
class Receiver:
    """Answers 503 while ``up`` is False; once up, 200 and what it got is kept."""

    url: str = ""
    up: bool = False
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [h["X-CTI-Delivery"] for h, _ in self.got]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not rx.up:
            return web.Response(status=503)
        rx.got.append((dict(request.headers), body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as base:
        rx.url = base + "/hook"
        yield rx


#: the nodes of a cluster share PostgreSQL (decision 0028): these tests run on it only
ON_POSTGRESQL = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def pg_dsn(db_url: str) -> str:
    dsn = libpq_dsn(db_url)
    assert dsn is not None
    return dsn


def node(db: Database, rx: Receiver, dsn: str, name: str) -> WebhookDispatcher:
    config = CrmConfig.model_validate(
        {
            "webhooks": [{"url": rx.url, "secret": SECRET}],
            "webhook_attempts": 20,
            "webhook_backoff_s": 0.2,
            "webhook_timeout_s": 2.0,
        }
    )
    locks = NamedLocks(dsn, node=name, timeout_s=1.0, check_s=0.2)
    return WebhookDispatcher(db, config, node=name, locks=locks, adopt_after_s=GRACE_S)


async def crash(hooks: WebhookDispatcher) -> None:
    """Node's process dies: its tasks end where they are and its sockets close (its
    PostgreSQL session ends, freeing its locks); no stop runs."""
    await hooks._tasks.stop()
    await die(hooks.worker)
    assert hooks.owner is not None and hooks.owner.locks._conn is not None
    hooks.owner.locks._conn.terminate()


async def published_and_journaled(db: Database, hooks: WebhookDispatcher, name: str) -> list[int]:
    """``N`` deliveries published on node ``name`` (``hooks``), once all are in its journal
    in the store; returns what each publish returned (the receivers it was queued for)."""
    sent = [hooks.publish("lead.assigned", {"lead": i}) for i in range(N)]

    async def all_journaled() -> bool:
        return await rows(db, f"{WORKER}@{name}") == N

    await until(all_journaled, f"{name}'s deliveries in the store")
    return sent


def owner(hooks: WebhookDispatcher) -> JournalOwner:
    assert hooks.owner is not None
    return hooks.owner


@ON_POSTGRESQL
async def test_a_dead_nodes_deliveries_are_posted_by_a_live_node_once(
    db_url: str, db: Database, receiver: Receiver
) -> None:
    dsn = pg_dsn(db_url)
    a = node(db, receiver, dsn, "a")
    b = node(db, receiver, dsn, "b")
    await a.start()
    await b.start()
    try:
        assert await published_and_journaled(db, a, "a") == [1] * N
        # a is alive: however long b looks, a's rows stay a's
        assert await owner(b).round() == 0
        await asyncio.sleep(GRACE_S + 0.2)
        assert await owner(b).round() == 0
        assert await rows(db, f"{WORKER}@a") == N

        await crash(a)
        receiver.up = True

        async def adopted() -> bool:  # by b's own loop (every 2 s) or this look
            await owner(b).round()
            return await rows(db, f"{WORKER}@a") == 0

        started = asyncio.get_running_loop().time()
        await until(adopted, "b adopting a's rows")
        assert asyncio.get_running_loop().time() - started >= GRACE_S  # not before
        assert b.worker.adopted == N

        async def all_posted() -> bool:
            return len(set(receiver.ids())) == N

        await until(all_posted, "every delivery of a posted by b")
        for headers, body in receiver.got:
            assert verify(SECRET, headers["X-CTI-Timestamp"], body, headers["X-CTI-Signature"])
        assert sorted(json.loads(body)["data"]["lead"] for _, body in receiver.got) == list(
            range(N)
        )

        # a comes back: nothing of its own to replay, nothing posted twice
        a_again = node(db, receiver, dsn, "a")
        await a_again.start()
        assert a_again.worker.resumed == 0
        await b.flush()
        await a_again.stop()
    finally:
        await b.stop()
        await a.stop()
    assert len(receiver.ids()) == N
    assert await rows(db) == 0


@ON_POSTGRESQL
async def test_two_survivors_adopting_at_once_post_each_delivery_once(
    db_url: str, db: Database, receiver: Receiver
) -> None:
    dsn = pg_dsn(db_url)
    a = node(db, receiver, dsn, "a")
    await a.start()
    await published_and_journaled(db, a, "a")
    await crash(a)
    other = Database.from_url(db_url)
    b = node(db, receiver, dsn, "b")
    c = node(other, receiver, dsn, "c")
    await b.start()
    await c.start()
    receiver.up = True
    try:
        started = asyncio.get_running_loop().time()

        async def adopted() -> bool:  # both looking at the same moments
            await asyncio.gather(owner(b).round(), owner(c).round())
            return await rows(db, f"{WORKER}@a") == 0

        await until(adopted, "a's rows adopted")
        assert asyncio.get_running_loop().time() - started >= GRACE_S
        assert b.worker.adopted + c.worker.adopted == N
        await asyncio.gather(b.flush(), c.flush())
    finally:
        await b.stop()
        await c.stop()
        await a.stop()
        await other.dispose()
    assert len(receiver.ids()) == N and len(set(receiver.ids())) == N


@ON_POSTGRESQL
async def test_a_stopped_nodes_kept_deliveries_are_posted_by_a_live_node_once(
    db_url: str, db: Database, receiver: Receiver
) -> None:
    """A graceful stop keeps what the receiver did not take and lets a's journal go: b
    adopts it after the grace period; nothing was left in a's memory to post twice."""
    dsn = pg_dsn(db_url)
    a = node(db, receiver, dsn, "a")
    b = node(db, receiver, dsn, "b")
    await a.start()
    await b.start()
    try:
        for i in range(N):
            a.publish("lead.assigned", {"lead": i})
        await a.stop(grace_s=0.1)
        assert a.worker.kept == N
        assert await rows(db, f"{WORKER}@a") == N
        receiver.up = True
        started = asyncio.get_running_loop().time()

        async def adopted() -> bool:
            await owner(b).round()
            return await rows(db, f"{WORKER}@a") == 0

        await until(adopted, "b adopting what a's stop kept")
        assert asyncio.get_running_loop().time() - started >= GRACE_S
        await b.flush()
    finally:
        await b.stop()
        await a.stop()
    assert sorted(receiver.ids()) == sorted(set(receiver.ids())) and len(receiver.ids()) == N
    assert await rows(db) == 0


@ON_POSTGRESQL
async def test_a_node_that_could_not_hold_its_journal_at_start_reads_its_rows_once_it_does(
    db_url: str, db: Database, receiver: Receiver
) -> None:
    """a's earlier run left rows; at a's start another session holds a's journal (another
    process with its name): a starts without them, journals what it gets meanwhile, and
    once it holds its journal reads the earlier rows only: each delivery posted once."""
    dsn = pg_dsn(db_url)
    earlier = node(db, receiver, dsn, "a")
    await earlier.start()
    await published_and_journaled(db, earlier, "a")
    await crash(earlier)
    other = NamedLocks(dsn, node="a-other", timeout_s=1.0, check_s=0.2)
    assert await other.hold(f"journal:{WORKER}@a")
    a = node(db, receiver, dsn, "a")
    owner(a).claim_s = 0.5
    try:
        await a.start()
        assert not owner(a).claimed and a.worker.resumed == 0
        for i in range(N, N + 10):  # this run's own, journaled under the same name
            a.publish("lead.assigned", {"lead": i})

        async def all_journaled() -> bool:
            return await rows(db, f"{WORKER}@a") == N + 10

        await until(all_journaled, "this run's deliveries journaled too")
        assert await owner(a).round() == 0 and a.worker.resumed == 0  # still not its own
        await other.close()  # the other process is gone (its session ends)
        receiver.up = True

        async def read_its_rows() -> bool:  # at this look or its own loop's
            await owner(a).round()
            return a.worker.resumed > 0

        await until(read_its_rows, "a holding its journal and reading its rows")
        assert owner(a).claimed and a.worker.resumed == N  # the earlier rows only

        async def all_posted() -> bool:
            return len(set(receiver.ids())) == N + 10

        await until(all_posted, "every delivery posted")
        await a.flush()
    finally:
        await a.stop()
        await earlier.stop()
        await other.close()
    assert len(receiver.ids()) == N + 10
    assert sorted(json.loads(b)["data"]["lead"] for _, b in receiver.got) == list(range(N + 10))
    assert await rows(db) == 0
