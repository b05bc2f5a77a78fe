"""Statistics store writes: queue_log lines in, entries derived, hourly rollup kept.

Idempotent by construction: lines are keyed by their hash (insert-or-ignore), an
entry is re-derived from *all* stored lines of its call (delete + insert in one
transaction), and an hourly bucket is recomputed from its entries, never incremented.
So re-reading a file, a rebuild over a range already stored, or a tail racing a
rebuild all converge on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.queue_log import DerivedEntry, RawLine, derive_entries
from cti.records.tail import TailPosition
from cti.services import QueueThresholds
from cti.store.db import Database
from cti.store.hot_read import Plan, Statement
from cti.store.hot_write import Write, plan_of
from cti.store.insert import insert_ignore, insert_ignore_on
from stats.formulas import COUNT_FIELDS, Counts, EntryFacts, count_entry, local_hour
from stats.models import (
    EntryRow,
    HoldRow,
    HourlyRow,
    IngestStateRow,
    IvrAbandonRow,
    LinkRow,
    QlogLineRow,
)

__all__ = ["IVR_QUEUE", "QueueRules", "StatsStore", "chunks", "entry_facts"]

IVR_QUEUE = ""  # the hourly rollup's pseudo-queue holding IVR abandons
CHUNK = 500
HOUR = timedelta(hours=1)
QLOG_TICK = timedelta(seconds=1)  # queue_log stamps whole seconds
Bucket = tuple[str, datetime]  # (queue, hour start UTC)


#: A queue's thresholds, as the ACD offers them (cti.services.QueueService).
QueueRules = QueueThresholds


#: a channel's link, kept if the uniqueid is linked already (Database.write: no ORM session)
_ADD_LINKS = Write(
    lambda dialect: insert_ignore_on(dialect, LinkRow.__table__, ["uniqueid"]),
    ("uniqueid", "linkedid"),
)


def chunks(items: Sequence[Any], n: int = CHUNK) -> Iterable[Sequence[Any]]:
    """``items`` in runs of at most ``n`` (a statement's bound on its parameters)."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


async def _insert_ignore(
    session: AsyncSession, entity: Any, rows: list[dict[str, Any]], key: list[str]
) -> None:
    """Insert ``rows`` (all with the same keys), skipping those already there, as one
    executemany of a cached statement on the entity's table. Not ``.values(rows)``: a
    multi-row VALUES is a new statement each time, compiled on the event loop (one bind
    parameter per cell: 56-264 ms for a tail's rows in a burst, decision 0027)."""
    if rows:
        await session.execute(insert_ignore(session, entity.__table__, key), rows)


class StatsStore:
    def __init__(self, db: Database, tz: ZoneInfo) -> None:
        self.db = db
        self.tz = tz

    # --- tail position ----------------------------------------------------------------------
    async def position(self, path: str) -> TailPosition | None:
        async with self.db.session() as s:
            row = (
                await s.execute(select(IngestStateRow).where(IngestStateRow.path == path))
            ).scalar()
        return TailPosition(row.inode, row.offset) if row is not None else None

    async def save_position(self, path: str, pos: TailPosition, at: datetime) -> None:
        async with self.db.session() as s, s.begin():
            row = (
                await s.execute(select(IngestStateRow).where(IngestStateRow.path == path))
            ).scalar()
            if row is None:
                s.add(IngestStateRow(path=path, inode=pos.inode, offset=pos.offset, updated_at=at))
            else:
                row.inode, row.offset, row.updated_at = pos.inode, pos.offset, at

    # --- lines ------------------------------------------------------------------------------
    async def add_lines(self, lines: Sequence[RawLine]) -> None:
        for part in chunks(lines, 1000):
            rows = [
                {
                    "key": ln.key, "at": ln.at, "callid": ln.callid, "queue": ln.queue,
                    "agent": ln.agent, "event": ln.event, "data": "|".join(ln.data)[:2048],
                }
                for ln in part
            ]  # fmt: skip
            async with self.db.session() as s, s.begin():
                await _insert_ignore(s, QlogLineRow, rows, ["key"])

    async def callids_since(self, since: datetime) -> list[str]:
        async with self.db.session() as s:
            result = await s.execute(
                select(QlogLineRow.callid).where(QlogLineRow.at >= since).distinct()
            )
            return [r for (r,) in result]

    async def _lines_of(self, s: AsyncSession, callids: Sequence[str]) -> list[RawLine]:
        # columns, not entities: no ORM object a line (a tail's step on the loop, #19)
        t = QlogLineRow
        rows = await s.execute(
            select(t.key, t.at, t.callid, t.queue, t.agent, t.event, t.data).where(
                t.callid.in_(callids)
            )
        )
        return [
            RawLine(key, at, callid, queue, agent, event, tuple(data.split("|")))
            for key, at, callid, queue, agent, event, data in rows
        ]

    # --- AMI / IVR facts --------------------------------------------------------------------
    async def add_link(self, uniqueid: str, linkedid: str) -> None:
        await self.add_links([(uniqueid, linkedid)])

    async def add_links(self, links: Sequence[tuple[str, str]]) -> None:
        """(uniqueid, linkedid) pairs in one transaction (a burst links every channel of
        every call; one transaction each held the loop, decision 0027); a uniqueid
        already linked keeps its first linkedid."""
        rows: dict[str, dict[str, Any]] = {}
        for uniqueid, linkedid in links:
            rows.setdefault(uniqueid[:64], {"uniqueid": uniqueid[:64], "linkedid": linkedid[:64]})
        if rows:  # one transaction on the writer, Core compiled once (decision 0027)
            await self.db.write(plan_of(_ADD_LINKS.many(list(rows.values()))))

    async def add_ivr_abandon(self, linkedid: str, at: datetime, dnis: str, menu: str) -> Bucket:
        async with self.db.session() as s, s.begin():
            await _insert_ignore(
                s, IvrAbandonRow,
                [{"linkedid": linkedid[:64], "at": at, "dnis": dnis[:64], "menu": menu[:64]}],
                ["linkedid"],
            )  # fmt: skip
        return (IVR_QUEUE, local_hour(at, self.tz)[0])

    async def hold_started(self, linkedid: str, uniqueid: str, at: datetime) -> None:
        async with self.db.session() as s, s.begin():
            open_ = (
                await s.execute(
                    select(HoldRow).where(HoldRow.uniqueid == uniqueid, HoldRow.ended_at.is_(None))
                )
            ).scalar()
            if open_ is None:
                await _insert_ignore(
                    s, HoldRow,
                    [{"linkedid": linkedid[:64], "uniqueid": uniqueid[:64],
                      "started_at": at, "ended_at": None}],
                    ["uniqueid", "started_at"],
                )  # fmt: skip

    async def hold_ended(self, uniqueid: str, at: datetime) -> list[str]:
        """Close the open hold of ``uniqueid``; returns the callids to re-derive."""
        async with self.db.session() as s, s.begin():
            row = (
                await s.execute(
                    select(HoldRow)
                    .where(HoldRow.uniqueid == uniqueid, HoldRow.ended_at.is_(None))
                    .order_by(HoldRow.started_at.desc())
                )
            ).scalar()
            if row is None:
                return []
            row.ended_at = max(at, row.started_at)
            linkedid = row.linkedid
            links = await s.execute(select(LinkRow.uniqueid).where(LinkRow.linkedid == linkedid))
            return [u for (u,) in links]

    # --- derivation -------------------------------------------------------------------------
    async def rederive(self, callids: Iterable[str], rules: dict[str, QueueRules]) -> set[Bucket]:
        """Re-derive the entries of ``callids`` from their stored lines and recompute the
        hourly buckets they touch (before and after). Returns those buckets."""
        ids = sorted(set(callids))
        touched: set[Bucket] = set()
        for part in chunks(ids):
            async with self.db.session() as s, s.begin():
                lines = await self._lines_of(s, part)
                entries = derive_entries(lines)
                link_rows = await s.execute(
                    select(LinkRow.uniqueid, LinkRow.linkedid).where(LinkRow.uniqueid.in_(part))
                )
                links: dict[str, str] = {u: lk for u, lk in link_rows}
                holds = await self._holds(s, set(links.values()))
                old = await s.execute(
                    select(EntryRow.queue, EntryRow.hour_start).where(EntryRow.callid.in_(part))
                )
                touched.update((q, h) for q, h in old)
                await s.execute(delete(EntryRow).where(EntryRow.callid.in_(part)))
                rows = [self._entry_row(e, links.get(e.callid, ""), holds) for e in entries]
                for rp in chunks(rows, 1000):
                    await _insert_ignore(s, EntryRow, list(rp), ["callid", "queue", "entered_at"])
                touched.update((r["queue"], r["hour_start"]) for r in rows)
        await self.rollup(touched, rules)
        return touched

    async def _holds(
        self, s: AsyncSession, linkedids: set[str]
    ) -> dict[str, list[tuple[datetime, datetime | None]]]:
        out: dict[str, list[tuple[datetime, datetime | None]]] = {}
        if not linkedids:
            return out
        rows = await s.execute(
            select(HoldRow.linkedid, HoldRow.started_at, HoldRow.ended_at).where(
                HoldRow.linkedid.in_(sorted(linkedids))
            )
        )
        for linkedid, start, end in rows:
            out.setdefault(linkedid, []).append((start, end))
        return out

    def _entry_row(
        self,
        e: DerivedEntry,
        linkedid: str,
        holds: dict[str, list[tuple[datetime, datetime | None]]],
    ) -> dict[str, Any]:
        hour, day, h = local_hour(e.entered_at, self.tz)
        count, total, longest = 0, 0.0, 0.0
        if e.answered_at is not None and linkedid:
            for start, end in holds.get(linkedid, []):
                # in-call hold = the part of a hold inside the connected time: a hold
                # that began a moment before CONNECT (queue_log's whole-second clock, or
                # the caller holding as the agent answers) counts from CONNECT on. The
                # end is queue_log's too, truncated to the second: the call really ended
                # within QLOG_TICK after it, so a hold released in that second is whole
                if end is None or end <= e.answered_at:
                    continue
                if e.ended_at is not None and start >= e.ended_at + QLOG_TICK:
                    continue
                stop = min(end, e.ended_at + QLOG_TICK) if e.ended_at is not None else end
                d = max(0.0, (stop - max(start, e.answered_at)).total_seconds())
                count, total, longest = count + 1, total + d, max(longest, d)
        return {
            "callid": e.callid, "linkedid": linkedid, "queue": e.queue,
            "entered_at": e.entered_at, "hour_start": hour, "local_day": day.isoformat(),
            "local_hour": h, "outcome": e.outcome, "wait_s": e.wait_s, "talk_s": e.talk_s,
            "completed": e.completed, "agent": e.agent, "answered_at": e.answered_at,
            "ended_at": e.ended_at, "ringnoanswer": e.ringnoanswer, "hold_count": count,
            "hold_s": total, "hold_max_s": longest, "wrapup_s": e.wrapup_s,
            "survey_score": e.survey_score, "caller_num": e.caller,
        }  # fmt: skip

    # --- rollup -----------------------------------------------------------------------------
    async def rollup(self, buckets: Iterable[Bucket], rules: dict[str, QueueRules]) -> None:
        by_queue: dict[str, list[datetime]] = {}
        for q, h in buckets:
            by_queue.setdefault(q, []).append(h)
        for queue, hours in by_queue.items():
            for part in chunks(sorted(set(hours))):
                entries: dict[datetime, Counts] | None = None
                if queue != IVR_QUEUE:  # counted on a read connection, not on the loop
                    r = rules.get(queue, QueueRules())
                    entries = await self.db.fetch(partial(_bucket_plan, queue, part, r))
                async with self.db.session() as s, s.begin():
                    counts = await self._ivr_counts(s, part) if entries is None else entries
                    await s.execute(
                        delete(HourlyRow).where(
                            HourlyRow.queue == queue, HourlyRow.hour_start.in_(part)
                        )
                    )
                    rows = []
                    for hour, c in counts.items():
                        _, day, hh = local_hour(hour, self.tz)
                        values = {f: getattr(c, f) for f in COUNT_FIELDS}
                        rows.append(
                            {"queue": queue, "hour_start": hour, "local_day": day.isoformat(),
                             "local_hour": hh, **values}
                        )  # fmt: skip
                    if rows:
                        await _insert_ignore(s, HourlyRow, rows, ["queue", "hour_start"])

    async def _ivr_counts(
        self, s: AsyncSession, hours: Sequence[datetime]
    ) -> dict[datetime, Counts]:
        out: dict[datetime, Counts] = {}
        for hour in hours:
            n = len(
                (
                    await s.execute(
                        select(IvrAbandonRow.id).where(
                            IvrAbandonRow.at >= hour, IvrAbandonRow.at < hour + HOUR
                        )
                    )
                ).all()
            )
            if n:
                out[hour] = Counts(ivr_abandoned=n)
        return out

    async def clear_derived(self) -> None:
        """Forget entries and rollup (a full rebuild re-creates them from the lines)."""
        async with self.db.session() as s, s.begin():
            await s.execute(delete(EntryRow))
            await s.execute(delete(HourlyRow).where(HourlyRow.queue != IVR_QUEUE))

    async def ivr_buckets_since(self, since: datetime) -> set[Bucket]:
        async with self.db.session() as s:
            rows = await s.execute(select(IvrAbandonRow.at).where(IvrAbandonRow.at >= since))
            return {(IVR_QUEUE, local_hour(at, self.tz)[0]) for (at,) in rows}


#: EntryFacts' fields, read from the entry's columns of the same names
_FACTS = tuple(f.name for f in fields(EntryFacts))
#: a queue's entries of one hour, as EntryFacts' fields in order
_BUCKET_ENTRIES = Statement(
    select(*(getattr(EntryRow, name) for name in _FACTS)).where(
        EntryRow.queue == bindparam("queue"), EntryRow.hour_start == bindparam("hour")
    )
)


def _bucket_plan(
    queue: str, hours: Sequence[datetime], r: QueueRules
) -> Plan[dict[datetime, Counts]]:
    """The counters of ``queue``'s entries in each of ``hours`` (a hot read: run and
    counted on a read connection, not on the event loop; a busy hour's thousands of
    entries are counted again at every ingest that touches it, issue #19)."""
    out: dict[datetime, Counts] = {}
    for hour in hours:
        rows = yield _BUCKET_ENTRIES(queue=queue, hour=hour)
        if not rows:
            continue
        c = out[hour] = Counts()
        for row in rows:
            c.add(
                count_entry(
                    EntryFacts(*row), service_level_s=r.service_level_s,
                    short_abandon_s=r.short_abandon_s, wrapup_s=r.wrapup_s,
                )
            )  # fmt: skip
    return out


def entry_facts(e: EntryRow) -> EntryFacts:
    return EntryFacts(*(getattr(e, name) for name in _FACTS))
