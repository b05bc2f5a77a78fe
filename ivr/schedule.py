"""Business hours, holidays and time zones: is this number open right now?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as hol

from ivr.menus import Action, Schedule

__all__ = ["Verdict", "check"]


@dataclass(frozen=True, slots=True)
class Verdict:
    open: bool
    reason: str = ""  # "closed" | "holiday" when not open
    action: Action | None = None


@lru_cache(maxsize=64)
def _calendar(country: str, subdiv: str, year: int) -> hol.HolidayBase:
    return hol.country_holidays(country, subdiv=subdiv or None, years=year)


def is_holiday(schedule: Schedule, day: date) -> bool:
    if day in schedule.extra_holidays:
        return True
    if not schedule.holidays:
        return False
    return day in _calendar(schedule.holidays, schedule.subdivision, day.year)


def check(schedule: Schedule, now: datetime, site_timezone: str) -> Verdict:
    """``now`` is timezone-aware; it is read in the schedule's (or the site's) zone."""
    local = now.astimezone(ZoneInfo(schedule.timezone or site_timezone))
    if is_holiday(schedule, local.date()):
        return Verdict(False, "holiday", schedule.holiday or schedule.closed)
    t = local.time()
    for start, end in schedule.spans(local.weekday()):
        if start <= t < end:
            return Verdict(True)
    return Verdict(False, "closed", schedule.closed)
