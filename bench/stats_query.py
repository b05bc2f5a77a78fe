"""Statistics: a month's hourly report over 1,000,000 queue-entry rows, SQLite and PostgreSQL.

Generates ``--rows`` synthetic entries (4 queues, one month, Europe/Berlin, realistic mix
of answered / abandoned / timed out), stores them as ``stats_entries`` rows plus their
hourly rollup (``stats_hourly``, computed with the production formulas), then times:

- report: ``stats.reports.hourly`` for the month (what the REST route runs);
- baseline: the same figures' raw GROUP BY over the entry rows (no rollup).

Prints the median of ``--rounds`` runs of each and the ratio baseline / report. Target:
report <= 100 ms on each database. PostgreSQL: a scratch database on the local server
(CTI_TEST_PG_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres), dropped
afterwards.

    .venv/bin/python bench/stats_query.py [--rows 1000000] [--rounds 5] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scratch_pg import scratch_postgres  # bench/ helper
from sqlalchemy import case, func, insert, select

from cti.store.db import Database
from cti.store.migrate import upgrade
from stats import reports
from stats.formulas import COUNT_FIELDS, Counts, EntryFacts, count_entry, local_hour
from stats.models import EntryRow, HourlyRow

TZ = ZoneInfo("Europe/Berlin")
FIRST = date(2026, 10, 1)
LAST = date(2026, 10, 31)  # includes the DST change of 2026-10-25
QUEUES = ("support", "sales", "billing", "vip")


def synth(n: int, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rnd = random.Random(seed)
    start = datetime(2026, 9, 30, 22, tzinfo=UTC)  # local midnight of Oct 1
    span = (datetime(2026, 10, 31, 23, tzinfo=UTC) - start).total_seconds()
    entries: list[dict[str, Any]] = []
    buckets: dict[tuple[str, datetime], Counts] = {}
    for i in range(n):
        at = start + timedelta(seconds=rnd.random() * span)
        q = QUEUES[i % len(QUEUES)]
        r = rnd.random()
        wait = round(rnd.expovariate(1 / 25), 0)
        if r < 0.8:
            outcome, talk = "answered", round(rnd.expovariate(1 / 180), 0)
        elif r < 0.95:
            outcome, talk = "abandoned", None
        else:
            outcome, talk = "timeout", None
        hold = 30.0 if outcome == "answered" and rnd.random() < 0.1 else 0.0
        hour, day, h = local_hour(at, TZ)
        entries.append(
            {"callid": f"s{i}", "linkedid": f"s{i}", "queue": q, "entered_at": at,
             "hour_start": hour, "local_day": day.isoformat(), "local_hour": h,
             "outcome": outcome, "wait_s": wait, "talk_s": talk,
             "completed": outcome == "answered", "agent": f"agent{i % 40}",
             "answered_at": at if outcome == "answered" else None, "ended_at": at,
             "ringnoanswer": 0, "hold_count": 1 if hold else 0, "hold_s": hold,
             "hold_max_s": hold}
        )  # fmt: skip
        facts = EntryFacts(outcome, wait, talk, outcome == "answered", 1 if hold else 0, hold, hold)
        c = buckets.setdefault((q, hour), Counts())
        c.add(count_entry(facts, service_level_s=20, short_abandon_s=5, wrapup_s=10))
    hourly = []
    for (q, hour), c in buckets.items():
        _, day, h = local_hour(hour, TZ)
        hourly.append(
            {"queue": q, "hour_start": hour, "local_day": day.isoformat(), "local_hour": h,
             **{f: getattr(c, f) for f in COUNT_FIELDS}}
        )  # fmt: skip
    return entries, hourly


async def load(db: Database, entries: list[dict[str, Any]], hourly: list[dict[str, Any]]) -> None:
    per = 2000
    for i in range(0, len(entries), per):
        async with db.session() as s, s.begin():
            await s.execute(insert(EntryRow), entries[i : i + per])
    async with db.session() as s, s.begin():
        await s.execute(insert(HourlyRow), hourly)
    if db.engine.dialect.name == "postgresql":
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("ANALYZE")
    else:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")


async def baseline(db: Database) -> list[Any]:
    """The raw GROUP BY over entry rows for the same month and figures' inputs."""
    start, end = reports.day_bounds(FIRST, LAST, TZ)
    e = EntryRow
    ans = e.outcome == "answered"
    ab = e.outcome == "abandoned"

    def cnt(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    def tot(cond: Any, col: Any) -> Any:
        return func.sum(case((cond, col), else_=0.0))

    q = (
        select(
            e.queue, e.hour_start, func.count(), cnt(ans), cnt(ans & (e.wait_s <= 20)),
            tot(ans, e.wait_s), cnt(ab), cnt(ab & (e.wait_s < 5)), tot(ab, e.wait_s),
            cnt(e.outcome == "timeout"), func.sum(e.wait_s), func.max(e.wait_s),
            cnt(e.completed), func.sum(e.talk_s), func.sum(e.hold_count), func.sum(e.hold_s),
            func.max(e.hold_max_s),
        )
        .where(e.entered_at >= start, e.entered_at < end)
        .group_by(e.queue, e.hour_start)
        .order_by(e.hour_start, e.queue)
    )  # fmt: skip
    async with db.session() as s:
        return list((await s.execute(q)).all())


async def timed(fn: Any, rounds: int) -> tuple[float, float, Any]:
    """Median wall time and median CPU time of this process (the CPU figure is less
    sensitive to other load on a shared machine; the database server's own CPU is not in
    it for PostgreSQL)."""
    times, cpu, result = [], [], None
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        result = await fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), statistics.median(cpu), result


async def run_on(url: str, label: str, data: tuple[list[Any], list[Any]], rounds: int) -> None:
    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    try:
        t = time.perf_counter()
        await load(db, *data)
        print(f"{label}: loaded {len(data[0])} entry rows, {len(data[1])} hourly rows "
              f"in {time.perf_counter() - t:.1f} s")  # fmt: skip
        await reports.hourly(db, FIRST, LAST)  # warm up
        rep_t, rep_cpu, rows = await timed(lambda: reports.hourly(db, FIRST, LAST), rounds)
        base_t, base_cpu, base = await timed(lambda: baseline(db), rounds)
        offered = sum(r["offered"] for r in rows if r["queue"] != "*")
        assert offered == sum(b[2] for b in base) == len(data[0]), "report != baseline"
        print(f"{label}: hourly report, one month ({len(rows)} rows): {rep_t * 1000:.1f} ms "
              f"(median of {rounds}; {rep_cpu * 1000:.1f} ms CPU here); baseline raw GROUP "
              f"BY: {base_t * 1000:.1f} ms ({base_cpu * 1000:.1f} ms CPU here); "
              f"ratio baseline/report {base_t / rep_t:.1f}x; target <= 100 ms: "
              f"{'met' if rep_t <= 0.1 else 'MISSED'}")  # fmt: skip
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores)")
    t = time.perf_counter()
    data = synth(args.rows)
    print(f"generated {args.rows} entries in {time.perf_counter() - t:.1f} s")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            await run_on(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", "SQLite", data,
                         args.rounds)  # fmt: skip
    if args.only in (None, "postgresql"):
        async with scratch_postgres() as url:
            await run_on(url, "PostgreSQL", data, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
