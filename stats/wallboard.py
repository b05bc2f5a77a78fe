"""The live wallboard: per queue what is happening now and today's figures so far.

"Now" (callers waiting, longest wait, agents by state and status) is the ACD's live model.
"Today so far" is kept here per queue entry, keyed by (caller Uniqueid, queue): the
platform's call events update it the moment they arrive (CallQueued / CallAnswered /
CallHandled / CallAbandoned / CallTimedOut: a timeout is never counted as an abandon,
the call model tells them apart), and every queue_log ingest overwrites the same keys
with the stored rows (authoritative, also for what happened while AMI was down). Keyed,
so an entry seen both ways is counted once. I/O-free.

The day's figures per queue and per agent are kept as entries change (stats.running): a
frame counts again only the entries changed since the last one (and a queue's entries
when its thresholds change), so its cost does not grow with the day's calls (issue #19:
at 30,000 entries, summing the day for every frame took 0.3 s of the event loop).

Live agent detail (decision 0026): per member who it talks to (the caller's number and
region, from the entry of the member's call), how long it is in its state, and its calls
handled and AHT today (all queues; stats.formulas). Per queue the longest-waiting caller.
Alarms when a queue crosses a configured threshold (callers waiting, longest wait,
service level below its target).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from cti.events import (
    CallAbandoned,
    CallAnswered,
    CallHandled,
    CallQueued,
    CallTimedOut,
    DomainEvent,
)
from cti.phone import normalize, region
from stats.formulas import Counts, EntryFacts, count_entry, figures
from stats.running import RunningCounts
from stats.store import QueueRules

__all__ = ["WALLBOARD_EVENTS", "AlarmRule", "TodayEntry", "Wallboard", "drive"]

#: The call events that change today's figures (subscribe each to :meth:`Wallboard.apply`).
WALLBOARD_EVENTS: tuple[type[DomainEvent], ...] = (
    CallQueued, CallAnswered, CallHandled, CallAbandoned, CallTimedOut,
)  # fmt: skip


@dataclass(slots=True)
class TodayEntry:
    queue: str
    entered_at: datetime
    outcome: str = "waiting"
    wait_s: float = 0.0
    talk_s: float | None = None
    completed: bool = False
    from_store: bool = False
    wrapup_s: float | None = None
    agent: str = ""
    hold_s: float = 0.0
    linkedid: str = ""
    caller_num: str = ""

    def facts(self) -> EntryFacts:
        return EntryFacts(self.outcome, self.wait_s, self.talk_s, self.completed,
                          hold_s=self.hold_s, wrapup_s=self.wrapup_s)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """A queue's alarm thresholds (0 / False: that alarm is off)."""

    waiting: int = 0  # callers waiting at least this many
    longest_wait_s: float = 0.0  # a caller waiting at least this long
    sl_below_target: bool = True  # today's service level below the queue's target


Key = tuple[str, str]  # (the caller's Uniqueid, the queue)

T = TypeVar("T")

#: A frame's work between two yields of :meth:`Wallboard.frame_steps`: entries counted
#: (about 20 us each) and agents' rows built (a few us each), so that a frame (500 agents)
#: or a start's count (30,000 entries) never holds the event loop for more than about a
#: millisecond: a pop made meanwhile waits for one step, not for the whole frame.
ENTRIES_A_STEP = 20
AGENTS_A_STEP = 50


