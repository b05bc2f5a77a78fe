"""Every statistics formula of design.md §4, in one pure module (no I/O, no clock).

Inputs are additive counters (:class:`Counts`): one per queue and hour in the store's
rollup, summed for days and ranges, or built from call rows for today. Ratios and
averages are computed only here, from the summed counters, so an hourly, a daily and a
range figure can never disagree. A ratio whose denominator is zero is ``None`` (no data),
never 0.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "COUNT_FIELDS",
    "MAX_FIELDS",
    "Counts",
    "EntryFacts",
    "add_values",
    "count_entry",
    "figures",
    "local_hour",
    "ratio",
    "sum_counts",
]

#: Outcomes of a queue entry (queue_log events in brackets).
OUTCOMES = (
    "answered",  # CONNECT
    "abandoned",  # ABANDON
    "timeout",  # EXITWITHTIMEOUT
    "exit_key",  # EXITWITHKEY
    "exit_empty",  # EXITEMPTY
    "refused",  # FULL / JOINEMPTY / JOINUNAVAIL (never entered)
    "waiting",  # no end seen yet (in progress, or the caller's end was not logged)
)


@dataclass(slots=True)
class Counts:
    """Additive counters of one bucket (sums of seconds are floats)."""

    offered: int = 0
    answered: int = 0
    answered_within_sl: int = 0
    answered_wait_sum: float = 0.0
    abandoned: int = 0
    short_abandoned: int = 0
    abandon_wait_sum: float = 0.0
    timeout: int = 0
    exit_key: int = 0
    exit_empty: int = 0
    refused: int = 0
    ivr_abandoned: int = 0
    wait_sum: float = 0.0  # every offered entry's queue wait
    wait_max: float = 0.0  # max over every entry's queue wait (answered or not)
    handled: int = 0  # answered and completed
    talk_sum: float = 0.0  # connected time minus in-call hold
    hold_count: int = 0
    hold_sum: float = 0.0
    hold_max: float = 0.0
    wrapup_sum: float = 0.0
    ringnoanswer: int = 0
    survey_count: int = 0  # handled calls whose caller gave a survey score (1-5)
    survey_sum: int = 0

    def add(self, other: Counts) -> None:
        for name in _SUM_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.wait_max = max(self.wait_max, other.wait_max)
        self.hold_max = max(self.hold_max, other.hold_max)


COUNT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Counts))
MAX_FIELDS = ("wait_max", "hold_max")
_SUM_FIELDS = tuple(f for f in COUNT_FIELDS if f not in MAX_FIELDS)
_MAX_INDEXES = tuple(COUNT_FIELDS.index(f) for f in MAX_FIELDS)


def add_values(acc: Sequence[Any], values: Sequence[Any]) -> list[Any]:
    """:meth:`Counts.add` on plain value lists in COUNT_FIELDS order (for report loops
    over thousands of rows): sums, except the max fields."""
    out = list(map(operator.add, acc, values))
    for i in _MAX_INDEXES:
        out[i] = max(acc[i], values[i])
    return out


def sum_counts(items: Iterable[Counts]) -> Counts:
    total = Counts()
    for c in items:
        total.add(c)
    return total


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What one queue entry contributes (one derived call row)."""

    outcome: str
    wait_s: float
    talk_s: float | None = None  # queue_log's talk (bridged time, hold included)
    completed: bool = False  # COMPLETEAGENT / COMPLETECALLER / TRANSFER seen
    hold_count: int = 0
    hold_s: float = 0.0
    hold_max_s: float = 0.0
    ringnoanswer: int = 0
    wrapup_s: float | None = None  # measured after-call work; None: the queue's setting
    survey_score: int | None = None  # the caller's satisfaction score 1-5, if given


