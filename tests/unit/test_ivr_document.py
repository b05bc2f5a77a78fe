"""Menus kept as a JSON document (the store, the console's API): the same validation as
the TOML file, every problem named by its key path; make-up workdays and overrides."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ivr.menus import MenuError, load_menus, to_document, validate_document
from ivr.schedule import Override, calendar, check, day_info

EXAMPLE = Path(__file__).resolve().parents[2] / "ivr" / "menus.example.toml"


def doc() -> dict[str, Any]:
    return {
        "defaults": {"menu": "main"},
        "prompts": {"hello": {"text": "您好", "voice": "cmn"}, "beep": {"file": "beep"}},
        "menus": {
            "main": {
                "greeting": "hello",
                "options": {"1": {"action": "queue", "target": "sales"}},
            }
        },
        "schedules": {
            "office": {
                "timezone": "Asia/Shanghai", "holidays": "CN",
                "mon": ["09:00-18:00"], "tue": ["09:00-18:00"], "wed": ["09:00-18:00"],
                "thu": ["09:00-18:00"], "fri": ["09:00-17:00"],
                "closed": {"action": "voicemail", "target": "8000"},
                "emergency": {"action": "hangup", "prompt": "beep"},
            }
        },
    }  # fmt: skip


def problems(d: Any) -> list[str]:
    with pytest.raises(MenuError) as exc:
        validate_document(d)
    return exc.value.problems


def test_the_example_file_round_trips_through_its_document() -> None:
    data = load_menus(EXAMPLE)
    document = to_document(data)
    assert validate_document(document) == data
    assert document["menus"]["main_zh"]["options"]["1"] == {
        "action": "queue", "target": "sales", "prompt": ""
    }  # fmt: skip
    assert document["schedules"]["office"]["extra_holidays"] == ["2026-12-31"]


def test_problems_are_named_by_key_path() -> None:
    d = doc()
    d["menus"]["main"]["options"]["1"] = {"action": "menu", "target": "nowhere"}
    d["menus"]["main"]["options"]["x"] = {"action": "hangup"}
    d["prompts"]["hello"] = {"text": "hi", "file": "beep"}
    ps = problems(d)
    assert "prompts.hello: give exactly one of file, upload or text" in ps, ps
    d = doc()
    d["menus"]["main"]["options"]["1"] = {"action": "menu", "target": "nowhere"}
    d["menus"]["main"]["options"]["x"] = {"action": "hangup"}
    assert problems(d) == [
        "menus.main.options.1.target: unknown menu 'nowhere'",
        "menus.main.options.x: an option key is one digit 0-9, * or #",
    ]


def test_hostile_names_and_dial_targets_are_refused() -> None:
    d = doc()
    d["menus"]["<img src=x onerror=alert(1)>"] = {"greeting": "hello"}
    d["prompts"]["a\r\nb"] = {"file": "beep"}
    d["menus"]["main"]["options"]["3"] = {"action": "external", "target": "abc"}
    assert problems(d) == [
        'prompts."a\r\nb": a name is 1-40 of A-Z a-z 0-9 _ -',
        'menus."<img src=x onerror=alert(1)>": a name is 1-40 of A-Z a-z 0-9 _ -',
        "menus.main.options.3.target: not a valid phone number: 'abc'",
    ]
    d = doc()  # shape errors are reported first, then references
    d["menus"]["main"]["options"]["2"] = {"action": "extension", "target": "1001&PJSIP/evil"}
    (p,) = problems(d)
    assert p.startswith("menus.main.options.2: target of extension must be an extension"), p


def test_start_menu_and_empty_document() -> None:
    assert validate_document({}).menus == {}
    d = doc()
    d["defaults"]["menu"] = ""
    assert problems(d) == ["defaults.menu: choose the start menu"]


def test_schedule_spans_and_site_days_are_checked() -> None:
    d = doc()
    d["schedules"]["office"]["mon"] = ["18:00-09:00"]
    d["schedules"]["office"]["extra_holidays"] = ["2026-05-09"]
    d["schedules"]["office"]["extra_workdays"] = ["2026-05-09"]
    (p,) = problems(d)
    assert p.startswith("schedules.office: mon: a span must end after it starts"), p
    d["schedules"]["office"]["mon"] = ["09:00-18:00"]
    (p,) = problems(d)
    assert "2026-05-09 is both an extra holiday and an extra workday" in p
    d["schedules"]["office"]["extra_workdays"] = []
    d["schedules"]["office"]["emergency"] = {"action": "menu", "target": "main"}
    assert problems(d) == ["schedules.office.emergency.action: emergency cannot be menu"]


def shanghai(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC) - timedelta(hours=8)


def test_china_make_up_workdays_open_with_weekday_hours() -> None:
    office = validate_document(doc()).schedules["office"]
    # Sunday 2026-01-04 is a make-up workday (调休) in the holidays package
    assert day_info(office, date(2026, 1, 4)).kind == "workday"
    assert check(office, shanghai(2026, 1, 4, 10), "UTC").open
    assert not check(office, shanghai(2026, 1, 4, 18, 30), "UTC").open
    # a plain Sunday is closed, the day off it pays for (Jan 2, Friday) is a holiday
    assert not check(office, shanghai(2026, 1, 11, 10), "UTC").open
    assert check(office, shanghai(2026, 1, 2, 10), "UTC").reason == "holiday"
    # make-up workdays keep the hours of workday_hours: Friday closes at 17:00
    d = doc()
    d["schedules"]["office"]["workday_hours"] = "fri"
    friday_hours = validate_document(d).schedules["office"]
    assert not check(friday_hours, shanghai(2026, 1, 4, 17, 30), "UTC").open
    # the site's own days win over the country's
    d["schedules"]["office"]["extra_holidays"] = ["2026-01-04"]
    d["schedules"]["office"]["extra_workdays"] = ["2026-01-02", "2026-01-10"]
    site = validate_document(d).schedules["office"]
    assert check(site, shanghai(2026, 1, 4, 10), "UTC").reason == "holiday"
    assert check(site, shanghai(2026, 1, 2, 10), "UTC").open
    assert check(site, shanghai(2026, 1, 10, 10), "UTC").open  # a Saturday the site works


def test_calendar_lists_holidays_and_make_up_workdays() -> None:
    office = validate_document(doc()).schedules["office"]
    days = dict(calendar(office, 2026))
    assert days[date(2026, 10, 1)].kind == "holiday" and days[date(2026, 10, 1)].source == "CN"
    assert days[date(2026, 1, 4)].kind == "workday"
    assert all(d.year == 2026 for d in days)
    assert days == dict(sorted(days.items()))


def test_overrides_win_until_they_expire() -> None:
    office = validate_document(doc()).schedules["office"]
    open_time = shanghai(2026, 11, 24, 10)  # a Tuesday morning
    night_time = shanghai(2026, 11, 24, 22)
    assert check(office, open_time, "UTC").open
    v = check(office, open_time, "UTC", Override("night"))
    assert (v.open, v.reason, v.action and v.action.action) == (False, "closed", "voicemail")
    v = check(office, open_time, "UTC", Override("emergency"))
    assert (v.open, v.reason, v.action and v.action.action) == (False, "emergency", "hangup")
    assert check(office, night_time, "UTC", Override("day")).open
    assert not check(office, night_time, "UTC", Override("auto")).open
    expired = Override("day", until=night_time - timedelta(minutes=1))
    assert not check(office, night_time, "UTC", expired).open
    # a schedule without an emergency action uses its closed action
    d = doc()
    del d["schedules"]["office"]["emergency"]
    plain = validate_document(d).schedules["office"]
    v = check(plain, open_time, "UTC", Override("emergency"))
    assert v.reason == "emergency" and v.action is not None and v.action.action == "voicemail"
