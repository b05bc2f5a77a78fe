"""The calling window (site time zone, per weekday, holidays) and the retry rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from outbound.rules import CallingWindow, after_call, recycle_due
from outbound.schemas import RetryRule, Window

TZ = "Asia/Shanghai"


def _window(**kw: object) -> CallingWindow:
    return CallingWindow(Window.model_validate({
        "days": {"mon": [["09:00", "12:00"], ["14:00", "18:00"]], "sat": [["10:00", "24:00"]]},
        **kw,
    }), TZ)  # fmt: skip


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(TZ)).astimezone(UTC)


def test_the_window_is_kept_in_the_site_time_zone() -> None:
    w = _window()
    # Monday 2026-11-23 in Shanghai
    assert not w.is_open(local(2026, 11, 23, 8, 59))
    assert w.is_open(local(2026, 11, 23, 9, 0))
    assert not w.is_open(local(2026, 11, 23, 12, 0))  # the end is excluded
    assert w.is_open(local(2026, 11, 23, 17, 59))
    assert not w.is_open(local(2026, 11, 24, 10))  # Tuesday: no ranges
    assert w.is_open(local(2026, 11, 28, 23, 59))  # Saturday to midnight
    # 09:30 UTC is 17:30 in Shanghai: open, although 09:30 "looks" like the morning
    assert w.is_open(datetime(2026, 11, 23, 9, 30, tzinfo=UTC))
    assert w.next_open(local(2026, 11, 23, 12, 30)) == local(2026, 11, 23, 14, 0)
    assert w.next_open(local(2026, 11, 23, 19)) == local(2026, 11, 28, 10, 0)


def test_holidays_close_the_window() -> None:
    listed = _window(holidays=[date(2026, 11, 23)])
    assert not listed.is_open(local(2026, 11, 23, 10))
    assert listed.next_open(local(2026, 11, 23, 10)) == local(2026, 11, 28, 10)
    national = CallingWindow(Window.model_validate(
        {"days": {"thu": [["09:00", "18:00"]]}, "holiday_country": "CN"}), TZ)  # fmt: skip
    assert not national.is_open(local(2026, 10, 1, 10))  # National Day, a Thursday
    assert national.is_open(local(2026, 10, 15, 10))
    never = CallingWindow(Window.model_validate({"days": {}}), TZ)
    assert never.next_open(local(2026, 11, 23, 10)) is None


RULES = {"busy": RetryRule(delay_min=10, max_attempts=3),
         "no_answer": RetryRule(delay_min=120, max_attempts=2)}  # fmt: skip


def test_retries_follow_the_rule_of_the_outcome() -> None:
    t = local(2026, 11, 23, 9, 30)
    first = after_call("busy", 1, RULES, t)
    assert (first.status, first.next_at) == ("retry", t + timedelta(minutes=10))
    assert after_call("busy", 3, RULES, t).status == "done"  # the third attempt was the last
    assert after_call("no_answer", 1, RULES, t).next_at == t + timedelta(hours=2)
    assert after_call("answered", 1, RULES, t).status == "done"
    assert after_call("refused", 1, RULES, t).status == "dnc"
    assert after_call("machine", 1, RULES, t).status == "done"  # no rule: not retried


def test_a_retry_waits_for_the_window() -> None:
    w = _window()
    t = local(2026, 11, 23, 11, 0)
    nxt = after_call("no_answer", 1, RULES, t, w)  # 13:00 is in the lunch break
    assert nxt.next_at == local(2026, 11, 23, 14, 0)


def test_recycling_no_answers() -> None:
    t = local(2026, 11, 23, 9)
    assert recycle_due("no_answer", t, t + timedelta(hours=4), 4)
    assert not recycle_due("no_answer", t, t + timedelta(hours=3), 4)
    assert not recycle_due("busy", t, t + timedelta(hours=9), 4)
    assert not recycle_due("no_answer", t, t + timedelta(hours=99), 0)