class Wallboard:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.day: date | None = None
        #: today's entries; changed only through :meth:`apply` and :meth:`merge_store`
        self.entries: dict[Key, TodayEntry] = {}
        self.ivr_abandons: set[str] = set()
        #: the site's country, for callers' numbers given without one (their region)
        self.default_region = "CN"
        self._reset_counts()

    def _reset_counts(self) -> None:
        # what each entry added (its counters and the agent they went to), the sums per
        # queue and per agent, the entries changed since, and each queue's thresholds
        # its entries were counted with
        self._counted: dict[Key, tuple[Counts, str]] = {}
        self._queues: dict[str, RunningCounts] = {}
        self._agents: dict[str, RunningCounts] = {}
        self._agent_figures: dict[str, dict[str, Any]] = {}
        self._dirty: set[Key] = set(self.entries)
        self._thresholds: dict[str, tuple[float, float, float]] = {}
        self._callers = {e.linkedid: e.caller_num for e in self.entries.values() if e.linkedid}

    def _roll(self, now: datetime) -> None:
        today = now.astimezone(self.tz).date()
        if today != self.day:
            self.day = today
            self.entries = {
                k: e for k, e in self.entries.items()
                if e.entered_at.astimezone(self.tz).date() == today
            }  # fmt: skip
            self.ivr_abandons.clear()
            self._reset_counts()

    def _set(self, key: Key, entry: TodayEntry) -> None:
        self.entries[key] = entry
        self._dirty.add(key)
        if entry.linkedid:
            self._callers[entry.linkedid] = entry.caller_num

    def count_some(self, rules: Mapping[str, QueueRules], limit: int = ENTRIES_A_STEP) -> bool:
        """Count at most ``limit`` of the entries changed since the last count into the
        per-queue and per-agent sums; True if some are left. A caller on the event loop
        counts a large change (a start's or a day's load, a queue's new thresholds) in
        steps, yielding between them, instead of one long step."""
        used = self._thresholds
        changed = {q for q, t in used.items() if _thresholds(rules, q) != t}
        if changed:  # a queue's thresholds changed: its entries count again
            self._dirty.update(k for k in self._counted if k[1] in changed)
            for q in changed:  # marked once: what is left of them counts with the new ones
                used[q] = _thresholds(rules, q)
        dirty = self._dirty
        while dirty and limit > 0:
            limit -= 1
            key = dirty.pop()
            before = self._counted.pop(key, None)
            if before is not None:
                self._queues[key[1]].remove(before[0])
                if before[1]:
                    self._agents[before[1]].remove(before[0])
                    self._agent_figures.pop(before[1], None)
            e = self.entries.get(key)
            if e is None:
                continue
            t = used[e.queue] = _thresholds(rules, e.queue)
            counts = count_entry(
                e.facts(), service_level_s=t[0], short_abandon_s=t[1], wrapup_s=t[2]
            )
            _sum(self._queues, e.queue).add(counts)
            if e.agent:
                _sum(self._agents, e.agent).add(counts)
                self._agent_figures.pop(e.agent, None)
            self._counted[key] = (counts, e.agent)
        return bool(dirty)

    def _count(self, rules: Mapping[str, QueueRules]) -> None:
        """Bring the per-queue and per-agent sums up to date with the entries."""
        self.count_some(rules, sys.maxsize)

    def apply(self, event: DomainEvent, now: datetime) -> bool:
        """Apply one of :data:`WALLBOARD_EVENTS`; True if today's figures changed."""
        self._roll(now)
        if isinstance(event, CallQueued):
            key = (event.uniqueid, event.queue)
            if not all(key) or key in self.entries:
                return False
            if event.at.astimezone(self.tz).date() != self.day:
                return False
            self._set(key, TodayEntry(
                event.queue, event.at, linkedid=event.linkedid, caller_num=event.caller_num
            ))  # fmt: skip
            return True
        if isinstance(event, CallAnswered):
            key = (event.caller_uniqueid, event.queue)
        elif isinstance(event, CallHandled | CallAbandoned | CallTimedOut):
            key = (event.uniqueid, event.queue)
        else:
            return False
        e = self.entries.get(key)
        if e is None or e.from_store:
            return False
        if isinstance(event, CallAnswered):
            e.outcome, e.wait_s, e.agent = "answered", event.wait_s, event.member_name
        elif isinstance(event, CallHandled):
            e.outcome, e.completed, e.talk_s = "answered", True, event.talk_s or 0.0
            e.agent = e.agent or event.member_name
        elif isinstance(event, CallAbandoned):
            e.outcome, e.wait_s = "abandoned", event.wait_s
        elif e.outcome == "waiting":  # timeout, exit with a key or leave-empty
            e.outcome, e.wait_s = event.reason, event.wait_s
        self._dirty.add(key)
        return True

    def ivr_abandoned(self, linkedid: str, at: datetime) -> None:
        self._roll(at)
        if at.astimezone(self.tz).date() == self.day:
            self.ivr_abandons.add(linkedid)

    def merge_store(self, rows: Iterable[Sequence[Any]], ivr: Iterable[str],
                    now: datetime) -> None:  # fmt: skip
        """Today's stored entries (callid, queue, entered_at, outcome, wait, talk, completed
        [, wrap-up, agent, hold, linkedid]) replace what AMI told us about the same
        entries (the caller's number, which the store does not keep, stays)."""
        self._roll(now)
        for row in rows:
            callid, queue, entered_at, outcome, wait, talk, completed = row[:7]
            if outcome == "waiting":
                continue  # its end is not logged yet: keep the AMI view
            before = self.entries.get((callid, queue))
            extra = list(row[7:]) + [None] * 4
            self._set((callid, queue), TodayEntry(
                queue, entered_at, outcome, wait, talk, completed, from_store=True,
                wrapup_s=extra[0], agent=extra[1] or "", hold_s=extra[2] or 0.0,
                linkedid=extra[3] or (before.linkedid if before else ""),
                caller_num=before.caller_num if before else "",
            ))  # fmt: skip
        self.ivr_abandons.update(ivr)

    def today(self, rules: Mapping[str, QueueRules]) -> dict[str, Counts]:
        """Per queue, today's counters (``rules``: each queue's thresholds)."""
        self._count(rules)
        return {q: c.counts() for q, c in self._queues.items() if c.parts}

    def agents_today(self, rules: Mapping[str, QueueRules]) -> dict[str, dict[str, Any]]:
        """Per agent, over all queues: handled and AHT today (stats.formulas)."""
        self._count(rules)
        for _ in self._agent_figures_steps(len(self._agents) + 1):
            pass
        return dict(self._agent_figures)

    def _agent_figures_steps(self, per_step: int = AGENTS_A_STEP) -> Generator[None]:
        """Each agent's figures whose counts changed since they were last taken, in steps
        of ``per_step`` agents (after a start's count, every agent's)."""
        out = self._agent_figures
        stale = [n for n, c in self._agents.items() if n not in out and c.parts]
        for i, name in enumerate(stale, 1):
            c = self._agents.get(name)
            if c is not None and c.parts and name not in out:
                f = figures(c.counts())
                out[name] = {"handled": f["handled"], "aht_s": f["aht_s"]}
            if i % per_step == 0:
                yield

    def callers(self) -> Mapping[str, str]:
        """linkedid -> the caller's number (today's entries), kept as they come."""
        return self._callers

    def frame_steps(
        self,
        live_queues: list[dict[str, Any]],
        rules: Mapping[str, QueueRules],
        targets: Mapping[str, float],
        default_target: float,
        risk_fraction: float,
        now: datetime,
        is_personal: Callable[[str], bool] = lambda _: False,
        alarms: Mapping[str, AlarmRule] | None = None,
        default_alarm: AlarmRule = AlarmRule(),
    ) -> Generator[None, None, dict[str, Any]]:
        """The ``{"type": "wallboard", ...}`` message, in steps: yields after each
        :data:`ENTRIES_A_STEP` entries counted and :data:`AGENTS_A_STEP` agents' figures
        and rows, returns the frame (:func:`drive` runs it to the end in one go). A caller
        on the event loop yields to the loop at each step. What changes between the steps
        shows in the frame as far as it got (``live_queues`` is the caller's copy, taken
        once). ``is_personal``: an agent's own owner-first queue (shown only while in
        use); ``alarms``: per queue thresholds (else ``default_alarm``)."""
        self._roll(now)
        while self.count_some(rules):
            yield
        yield from self._agent_figures_steps()
        yield
        today = self.today(rules)
        yield
        per_agent = self.agents_today(rules)
        callers = self.callers()
        yield
        names = sorted({q["name"] for q in live_queues} | set(today) | set(rules))
        by_name = {q["name"]: q for q in live_queues}
        queues = []
        for name in names:
            live = by_name.get(name, {"entries": [], "members": []})
            r = rules.get(name, QueueRules())
            target = targets.get(name, default_target)
            waits = [float(e["wait_s"]) for e in live["entries"]]
            first = max(live["entries"], key=lambda e: float(e["wait_s"]), default=None)
            if is_personal(name) and not waits and name not in today:
                continue  # an agent's personal owner-first queue: shown only when in use
            longest = max(waits, default=0.0)
            states: dict[str, int] = {}
            statuses: dict[str, int] = {}
            agents = []
            for i, m in enumerate(live["members"], 1):
                if i % AGENTS_A_STEP == 0:
                    yield
                state = str(m["state"])
                status = f"paused:{m['paused_reason']}" if m["paused"] else "available"
                if m["paused"] and not m["paused_reason"]:
                    status = "paused"
                states[state] = states.get(state, 0) + 1
                statuses[status] = statuses.get(status, 0) + 1
                name_ = str(m["name"] or m["interface"])
                since = _instant(m.get("state_since"))
                peer = callers.get(str(m.get("linkedid") or ""), "") if state in (
                    "on_call", "on_hold", "ringing") else ""  # fmt: skip
                mine = per_agent.get(name_, {"handled": 0, "aht_s": None})
                agents.append(
                    {"name": name_, "state": state, "status": status,
                     "state_s": round(max(0.0, (now - since).total_seconds()), 1)
                     if since is not None else None,
                     "talking_to": peer,
                     "talking_to_region": _regions(peer, self.default_region),
                     "handled_today": mine["handled"], "aht_today_s": mine["aht_s"]}
                )  # fmt: skip
                if "server" in m:  # a cluster's merged view: where this state comes from
                    agents[-1]["server"] = m["server"]
            f = figures(today.get(name, Counts()))
            sl = f["service_level"]
            rule = (alarms or {}).get(name, default_alarm)
            raised = []
            if rule.waiting and len(waits) >= rule.waiting:
                raised.append({"kind": "waiting", "value": len(waits), "threshold": rule.waiting})
            if rule.longest_wait_s and longest >= rule.longest_wait_s:
                raised.append({"kind": "longest_wait", "value": round(longest, 1),
                               "threshold": rule.longest_wait_s})  # fmt: skip
            if rule.sl_below_target and sl is not None and sl < target:
                raised.append({"kind": "sl", "value": sl, "threshold": target})
            if sl is not None and sl < target:
                risk = "bad"
            elif longest >= risk_fraction * r.service_level_s:
                risk = "warn"
            else:
                risk = "ok"
            queues.append(
                {"queue": name, "waiting": len(waits), "longest_wait_s": round(longest, 1),
                 "agents": agents, "states": states, "statuses": statuses,
                 "today": {k: f[k] for k in (
                     "offered", "answered", "abandoned", "short_abandoned", "timed_out_or_exited",
                     "service_level", "service_level_inclusive", "asa_s", "abandon_rate")},
                 "service_level_s": r.service_level_s, "sl_target": target, "risk": risk,
                 "longest_caller": _longest_caller(first, self.default_region),
                 "alarms": raised}
            )  # fmt: skip
            if "servers" in live:  # a cluster: each Asterisk server's own figures
                queues[-1]["servers"] = live["servers"]
        return {
            "type": "wallboard",
            "at": now.isoformat(),
            "day": self.day.isoformat() if self.day else None,
            "ivr_abandoned": len(self.ivr_abandons),
            "queues": queues,
        }


