"""Business hours, holidays, make-up workdays and overrides: is this number open now?

The order of precedence for one local day: the site's ``extra_holidays``, then its
``extra_workdays``, then the country's public holidays, then the country's make-up
workdays (调休: ``holidays`` knows them as ``weekend_workdays``), then the weekday's
hours. A make-up workday is open with the hours of ``workday_hours``. A supervisor's
:class:`Override` (day / night / emergency, optionally until a time) wins over all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays as hol

from ivr.menus import WEEKDAYS, Action, Schedule

__all__ = [
    "OVERRIDE_MODES",
    "DayInfo",
    "Override",
    "Verdict",
    "calendar",
    "check",
    "day_info",
]

OverrideMode = Literal["auto", "day", "night", "emergency"]
OVERRIDE_MODES: tuple[OverrideMode, ...] = ("auto", "day", "night", "emergency")


@dataclass(frozen=True, slots=True)
class Verdict:
    open: bool
    reason: str = ""  # "closed" | "holiday" | "emergency" when not open
    action: Action | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """A manual state of a schedule: ``day`` (open whatever the hours say), ``night``
    (closed: the schedule's ``closed`` action), ``emergency`` (its ``emergency`` action,
    else ``closed``); ``auto`` or a passed ``until`` means the hours decide."""

    mode: OverrideMode = "auto"
    until: datetime | None = None
    note: str = ""
    set_by: str = ""
    set_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.mode != "auto" and (self.until is None or now < self.until)


@dataclass(frozen=True, slots=True)
class DayInfo:
    kind: Literal["holiday", "workday", "normal"]  # workday = a make-up working day
    name: str = ""
    source: str = ""  # "site" or the country code


@lru_cache(maxsize=64)
def _calendar(country: str, subdiv: str, year: int) -> hol.HolidayBase:
    return hol.country_holidays(country, subdiv=subdiv or None, years=year)


def _country_workdays(cal: hol.HolidayBase, year: int) -> set[date]:
    return {d for d in getattr(cal, "weekend_workdays", ()) if d.year == year}


def day_info(schedule: Schedule, day: date) -> DayInfo:
    if day in schedule.extra_holidays:
        return DayInfo("holiday", "", "site")
    if day in schedule.extra_workdays:
        return DayInfo("workday", "", "site")
    if schedule.holidays:
        cal = _calendar(schedule.holidays, schedule.subdivision, day.year)
        name = cal.get(day)
        if name is not None:
            return DayInfo("holiday", str(name), schedule.holidays)
        if day in _country_workdays(cal, day.year):
            return DayInfo("workday", "", schedule.holidays)
    return DayInfo("normal")


def is_holiday(schedule: Schedule, day: date) -> bool:
    return day_info(schedule, day).kind == "holiday"


def check(
    schedule: Schedule, now: datetime, site_timezone: str, override: Override | None = None
) -> Verdict:
    """``now`` is timezone-aware; it is read in the schedule's (or the site's) zone."""
    if override is not None and override.active(now):
        if override.mode == "day":
            return Verdict(True)
        if override.mode == "emergency":
            return Verdict(False, "emergency", schedule.emergency or schedule.closed)
        return Verdict(False, "closed", schedule.closed)
    local = now.astimezone(ZoneInfo(schedule.timezone or site_timezone))
    info = day_info(schedule, local.date())
    if info.kind == "holiday":
        return Verdict(False, "holiday", schedule.holiday or schedule.closed)
    weekday = local.weekday()
    if info.kind == "workday":
        weekday = WEEKDAYS.index(schedule.workday_hours)
    t = local.time()
    for start, end in schedule.spans(weekday):
        if start <= t < end:
            return Verdict(True)
    return Verdict(False, "closed", schedule.closed)


def calendar(schedule: Schedule, year: int) -> list[tuple[date, DayInfo]]:
    """Every day of ``year`` that is not a normal day (holidays and make-up workdays,
    the site's and the country's), in date order."""
    days: set[date] = {d for d in schedule.extra_holidays if d.year == year}
    days |= {d for d in schedule.extra_workdays if d.year == year}
    if schedule.holidays:
        cal = _calendar(schedule.holidays, schedule.subdivision, year)
        days |= set(cal) | _country_workdays(cal, year)
    return [(d, day_info(schedule, d)) for d in sorted(days)]
