"""Report queries: hourly, daily, range summaries, agents, staffing (read only).

Every figure comes from :func:`stats.formulas.figures` over summed counters, so the
hourly, daily and range tables use one definition. Days are the site's local days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select

from cti.phone import normalize, region
from cti.services import AgentTime
from cti.store.db import Database
from stats.erlang import agents_needed
from stats.formulas import (
    COUNT_FIELDS,
    Counts,
    add_values,
    count_entry,
    figures,
    ratio,
    sum_counts,
)
from stats.models import EntryRow, HourlyRow, QlogLineRow
from stats.store import IVR_QUEUE, QueueRules, entry_facts

__all__ = [
    "agent_report",
    "daily",
    "day_bounds",
    "hourly",
    "staffing",
    "summary",
]

_MAX_FIELDS = ("wait_max", "hold_max")


def day_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of local midnight of ``first`` and of the day after ``last``."""
    start = datetime.combine(first, time(0), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def _counts_of(row: Any, offset: int) -> Counts:
    """Counters from a result row whose columns from ``offset`` on are COUNT_FIELDS."""
    return Counts(*[v or 0 for v in tuple(row)[offset:]])


def _aggregates() -> list[ColumnElement[Any]]:
    cols: list[ColumnElement[Any]] = []
    for f in COUNT_FIELDS:
        col = getattr(HourlyRow, f)
        cols.append((func.max(col) if f in _MAX_FIELDS else func.sum(col)).label(f))
    return cols


def _where(
    first: date, last: date, queue: str | None, within: frozenset[str] | None = None
) -> list[ColumnElement[bool]]:
    """``within``: only these queues (a supervisor scoped to teams, cti.principal); the
    ``"*"`` totals then cover those queues only, not the IVR abandons (no queue's)."""
    conds: list[ColumnElement[bool]] = [
        HourlyRow.local_day >= first.isoformat(),
        HourlyRow.local_day <= last.isoformat(),
    ]
    if queue is not None:
        conds.append(HourlyRow.queue == queue)
    if within is not None:
        conds.append(HourlyRow.queue.in_(sorted(within)))
    return conds


def _row(keys: dict[str, Any], c: Counts, queue_known: bool = True) -> dict[str, Any]:
    out = figures(c, keys)
    if not queue_known:
        out["ivr_abandoned"] = None
    return out


async def hourly(
    db: Database, first: date, last: date, queue: str | None = None,
    within: frozenset[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per queue and local hour with traffic, plus per hour an ``"*"`` row over
    all queues that also counts the IVR abandons (they belong to no queue)."""
    counts = [getattr(HourlyRow, f) for f in COUNT_FIELDS]
    async with db.reader.connect() as s:  # Core rows: no ORM overhead on thousands of rows
        rows = (
            await s.execute(
                select(HourlyRow.queue, HourlyRow.hour_start, HourlyRow.local_day,
                       HourlyRow.local_hour, *counts)
                .where(*_where(first, last, queue, within))
                .order_by(HourlyRow.hour_start, HourlyRow.queue)
            )
        ).all()  # fmt: skip
    # This loop runs for every row of a month's report, so it works on plain tuples: the
    # rows come ordered by hour, each hour's queues then its "*" total (the rollup's
    # counter columns are NOT NULL; the IVR pseudo-queue only feeds the total).
    out: list[dict[str, Any]] = []
    hour: datetime | None = None
    total: tuple[str, int, str, list[Any]] | None = None
    for q, hour_start, day, h, *values in rows:
        if hour_start != hour:
            if total is not None:
                out.append(_total_row(total))
            hour = hour_start
            total = (day, h, hour_start.isoformat(), values)
        else:
            assert total is not None
            total = (total[0], total[1], total[2], add_values(total[3], values))
        if q != IVR_QUEUE:
            row = figures(Counts(*values), {"queue": q, "day": day, "hour": h,
                                            "hour_start": total[2]})  # fmt: skip
            row["ivr_abandoned"] = None
            out.append(row)
    if total is not None:
        out.append(_total_row(total))
    return out


def _total_row(total: tuple[str, int, str, list[Any]]) -> dict[str, Any]:
    day, h, key, values = total
    return figures(Counts(*values), {"queue": "*", "day": day, "hour": h, "hour_start": key})


async def daily(
    db: Database, first: date, last: date, queue: str | None = None,
    within: frozenset[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per queue and local day, plus a ``"*"`` row per day over all queues."""
    async with db.session() as s:
        result = await s.execute(
            select(HourlyRow.queue, HourlyRow.local_day, *_aggregates())
            .where(*_where(first, last, queue, within))
            .group_by(HourlyRow.queue, HourlyRow.local_day)
            .order_by(HourlyRow.local_day, HourlyRow.queue)
        )
        rows = result.all()
    out: list[dict[str, Any]] = []
    per_day: dict[str, list[Counts]] = {}
    for r in rows:
        c = _counts_of(r, 2)
        per_day.setdefault(r.local_day, []).append(c)
        if r.queue != IVR_QUEUE:
            out.append(_row({"queue": r.queue, "day": r.local_day}, c, queue_known=False))
    for day, cs in per_day.items():
        out.append(_row({"queue": "*", "day": day}, sum_counts(cs)))
    out.sort(key=lambda x: (x["day"], x["queue"] == "*", x["queue"]))
    return out


async def summary(
    db: Database, first: date, last: date, queue: str | None = None,
    within: frozenset[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per queue over the whole range, plus ``"*"`` (all queues + IVR)."""
    async with db.session() as s:
        rows = (
            await s.execute(
                select(HourlyRow.queue, *_aggregates())
                .where(*_where(first, last, queue, within))
                .group_by(HourlyRow.queue)
                .order_by(HourlyRow.queue)
            )
        ).all()
    keys = {"from": first.isoformat(), "to": last.isoformat()}
    out = [
        _row({"queue": r.queue, **keys}, _counts_of(r, 1), queue_known=False)
        for r in rows
        if r.queue != IVR_QUEUE
    ]
    out.append(_row({"queue": "*", **keys}, sum_counts(_counts_of(r, 1) for r in rows)))
    return out


async def agent_report(
    db: Database, first: date, last: date, tz: ZoneInfo, rules: dict[str, QueueRules],
    agent_time: Mapping[str, AgentTime] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per agent: handled, missed (RINGNOANSWER), talk, hold, wrap-up (from entries
    entered in the range), login time and pause by reason (``agent_time``: the ACD's for
    the range, cti.services.QueueService), occupancy = (talk + hold + wrap-up) / (login -
    pause)."""
    start, end = day_bounds(first, last, tz)
    agents: dict[str, dict[str, Any]] = {}

    def agent(name: str) -> dict[str, Any]:
        return agents.setdefault(
            name,
            {"agent": name, "handled": 0, "missed": 0, "talk_s": 0.0, "hold_s": 0.0,
             "hold_count": 0, "wrapup_s": 0.0, "pause_s": 0.0, "pause_by_reason": {},
             "login_s": 0.0, "survey_count": 0, "survey_sum": 0},
        )  # fmt: skip

    async with db.session() as s:
        entries = (
            await s.execute(
                select(
                    EntryRow.agent, EntryRow.queue, EntryRow.talk_s, EntryRow.hold_s,
                    EntryRow.hold_count, EntryRow.wrapup_s, EntryRow.survey_score,
                ).where(
                    EntryRow.entered_at >= start, EntryRow.entered_at < end,
                    EntryRow.completed.is_(True), EntryRow.agent != "",
                )
            )
        ).all()  # fmt: skip
        missed = (
            await s.execute(
                select(QlogLineRow.agent, func.count())
                .where(
                    QlogLineRow.event == "RINGNOANSWER",
                    QlogLineRow.at >= start,
                    QlogLineRow.at < end,
                )
                .group_by(QlogLineRow.agent)
            )
        ).all()
    for name, queue, talk, hold, hold_count, wrapup, score in entries:
        a = agent(name)
        a["handled"] += 1
        a["talk_s"] += max(0.0, (talk or 0.0) - (hold or 0.0))
        a["hold_s"] += hold or 0.0
        a["hold_count"] += hold_count or 0
        # measured per call (acd.wrapup); app_queue's fixed wrapuptime otherwise
        a["wrapup_s"] += wrapup if wrapup is not None else rules.get(queue, QueueRules()).wrapup_s
        if score is not None:
            a["survey_count"] += 1
            a["survey_sum"] += score
    for name, n in missed:
        if name:
            agent(name)["missed"] += int(n)
    for name, t in (agent_time or {}).items():
        a = agent(name)
        a["login_s"] = t.login_s
        a["pause_by_reason"] = {k: round(v, 3) for k, v in t.pause_by_reason}
        a["pause_s"] = sum(v for _, v in t.pause_by_reason)
    for a in agents.values():
        busy = a["talk_s"] + a["hold_s"] + a["wrapup_s"]
        a["aht_s"] = ratio(busy, a["handled"])
        a["survey_avg"] = ratio(a.pop("survey_sum"), a["survey_count"])
        a["occupancy"] = (
            ratio(busy, a["login_s"] - a["pause_s"]) if a["login_s"] > a["pause_s"] else None
        )
    return [agents[k] for k in sorted(agents)]


async def region_report(
    db: Database, first: date, last: date, tz: ZoneInfo, rules: dict[str, QueueRules],
    default_region: str, queue: str | None = None, within: frozenset[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per caller region (号码归属地, cti.phone.region in zh and en; "" unknown): every
    queue figure of the entries entered in the range whose caller is from there."""
    start, end = day_bounds(first, last, tz)
    conds = [EntryRow.entered_at >= start, EntryRow.entered_at < end]
    if queue is not None:
        conds.append(EntryRow.queue == queue)
    if within is not None:
        conds.append(EntryRow.queue.in_(sorted(within)))
    async with db.session() as s:
        rows = (await s.execute(select(EntryRow).where(*conds))).scalars().all()
    counts: dict[tuple[str, str], Counts] = {}
    for e in rows:
        e164 = normalize(e.caller_num, default_region) if e.caller_num else ""
        key = (region(e164, "zh"), region(e164, "en"))
        r = rules.get(e.queue, QueueRules())
        counts.setdefault(key, Counts()).add(
            count_entry(
                entry_facts(e), service_level_s=r.service_level_s,
                short_abandon_s=r.short_abandon_s, wrapup_s=r.wrapup_s,
            )
        )  # fmt: skip
    out = [
        figures(c, {"region": zh, "region_en": en})
        for (zh, en), c in sorted(counts.items(), key=lambda kv: (-kv[1].offered, kv[0]))
    ]
    return out


async def staffing(
    db: Database, day: date, queue: str, rules: dict[str, QueueRules], target: float
) -> list[dict[str, Any]]:
    """Per local hour of ``day``: offered, AHT, and the agents Erlang C says are needed
    to answer ``target`` of the calls within the queue's T. An hour without handled calls
    uses the day's AHT."""
    rows = [r for r in await hourly(db, day, day, queue) if r["queue"] == queue]
    r = rules.get(queue, QueueRules())
    handled = sum(x["handled"] for x in rows)
    busy = sum(x["talk_s"] + x["hold_s"] + x["wrapup_s"] for x in rows)
    day_aht = ratio(busy, handled)
    out = []
    for x in rows:
        aht = x["aht_s"] if x["aht_s"] is not None else day_aht
        out.append(
            {"queue": queue, "day": x["day"], "hour": x["hour"], "hour_start": x["hour_start"],
             "offered": x["offered"], "aht_s": aht, "service_level_s": r.service_level_s,
             "target": target,
             "agents_needed": agents_needed(x["offered"], aht, r.service_level_s, target)}
        )  # fmt: skip
    return out


def parse_days(raw_from: str | None, raw_to: str | None, today: date) -> tuple[date, date]:
    first = date.fromisoformat(raw_from) if raw_from else today
    last = date.fromisoformat(raw_to) if raw_to else first
    if last < first:
        raise ValueError("'to' is before 'from'")
    if (last - first).days > 366:
        raise ValueError("at most 366 days per request")
    return first, last


def queues_in(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({str(r["queue"]) for r in rows if r["queue"] != "*"})