def drive(steps: Generator[None, None, T]) -> T:
    """Run ``steps`` (e.g. :meth:`Wallboard.frame_steps`) to the end in one go: its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def _sum(sums: dict[str, RunningCounts], name: str) -> RunningCounts:
    found = sums.get(name)
    if found is None:
        found = sums[name] = RunningCounts()
    return found


def _thresholds(rules: Mapping[str, QueueRules], queue: str) -> tuple[float, float, float]:
    """What of a queue's thresholds an entry's counters depend on (formulas.count_entry)."""
    r = rules.get(queue, QueueRules())
    return (r.service_level_s, r.short_abandon_s, r.wrapup_s)


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _regions(number: str, default_region: str) -> dict[str, str]:
    """号码归属地 of a caller number in both languages ("" when unknown)."""
    zh, en = _region_names(number, default_region) if number else ("", "")
    return {"zh": zh, "en": en}


@lru_cache(maxsize=4096)
def _region_names(number: str, default_region: str) -> tuple[str, str]:
    # every frame shows the callers of every agent on a call: each number parsed once
    e164 = normalize(number, default_region)
    return region(e164, "zh"), region(e164, "en")


def _longest_caller(entry: Mapping[str, Any] | None, default_region: str) -> dict[str, Any] | None:
    if entry is None:
        return None
    number = str(entry.get("caller_num") or "")
    return {"caller_num": number, "wait_s": entry.get("wait_s"),
            "region": _regions(number, default_region)}  # fmt: skip
