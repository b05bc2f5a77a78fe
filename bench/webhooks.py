"""Outbound webhooks with and without the journal (crm_bridge.webhooks, cti.worker's
``journal_s``), in the same run, on SQLite and PostgreSQL, against a real local receiver
(aiohttp on 127.0.0.1 answering 200).

For each store (each figure the median of ``--rounds`` runs, the two modes alternated):

- ``publish``: the cost of one ``WebhookDispatcher.publish()`` (one receiver) on the
  caller's path, the workers not running: without the journal (the baseline) and with it;
- ``delivered``: deliveries a second and process CPU per delivery, ``--deliveries``
  published at once to a running dispatcher until every one is posted, without and with
  the journal (the journal's writes and deletes run beside the posts);
- ``cpu per delivery at N a second``: ``--rate`` published a second for ``--seconds``
  (a steady load: a receiver that answers posts each before the journal's turn, which
  then writes nothing), without and with the journal;
- ``journal write``: one journal transaction of ``--batch`` deliveries added, and one
  deleting as many rows (what the worker does each interval while a receiver is down,
  then once it is back).

Printed ``name: value unit``.

    .venv/bin/python bench/webhooks.py [--publishes 20000] [--deliveries 2000] [--batch 100]
        [--rate 200] [--seconds 2] [--rounds 5] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from statistics import median

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.*
from scratch_pg import scratch_postgres  # bench/ helper

from crm_bridge.config import CrmConfig
from crm_bridge.webhooks import JOURNAL_S, Delivery, WebhookDispatcher
from cti.pending import PendingStore
from cti.store.db import Database
from cti.store.migrate import upgrade
from tests.local_http import serving

SIGNING = "bench-bench-bench-bench"  # the receiver's HMAC key


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, list[int]]]:
    got = [0]

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        got[0] += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as base:
        yield f"{base}/hook", got


def config(url: str, queue_size: int) -> CrmConfig:
    return CrmConfig.model_validate(
        {
            "webhooks": [{"url": url, "secret": SIGNING, "events": ["call.ended"]}],
            "webhook_queue_size": queue_size,
            "webhook_attempts": 3,
            "webhook_backoff_s": 0.1,
        }
    )


DATA = {
    "linkedid": "1764500000.123",
    "started_at": "2026-11-30T09:00:00+00:00",
    "ended_at": "2026-11-30T09:03:00+00:00",
    "caller_num": "+8613800138000",
    "queue": "sales",
    "agent": "agent101",
    "wait_s": 4.2,
    "talk_s": 171.0,
    "disposition": "answered",
}


def publish_cost(db: Database, url: str, n: int, journal_s: float | None) -> float:
    """Seconds per publish() (the dispatcher not started: only the caller's path)."""
    hooks = WebhookDispatcher(db, config(url, n + 1), journal_s=journal_s)
    t0 = time.perf_counter()
    for _ in range(n):
        hooks.publish("call.ended", DATA)
    return (time.perf_counter() - t0) / n


async def delivered(
    db: Database, url: str, got: list[int], n: int, journal_s: float | None
) -> tuple[float, float]:
    """Deliveries a second and CPU seconds per delivery, ``n`` published at once."""
    hooks = WebhookDispatcher(db, config(url, n + 1), journal_s=journal_s)
    await hooks.start()
    before = got[0]
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        hooks.publish("call.ended", DATA)
    await hooks.flush()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await hooks.stop()
    assert got[0] - before == n and hooks.delivered == n
    return n / wall, cpu / n


async def paced(
    db: Database, url: str, got: list[int], rate: int, seconds: float, journal_s: float | None
) -> float:
    """CPU seconds per delivery, ``rate`` published a second (in 10 ms ticks) for
    ``seconds``, until every one is posted."""
    hooks = WebhookDispatcher(db, config(url, rate * 10 + 1), journal_s=journal_s)
    await hooks.start()
    before = got[0]
    per_tick = max(1, rate // 100)
    ticks = int(seconds * 100)
    c0, t0 = time.process_time(), time.perf_counter()
    for tick in range(ticks):
        for _ in range(per_tick):
            hooks.publish("call.ended", DATA)
        await asyncio.sleep(max(0.0, t0 + (tick + 1) / 100 - time.perf_counter()))
    await hooks.flush()
    cpu = time.process_time() - c0
    await hooks.stop()
    n = per_tick * ticks
    assert got[0] - before == n and hooks.delivered == n
    return cpu / n


async def journal_write(db: Database, batch: int) -> tuple[float, float]:
    store: PendingStore[Delivery] = PendingStore(db, Delivery)
    items = [
        Delivery("http://127.0.0.1/hook", "call.ended", '{"x": 1}' * 40, f"{i:032x}", 0, "", "k")
        for i in range(batch)
    ]
    t0 = time.perf_counter()
    rows = await store.write("bench", items)
    added = time.perf_counter() - t0
    t0 = time.perf_counter()
    await store.write("bench", remove=rows)
    return added, time.perf_counter() - t0


async def run_store(name: str, url: str, args: argparse.Namespace) -> None:
    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    try:
        async with receiver() as (hook, got):
            print(f"{name} load average: {os.getloadavg()[0]:.2f} loadavg", flush=True)
            modes = (("without journal", None), ("with journal", JOURNAL_S))
            costs: dict[str, list[float]] = {label: [] for label, _ in modes}
            for _ in range(args.rounds):  # alternated: the machine's load hits both alike
                for label, journal_s in modes:
                    gc.collect()
                    costs[label].append(publish_cost(db, hook, args.publishes, journal_s))
            for label, _ in modes:
                print(f"{name} publish {label}: {median(costs[label]) * 1e6:.1f} us")
            rates: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in modes}
            for _ in range(args.rounds):
                for label, journal_s in modes:
                    gc.collect()
                    rates[label].append(await delivered(db, hook, got, args.deliveries, journal_s))
            for label, _ in modes:
                rate = median(r for r, _ in rates[label])
                cpu = median(c for _, c in rates[label])
                print(f"{name} delivered {label}: {rate:.0f} deliveries/s")
                print(f"{name} cpu per delivery {label}: {cpu * 1e6:.0f} us", flush=True)
            paced_cpu: dict[str, list[float]] = {label: [] for label, _ in modes}
            for _ in range(args.rounds):
                for label, journal_s in modes:
                    gc.collect()
                    paced_cpu[label].append(
                        await paced(db, hook, got, args.rate, args.seconds, journal_s)
                    )
            for label, _ in modes:
                print(f"{name} cpu per delivery at {args.rate} a second {label}: "
                      f"{median(paced_cpu[label]) * 1e6:.0f} us", flush=True)  # fmt: skip
            adds, removes = [], []
            for _ in range(5):
                a, r = await journal_write(db, args.batch)
                adds.append(a)
                removes.append(r)
            print(f"{name} journal write of {args.batch} added: "
                  f"{sorted(adds)[2] * 1e3:.1f} ms")  # fmt: skip
            print(f"{name} journal write of {args.batch} removed: "
                  f"{sorted(removes)[2] * 1e3:.1f} ms")  # fmt: skip
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--publishes", type=int, default=20_000)
    ap.add_argument("--deliveries", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rate", type=int, default=200, help="paced: deliveries a second")
    ap.add_argument("--seconds", type=float, default=2.0, help="paced: for how long")
    ap.add_argument("--rounds", type=int, default=5, help="medians of this many, alternated")
    ap.add_argument("--stores", default="sqlite,postgresql")
    args = ap.parse_args()
    stores = args.stores.split(",")
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as tmp:
            await run_store("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db", args)
    if "postgresql" in stores:
        async with scratch_postgres() as url:
            await run_store("postgresql", url, args)


if __name__ == "__main__":
    asyncio.run(main())
