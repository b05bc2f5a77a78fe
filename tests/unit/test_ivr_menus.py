"""The menu file loader: the example loads; every error names its line and key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.menus import MenuError, key_lines, load_menus, parse_menus
from ivr.schedule import check

EXAMPLE = Path(__file__).resolve().parents[2] / "ivr" / "menus.example.toml"

GOOD = """\
[defaults]
menu = "main"

[prompts]
hello = { file = "beep" }

[menus.main]
greeting = "hello"
fallback = { action = "queue", target = "support" }

[menus.main.options]
"1" = { action = "queue", target = "sales" }
"2" = { action = "menu", target = "sub" }

[menus.sub]
greeting = "hello"
options."*" = { action = "back" }
"""


def problems(text: str) -> list[str]:
    with pytest.raises(MenuError) as exc:
        parse_menus(text, "m.toml")
    return exc.value.problems


def test_example_file_is_valid() -> None:
    data = load_menus(EXAMPLE)
    assert data.defaults.menu in data.menus
    assert data.prompts["welcome_zh"].voice == "cmn"


def test_good_file() -> None:
    data = parse_menus(GOOD)
    assert data.menus["main"].options["2"].target == "sub"
    assert data.menus["sub"].options["*"].action == "back"


def test_syntax_error_has_line_and_column() -> None:
    (p,) = problems(GOOD.replace('menu = "main"', 'menu = "main'))
    assert "line 2" in p and "invalid TOML" in p


def test_unknown_action_points_at_its_line() -> None:
    (p,) = problems(GOOD.replace('"1" = { action = "queue"', '"1" = { action = "dance"'))
    assert p.startswith("m.toml:12: menus.main.options.1.action:"), p


def test_unknown_menu_reference_points_at_the_option() -> None:
    (p,) = problems(GOOD.replace('target = "sub"', 'target = "nowhere"'))
    assert p.startswith("m.toml:13: menus.main.options.2.target: unknown menu"), p


def test_unknown_prompt_and_bad_digit_both_reported() -> None:
    text = GOOD.replace('greeting = "hello"\noptions', 'greeting = "nope"\noptions')
    text = text.replace('"2" = {', '"22" = {')
    ps = problems(text)
    assert any(p.startswith("m.toml:13:") and "one digit" in p for p in ps), ps
    assert any(p.startswith("m.toml:16: menus.sub.greeting: unknown prompt") for p in ps), ps
    ps = problems(GOOD.replace('greeting = "hello"\noptions', 'greeting = "nope"\noptions'))
    assert ps == [
        "m.toml:16: menus.sub.greeting: unknown prompt 'nope' (define it under [prompts])"
    ]


def test_bad_queue_name_and_dial_injection_refused() -> None:
    (p,) = problems(GOOD.replace('target = "sales"', 'target = "sales&PJSIP/x"'))
    assert p.startswith("m.toml:12: menus.main.options.1:"), p
    text = GOOD.replace('target = "sales"', 'target = "x"').replace(
        '"1" = { action = "queue"', '"1" = { action = "external"'
    )
    (p,) = problems(text)
    assert p.startswith("m.toml:12: menus.main.options.1.target: not a valid phone number")


def test_missing_required_key_points_at_its_table() -> None:
    (p,) = problems(GOOD.replace('greeting = "hello"\nfallback', "fallback"))
    assert p.startswith("m.toml:7: menus.main.greeting: Field required"), p


def test_schedule_errors() -> None:
    text = GOOD + (
        '\n[schedules.office]\ntimezone = "Mars/Olympus"\nholidays = "ZZ"\n'
        'mon = ["09:00-18:00"]\nclosed = { action = "hangup" }\n'
    )
    ps = problems(text)
    assert any(p.startswith("m.toml:20: schedules.office.timezone") for p in ps), ps
    assert any(p.startswith("m.toml:21: schedules.office.holidays") for p in ps), ps
    bad_span = GOOD + '\n[schedules.s]\nmon = ["9-18"]\nclosed = { action = "hangup" }\n'
    (p,) = problems(bad_span)
    assert p.startswith("m.toml:20: schedules.s.mon.0:"), p


def test_key_index_handles_quoted_and_dotted_keys() -> None:
    idx = key_lines(GOOD)
    assert idx[("menus", "main", "options")] == 11
    assert idx[("menus", "main", "options", "1", "target")] == 12
    assert idx[("menus", "sub", "options", "*")] == 17


def test_schedule_open_closed_holiday() -> None:
    data = load_menus(EXAMPLE)
    office = data.schedules["office"]
    # Tuesday 2026-11-24 10:00 in Shanghai = 02:00 UTC: open
    assert check(office, datetime(2026, 11, 24, 2, 0, tzinfo=UTC), "UTC").open
    # 12:30 lunch: closed -> forwarding
    v = check(office, datetime(2026, 11, 24, 4, 30, tzinfo=UTC), "UTC")
    assert not v.open and v.reason == "closed" and v.action is not None
    assert v.action.action == "external"
    # National Day (Thursday 2026-10-01) 10:00: holiday -> voicemail
    v = check(office, datetime(2026, 10, 1, 2, 0, tzinfo=UTC), "UTC")
    assert (v.open, v.reason) == (False, "holiday")
    assert v.action is not None and v.action.action == "voicemail"
    # an extra holiday from the file
    assert check(office, datetime(2026, 12, 31, 2, 0, tzinfo=UTC), "UTC").reason == "holiday"
    # Sunday: closed all day
    assert not check(office, datetime(2026, 11, 22, 2, 0, tzinfo=UTC), "UTC").open
    # "always" uses 24:00 as end of day
    assert check(data.schedules["always"], datetime(2026, 11, 22, 23, 59, tzinfo=UTC), "UTC").open