def count_entry(
    e: EntryFacts, *, service_level_s: float, short_abandon_s: float, wrapup_s: float
) -> Counts:
    """The counters one entry adds to its entry hour's bucket."""
    c = Counts()
    c.ringnoanswer = e.ringnoanswer
    if e.outcome == "refused":
        c.refused = 1
        return c  # never entered: not offered (design.md §4)
    c.offered = 1
    c.wait_sum = e.wait_s
    c.wait_max = e.wait_s
    if e.outcome == "answered":
        c.answered = 1
        c.answered_wait_sum = e.wait_s
        c.answered_within_sl = 1 if e.wait_s <= service_level_s else 0
        c.hold_count, c.hold_sum, c.hold_max = e.hold_count, e.hold_s, e.hold_max_s
        if e.completed:
            c.handled = 1
            c.talk_sum = max(0.0, (e.talk_s or 0.0) - e.hold_s)
            # per call as measured (acd.wrapup); app_queue's fixed wrapuptime otherwise
            c.wrapup_sum = float(wrapup_s) if e.wrapup_s is None else e.wrapup_s
        if e.survey_score is not None:
            c.survey_count, c.survey_sum = 1, e.survey_score
    elif e.outcome == "abandoned":
        c.abandoned = 1
        c.abandon_wait_sum = e.wait_s
        c.short_abandoned = 1 if e.wait_s < short_abandon_s else 0
    elif e.outcome == "timeout":
        c.timeout = 1
    elif e.outcome == "exit_key":
        c.exit_key = 1
    elif e.outcome == "exit_empty":
        c.exit_empty = 1
    return c


def ratio(num: float, den: float) -> float | None:
    """num / den, or None when den is 0 (no data is not 0 %)."""
    return None if den == 0 else num / den


def figures(c: Counts, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every reported figure of one bucket (design.md §4, exactly); added to ``into``
    (e.g. the row's keys) when given, else to a new dict."""
    # ratios are inlined ``ratio()``: this runs for every row of every report
    offered_ex_short = c.offered - c.short_abandoned
    out: dict[str, Any] = {} if into is None else into
    out.update(
        {
            "offered": c.offered,
            "answered": c.answered,
            "abandoned": c.abandoned,
            "short_abandoned": c.short_abandoned,
            "abandoned_excl_short": c.abandoned - c.short_abandoned,
            "timed_out": c.timeout,
            "exit_key": c.exit_key,
            "exit_empty": c.exit_empty,
            "timed_out_or_exited": c.timeout + c.exit_key + c.exit_empty,
            "refused": c.refused,
            "ivr_abandoned": c.ivr_abandoned,
            # 呼損率 = (offered - answered) / offered
            "call_loss_rate": ((c.offered - c.answered) / c.offered if c.offered else None),
            # (abandoned - short) / (offered - short)
            "abandon_rate": (
                (c.abandoned - c.short_abandoned) / offered_ex_short if offered_ex_short else None
            ),
            # answered within T / answered
            "service_level": (c.answered_within_sl / c.answered if c.answered else None),
            # answered within T / (offered - short abandons)
            "service_level_inclusive": (
                c.answered_within_sl / offered_ex_short if offered_ex_short else None
            ),
            "asa_s": (c.answered_wait_sum / c.answered if c.answered else None),
            "avg_abandon_wait_s": (c.abandon_wait_sum / c.abandoned if c.abandoned else None),
            # every offered entry's queue wait (answered, abandoned, timed out, exited)
            "avg_wait_s": (c.wait_sum / c.offered if c.offered else None),
            "max_wait_s": c.wait_max if c.offered else None,
            "handled": c.handled,
            "talk_s": c.talk_sum,
            "hold_count": c.hold_count,
            "hold_s": c.hold_sum,
            "hold_max_s": c.hold_max if c.hold_count else None,
            "wrapup_s": c.wrapup_sum,
            # (talk + in-call hold + wrap-up) / handled
            "aht_s": ((c.talk_sum + c.hold_sum + c.wrapup_sum) / c.handled if c.handled else None),
            "ringnoanswer": c.ringnoanswer,
            # satisfaction survey (满意度): answers and their mean score (1-5)
            "survey_count": c.survey_count,
            "survey_avg": (c.survey_sum / c.survey_count if c.survey_count else None),
        }
    )
    return out


def local_hour(at: datetime, tz: ZoneInfo) -> tuple[datetime, date, int]:
    """The local hour an instant falls in: (its start as a UTC instant, local date, hour).

    Buckets are keyed by the UTC instant of the local hour's start, so the repeated hour
    of a DST fall-back is two buckets (same local label, different offsets) and the
    skipped hour of a spring-forward is none; zones with half-hour offsets work too.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    local = at.astimezone(tz)
    start_local = local.replace(minute=0, second=0, microsecond=0)
    start_utc = start_local.astimezone(UTC)
    # replace() keeps the fold of `local`, so the repeated hour maps back correctly;
    # guard anyway: the start must not lie after the instant
    if start_utc > at.astimezone(UTC):
        start_utc -= timedelta(hours=1)
    return start_utc, start_local.date(), start_local.hour


def as_dict(c: Counts) -> dict[str, float | int]:
    return asdict(c)
