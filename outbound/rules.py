"""When a campaign may call and what happens to a lead after a call (pure: no I/O).

- :class:`CallingWindow`: the campaign's window in the site's time zone, per weekday
  ranges, no calls on listed holidays nor on a country's public holidays (``holidays``
  package); :meth:`CallingWindow.is_open` and :meth:`CallingWindow.next_open`.
- :func:`after_call`: a lead's next state from a call's outcome and the campaign's retry
  rules (per outcome: delay and maximum attempts), a retry never placed outside the
  window (moved to the next opening).
- :func:`recycle_due`: a finished no-answer lead comes back after ``recycle_after_h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from outbound.schemas import RetryRule, Window

__all__ = ["CallingWindow", "LeadNext", "after_call", "recycle_due"]

#: outcomes after which a lead is finished whatever the rules say
FINAL = {"answered": "done", "refused": "dnc"}
#: how far :meth:`CallingWindow.next_open` looks ahead
HORIZON_DAYS = 21


@lru_cache(maxsize=64)
def _public(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays_lib.country_holidays(country, years=year).keys())
    except NotImplementedError:
        return frozenset()


@dataclass(frozen=True)
class CallingWindow:
    window: Window
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_holiday(self, day: date) -> bool:
        if day in self.window.holidays:
            return True
        country = self.window.holiday_country
        return bool(country) and day in _public(country, day.year)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        if self.is_holiday(local.date()):
            return False
        now = local.time().replace(tzinfo=None)
        return any(start <= now and (end is None or now < end)
                   for start, end in self.window.ranges(local.weekday()))  # fmt: skip

    def next_open(self, at: datetime) -> datetime | None:
        """``at`` if the window is open then, else the next opening (None within
        :data:`HORIZON_DAYS`: the window is never open)."""
        if self.is_open(at):
            return at
        local = at.astimezone(self.tz)
        for offset in range(HORIZON_DAYS + 1):
            day = local.date() + timedelta(days=offset)
            if self.is_holiday(day):
                continue
            for start, _ in sorted(self.window.ranges(day.weekday())):
                opening = datetime.combine(day, start, tzinfo=self.tz)
                if opening > local:
                    return opening.astimezone(at.tzinfo)
        return None


@dataclass(frozen=True)
class LeadNext:
    status: str  # retry | done | dnc
    next_at: datetime | None = None
    reason: str = ""


def after_call(
    outcome: str, attempts: int, rules: dict[str, RetryRule], at: datetime,
    window: CallingWindow | None = None,
) -> LeadNext:  # fmt: skip
    """The lead's next state after its ``attempts``-th call ended with ``outcome``."""
    if outcome in FINAL:
        return LeadNext(FINAL[outcome], None, outcome)
    rule = rules.get(outcome)
    if rule is None:
        return LeadNext("done", None, f"no retry rule for {outcome}")
    if attempts >= rule.max_attempts:
        return LeadNext("done", None, f"{attempts} attempts ({outcome}): the most allowed")
    due = at + timedelta(minutes=rule.delay_min)
    if window is not None:
        opening = window.next_open(due)
        if opening is None:
            return LeadNext("done", None, "the calling window never opens")
        due = opening
    return LeadNext("retry", due, f"retry after {outcome}")


def recycle_due(last_outcome: str, finished_at: datetime, now: datetime, hours: int) -> bool:
    """A finished lead's no-answer is redialled ``hours`` after it finished (0: never)."""
    return hours > 0 and last_outcome == "no_answer" and now - finished_at >= timedelta(
        hours=hours)  # fmt: skip
