"""The statistics service: queue_log ingest (start, every AMI reconnect, periodic tail),
AMI/IVR facts (links, holds, IVR abandons) and the wallboard pushes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from cti.cluster.live import ServerBoard
from cti.principal import Principal
from cti.queue_log import RawLine
from cti.records import RecordSource
from cti.services import AgentTime, QueueService
from cti.store.db import Database
from cti.store.hot_read import Plan, Rows, Statement
from stats.models import EntryRow, IvrAbandonRow
from stats.settings import StatsSettings
from stats.store import QueueRules, StatsStore, chunks
from stats.wallboard import AlarmRule, Wallboard

__all__ = ["IngestResult", "StatsService", "scoped_frame"]

log = logging.getLogger(__name__)


#: stored entries the wallboard takes between two yields to the event loop (a start's load
#: of a whole afternoon, 30,000 rows, in short steps: stats.wallboard.ENTRIES_A_STEP)
MERGE_A_STEP = 1000

#: what the wallboard keeps of a stored entry (Wallboard.merge_store's row)
_TODAY_COLUMNS = (
    EntryRow.callid, EntryRow.queue, EntryRow.entered_at, EntryRow.outcome, EntryRow.wait_s,
    EntryRow.talk_s, EntryRow.completed, EntryRow.wrapup_s, EntryRow.agent, EntryRow.hold_s,
    EntryRow.linkedid,
)  # fmt: skip


#: today's entries, as _TODAY_COLUMNS (a hot read, cti.store.hot_read)
_DAY_ENTRIES = Statement(select(*_TODAY_COLUMNS).where(EntryRow.entered_at >= bindparam("since")))


def _day_plan(since: datetime) -> Plan[Rows]:
    """Every entry since ``since``: an afternoon's tens of thousands of rows read and
    converted on a read connection, not on the event loop that makes the pops."""
    rows = yield _DAY_ENTRIES(since=since)
    return rows


def utcnow() -> datetime:
    return datetime.now(UTC)


def scoped_frame(frame: dict[str, Any], who: Principal) -> dict[str, Any]:
    """The wallboard ``frame`` as ``who`` may see it: a supervisor scoped to teams gets
    only their queues and, in them, their agents; the IVR abandons (no queue's) are
    None for them. Unscoped principals get ``frame`` itself."""
    if who.queues is None and who.agents is None:
        return frame
    queues = [
        {**q, "agents": [a for a in q["agents"] if who.sees_agent(str(a["name"]))]}
        for q in frame["queues"] if who.sees_queue(str(q["queue"]))
    ]  # fmt: skip
    return {**frame, "queues": queues, "ivr_abandoned": None}


@dataclass(frozen=True, slots=True)
class IngestResult:
    lines: int
    entries_touched: int
    #: the calls whose entries were derived again
    callids: frozenset[str] = frozenset()


class StatsService:
    def __init__(
        self,
        db: Database,
        tz: ZoneInfo,
        records: RecordSource | None,
        settings: StatsSettings,
        queues: Callable[[], QueueService | None] = lambda: None,
    ) -> None:
        """``records``: where the server's queue_log is read (its file or the store's
        table: cti.records); None: nothing to ingest. ``queues``: the ACD's queues and
        agents (cti.services), read at call time; None (no ACD): default thresholds, no
        agent time, no live queues."""
        self.db = db
        self.queues = queues
        self.tz = tz
        self.records = records
        self.settings = settings
        self.store = StatsStore(db, tz)
        self.wallboard = Wallboard(tz)
        self.rules: dict[str, QueueRules] = {}
        self._lock = asyncio.Lock()
        self._ivr_seen = 0  # the last IVR abandon row the wallboard has (its id)
        self.on_ingested: Callable[[], None] | None = None
        #: in a cluster: every server's live state, and whether this node drives its own
        self.board: ServerBoard | None = None
        self.own_server = ""
        self.driving = False

    async def refresh_rules(self) -> dict[str, QueueRules]:
        acd = self.queues()
        self.rules = await acd.thresholds() if acd is not None else {}
        return self.rules

    async def agent_time(self, since: datetime, until: datetime) -> dict[str, AgentTime]:
        acd = self.queues()
        return await acd.agent_time(since, until) if acd is not None else {}

    def own_live_queues(self) -> list[dict[str, Any]]:
        """This node's ACD live model (its own Asterisk server's queues)."""
        acd = self.queues()
        return acd.live_queues(utcnow()) if acd is not None else []

    def live_queues(self) -> list[dict[str, Any]]:
        """The live queues the wallboard shows: this node's own; in a cluster every
        server's (cti.cluster.live), this node's own model for the server it drives."""
        if self.board is None:
            return self.own_live_queues()
        own = self.own_live_queues() if self.driving else None
        return self.board.merged(utcnow(), self.own_server, own)

    def is_personal_queue(self, queue: str) -> bool:
        acd = self.queues()
        return acd.is_personal_queue(queue) if acd is not None else False

    def target(self, queue: str) -> float:
        return self.settings.sl_target_by_queue.get(queue, self.settings.sl_target)

    # --- queue_log ---------------------------------------------------------------------------
    async def tail(self) -> IngestResult:
        """Read what was written since the last read and bring the store up to date."""
        if self.records is None:
            return IngestResult(0, 0)
        async with self._lock:
            key = self.records.key
            pos = await self.store.position(key)
            rows, new_pos = await self.records.queue_log_after(pos)
            result = await self._ingest(rows, None)
            if new_pos is not None and new_pos != pos:
                await self.store.save_position(key, new_pos, utcnow())
            if result.lines:  # under the lock: loads reach the wallboard in ingest order
                await self._after_ingest(result.callids)
        return result

    async def rebuild(self, since: datetime) -> IngestResult:
        """Re-read every line there is (the file and its rotated siblings, or the
        server's rows): every line at or after ``since`` is stored (once) and every call
        with such a line re-derived. Idempotent."""
        if self.records is None:
            return IngestResult(0, 0)
        async with self._lock:
            rows, pos = await self.records.queue_log_all()
            result = await self._ingest(rows, since, rederive_since=since)
            if pos is not None:
                await self.store.save_position(self.records.key, pos, utcnow())
            await self.store.rollup(await self.store.ivr_buckets_since(since), self.rules)
            await self._after_ingest()
        return result

    async def _ingest(
        self, rows: list[RawLine], since: datetime | None, *, rederive_since: datetime | None = None
    ) -> IngestResult:
        if since is not None:
            rows = [r for r in rows if r.at >= since]
        await self.refresh_rules()
        await self.store.add_lines(rows)
        callids = {r.callid for r in rows}
        if rederive_since is not None:
            callids.update(await self.store.callids_since(rederive_since))
        touched = await self.store.rederive(callids, self.rules) if callids else set()
        return IngestResult(len(rows), len(touched), frozenset(callids))

    async def _after_ingest(self, callids: Collection[str] | None = None) -> None:
        """The wallboard takes the stored entries: of ``callids`` (what an ingest derived
        again), or of the whole day (None)."""
        if callids is None:
            await self._load(None)
        else:
            await self._load_entries(callids)
        if self.on_ingested is not None:
            self.on_ingested()

    async def load_today(self) -> None:
        """Today's stored entries and IVR abandons to the wallboard: at start, after a
        rebuild (the whole day's rows: its size grows through the day)."""
        async with self._lock:
            await self._load(None)

    async def _load_entries(self, callids: Collection[str]) -> None:
        """The stored entries of ``callids`` and the IVR abandons stored since the last
        load to the wallboard: what an ingest changed, at the cost of what changed, not
        of the day's size (issue #19). The whole day when the day has changed."""
        now = utcnow()
        if self.wallboard.day != now.astimezone(self.tz).date():
            await self._load(None)
        else:
            await self._load(sorted(callids))

    async def _load(self, callids: list[str] | None) -> None:
        now = utcnow()
        start = datetime.combine(now.astimezone(self.tz).date(), time(0), self.tz)
        since = start.astimezone(UTC)
        entries = select(*_TODAY_COLUMNS).where(EntryRow.entered_at >= since)
        ivr = select(IvrAbandonRow.id, IvrAbandonRow.linkedid).where(IvrAbandonRow.at >= since)
        if callids is not None:
            ivr = ivr.where(IvrAbandonRow.id > self._ivr_seen)
        rows: Sequence[Sequence[Any]] = []
        if callids is None:  # the whole day: read and converted off the event loop
            rows = await self.db.fetch(partial(_day_plan, since))
        async with self.db.session() as s:
            if callids is not None:
                found: list[Any] = []
                for part in chunks(callids):
                    found.extend((await s.execute(entries.where(EntryRow.callid.in_(part)))).all())
                rows = found
            abandons = (await s.execute(ivr)).all()
        if abandons:
            self._ivr_seen = max(self._ivr_seen, max(a.id for a in abandons))
        self.wallboard.merge_store(rows[:MERGE_A_STEP], [a.linkedid for a in abandons], now)
        for part in chunks(rows[MERGE_A_STEP:], MERGE_A_STEP):  # a day's rows: in steps
            await asyncio.sleep(0)
            self.wallboard.merge_store(part, (), now)
        while True:  # and counted in steps (stats.wallboard.ENTRIES_A_STEP)
            if not self.wallboard.count_some(self.rules):
                break
            await asyncio.sleep(0)

    # --- AMI / bus facts ---------------------------------------------------------------------
    async def link(self, uniqueid: str, linkedid: str) -> None:
        await self.store.add_link(uniqueid, linkedid)

    async def links(self, pairs: Sequence[tuple[str, str]]) -> None:
        """:meth:`link` for several channels, one transaction."""
        await self.store.add_links(pairs)

    async def ivr_abandoned(self, linkedid: str, at: datetime, dnis: str, menu: str) -> None:
        self.wallboard.ivr_abandoned(linkedid, at)
        bucket = await self.store.add_ivr_abandon(linkedid, at, dnis, menu)
        await self.store.rollup({bucket}, self.rules)

    async def held(self, linkedid: str, uniqueid: str, at: datetime) -> None:
        await self.store.hold_started(linkedid, uniqueid, at)

    async def resumed(self, uniqueid: str, at: datetime) -> None:
        callids = await self.store.hold_ended(uniqueid, at)
        if callids:
            async with self._lock:
                await self.store.rederive(callids, self.rules)
                await self._load_entries(callids)

    async def frame(self) -> dict[str, Any]:
        """The ``{"type": "wallboard", ...}`` message now, built in steps
        (:meth:`Wallboard.frame_steps`) that let the pops made meanwhile through."""
        s = self.settings
        default = AlarmRule(s.alarm_waiting, s.alarm_longest_wait_s, s.alarm_sl_below_target)
        alarms = {
            q: AlarmRule(
                default.waiting if a.waiting is None else a.waiting,
                default.longest_wait_s if a.longest_wait_s is None else a.longest_wait_s,
                default.sl_below_target if a.sl_below_target is None else a.sl_below_target,
            )
            for q, a in s.alarms_by_queue.items()
        }
        live = self.live_queues()
        await asyncio.sleep(0)  # the live view's copy: a step of its own
        steps = self.wallboard.frame_steps(
            live, self.rules, s.sl_target_by_queue, s.sl_target,
            s.risk_wait_fraction, utcnow(), self.is_personal_queue, alarms, default,
        )  # fmt: skip
        while True:  # as stats.wallboard.drive, yielding to the loop between the steps
            try:
                next(steps)
            except StopIteration as done:
                frame: dict[str, Any] = done.value
                return frame
            await asyncio.sleep(0)
