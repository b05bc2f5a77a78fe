"""The live wallboard: per queue what is happening now and today's figures so far.

"Now" (callers waiting, longest wait, agents by state and status) is the ACD's live model.
"Today so far" is kept here per queue entry, keyed by (caller Uniqueid, queue): the
platform's call events update it the moment they arrive (CallQueued / CallAnswered /
CallHandled / CallAbandoned / CallTimedOut: a timeout is never counted as an abandon,
the call model tells them apart), and every queue_log ingest overwrites the same keys
with the stored rows (authoritative, also for what happened while AMI was down). Keyed,
so an entry seen both ways is counted once. I/O-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cti.events import (
    CallAbandoned,
    CallAnswered,
    CallHandled,
    CallQueued,
    CallTimedOut,
    DomainEvent,
)
from stats.formulas import Counts, EntryFacts, count_entry, figures
from stats.store import QueueRules

__all__ = ["WALLBOARD_EVENTS", "TodayEntry", "Wallboard"]

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


class Wallboard:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.day: date | None = None
        self.entries: dict[tuple[str, str], TodayEntry] = {}
        self.ivr_abandons: set[str] = set()

    def _roll(self, now: datetime) -> None:
        today = now.astimezone(self.tz).date()
        if today != self.day:
            self.day = today
            self.entries = {
                k: e for k, e in self.entries.items()
                if e.entered_at.astimezone(self.tz).date() == today
            }  # fmt: skip
            self.ivr_abandons.clear()

    def apply(self, event: DomainEvent, now: datetime) -> bool:
        """Apply one of :data:`WALLBOARD_EVENTS`; True if today's figures changed."""
        self._roll(now)
        if isinstance(event, CallQueued):
            key = (event.uniqueid, event.queue)
            if not all(key) or key in self.entries:
                return False
            if event.at.astimezone(self.tz).date() != self.day:
                return False
            self.entries[key] = TodayEntry(event.queue, event.at)
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
            e.outcome, e.wait_s = "answered", event.wait_s
        elif isinstance(event, CallHandled):
            e.outcome, e.completed, e.talk_s = "answered", True, event.talk_s or 0.0
        elif isinstance(event, CallAbandoned):
            e.outcome, e.wait_s = "abandoned", event.wait_s
        elif e.outcome == "waiting":  # timeout, exit with a key or leave-empty
            e.outcome, e.wait_s = event.reason, event.wait_s
        return True

    def ivr_abandoned(self, linkedid: str, at: datetime) -> None:
        self._roll(at)
        if at.astimezone(self.tz).date() == self.day:
            self.ivr_abandons.add(linkedid)

    def merge_store(self, rows: Iterable[Sequence[Any]], ivr: Iterable[str],
                    now: datetime) -> None:  # fmt: skip
        """Today's stored entries (callid, queue, entered_at, outcome, wait, talk, completed
        [, wrap-up]) replace what AMI told us about the same entries."""
        self._roll(now)
        for row in rows:
            callid, queue, entered_at, outcome, wait, talk, completed = row[:7]
            if outcome == "waiting":
                continue  # its end is not logged yet: keep the AMI view
            self.entries[(callid, queue)] = TodayEntry(
                queue, entered_at, outcome, wait, talk, completed, from_store=True,
                wrapup_s=row[7] if len(row) > 7 else None,
            )  # fmt: skip
        self.ivr_abandons.update(ivr)

    def today(self, rules: Mapping[str, QueueRules]) -> dict[str, Counts]:
        out: dict[str, Counts] = {}
        for e in self.entries.values():
            r = rules.get(e.queue, QueueRules())
            out.setdefault(e.queue, Counts()).add(
                count_entry(
                    EntryFacts(e.outcome, e.wait_s, e.talk_s, e.completed, wrapup_s=e.wrapup_s),
                    service_level_s=r.service_level_s, short_abandon_s=r.short_abandon_s,
                    wrapup_s=r.wrapup_s,
                )
            )  # fmt: skip
        return out

    def frame(
        self,
        live_queues: list[dict[str, Any]],
        rules: Mapping[str, QueueRules],
        targets: Mapping[str, float],
        default_target: float,
        risk_fraction: float,
        now: datetime,
        is_personal: Callable[[str], bool] = lambda _: False,
    ) -> dict[str, Any]:
        """The ``{"type": "wallboard", ...}`` message; ``is_personal``: an agent's own
        owner-first queue (shown only while in use)."""
        self._roll(now)
        today = self.today(rules)
        names = sorted({q["name"] for q in live_queues} | set(today) | set(rules))
        by_name = {q["name"]: q for q in live_queues}
        queues = []
        for name in names:
            live = by_name.get(name, {"entries": [], "members": []})
            r = rules.get(name, QueueRules())
            target = targets.get(name, default_target)
            waits = [float(e["wait_s"]) for e in live["entries"]]
            if is_personal(name) and not waits and name not in today:
                continue  # an agent's personal owner-first queue: shown only when in use
            longest = max(waits, default=0.0)
            states: dict[str, int] = {}
            statuses: dict[str, int] = {}
            agents = []
            for m in live["members"]:
                state = str(m["state"])
                status = f"paused:{m['paused_reason']}" if m["paused"] else "available"
                if m["paused"] and not m["paused_reason"]:
                    status = "paused"
                states[state] = states.get(state, 0) + 1
                statuses[status] = statuses.get(status, 0) + 1
                agents.append(
                    {"name": m["name"] or m["interface"], "state": state, "status": status}
                )
            f = figures(today.get(name, Counts()))
            sl = f["service_level"]
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
                 "service_level_s": r.service_level_s, "sl_target": target, "risk": risk}
            )  # fmt: skip
        return {
            "type": "wallboard",
            "at": now.isoformat(),
            "day": self.day.isoformat() if self.day else None,
            "ivr_abandoned": len(self.ivr_abandons),
            "queues": queues,
        }
