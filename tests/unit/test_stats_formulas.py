"""Statistics formulas (design.md §4), Erlang C, queue_log derivation, CSV, wallboard."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cti.events import CallAbandoned, CallAnswered, CallQueued, CallTimedOut
from cti.queue_log import derive_entries, parse_line
from stats.csv_export import to_csv
from stats.erlang import agents_needed, erlang_c, service_level
from stats.formulas import (
    Counts,
    EntryFacts,
    add_values,
    count_entry,
    figures,
    local_hour,
    sum_counts,
)
from stats.store import QueueRules
from stats.wallboard import Wallboard, drive

RULES = {"service_level_s": 20, "short_abandon_s": 5, "wrapup_s": 10}
BERLIN = ZoneInfo("Europe/Berlin")


def entries(*facts: EntryFacts) -> Counts:
    return sum_counts(count_entry(f, **RULES) for f in facts)


def test_no_calls_gives_null_ratios_not_zero() -> None:
    f = figures(Counts())
    assert f["offered"] == 0 and f["answered"] == 0
    for key in ("call_loss_rate", "abandon_rate", "service_level", "service_level_inclusive",
                "asa_s", "avg_abandon_wait_s", "avg_wait_s", "max_wait_s", "aht_s"):  # fmt: skip
        assert f[key] is None, key


def test_all_short_abandons() -> None:
    c = entries(EntryFacts("abandoned", 1), EntryFacts("abandoned", 4.9))
    f = figures(c)
    assert f["offered"] == 2 and f["abandoned"] == 2 and f["short_abandoned"] == 2
    assert f["call_loss_rate"] == 1.0
    assert f["abandon_rate"] is None  # (2-2)/(2-2): no data
    assert f["service_level_inclusive"] is None
    assert f["service_level"] is None
    assert f["avg_abandon_wait_s"] == pytest.approx(2.95)


def test_short_abandon_threshold_is_strict() -> None:
    f = figures(entries(EntryFacts("abandoned", 5.0), EntryFacts("abandoned", 4.0)))
    assert f["short_abandoned"] == 1


def test_mixed_bucket_every_figure() -> None:
    c = entries(
        EntryFacts("answered", 10, talk_s=100, completed=True, hold_count=1, hold_s=20,
                   hold_max_s=20),
        EntryFacts("answered", 20, talk_s=50, completed=True),  # wait == T counts as within
        EntryFacts("answered", 30, talk_s=None, completed=False),  # still talking
        EntryFacts("abandoned", 2),  # short
        EntryFacts("abandoned", 40),
        EntryFacts("timeout", 60),
        EntryFacts("exit_key", 3),
        EntryFacts("refused", 0),
    )  # fmt: skip
    f = figures(c)
    assert f["offered"] == 7  # refused never entered
    assert f["refused"] == 1
    assert f["answered"] == 3 and f["handled"] == 2
    assert f["abandoned"] == 2 and f["short_abandoned"] == 1
    assert f["timed_out_or_exited"] == 2
    assert f["call_loss_rate"] == pytest.approx(4 / 7)
    assert f["abandon_rate"] == pytest.approx(1 / 6)
    assert f["service_level"] == pytest.approx(2 / 3)
    assert f["service_level_inclusive"] == pytest.approx(2 / 6)
    assert f["asa_s"] == pytest.approx(20.0)
    assert f["avg_abandon_wait_s"] == pytest.approx(21.0)
    assert f["avg_wait_s"] == pytest.approx((10 + 20 + 30 + 2 + 40 + 60 + 3) / 7)
    assert f["max_wait_s"] == 60
    assert f["hold_count"] == 1 and f["hold_s"] == 20 and f["hold_max_s"] == 20
    # talk excludes in-call hold: (100-20) + 50; wrap-up 10 per handled call
    assert f["talk_s"] == pytest.approx(130)
    assert f["aht_s"] == pytest.approx((130 + 20 + 20) / 2)


def test_sums_of_buckets_equal_bucket_of_sums() -> None:
    a = entries(EntryFacts("answered", 5, 10, True), EntryFacts("abandoned", 50))
    b = entries(EntryFacts("answered", 25, 20, True))
    both = entries(
        EntryFacts("answered", 5, 10, True), EntryFacts("abandoned", 50),
        EntryFacts("answered", 25, 20, True),
    )  # fmt: skip
    assert figures(sum_counts([a, b])) == figures(both)
    # the report loop's list form of the same addition
    values = add_values(list(astuple(a)), list(astuple(b)))
    assert figures(Counts(*values)) == figures(both)


def test_hour_boundaries() -> None:
    utc = ZoneInfo("UTC")
    h1 = local_hour(datetime(2026, 5, 4, 9, 59, 59, tzinfo=UTC), utc)
    h2 = local_hour(datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC), utc)
    assert h1 == (datetime(2026, 5, 4, 9, tzinfo=UTC), date(2026, 5, 4), 9)
    assert h2 == (datetime(2026, 5, 4, 10, tzinfo=UTC), date(2026, 5, 4), 10)
    # local midnight in Shanghai is 16:00 UTC the day before
    sh = local_hour(datetime(2026, 5, 4, 16, 0, 1, tzinfo=UTC), ZoneInfo("Asia/Shanghai"))
    assert sh == (datetime(2026, 5, 4, 16, tzinfo=UTC), date(2026, 5, 5), 0)
    # half-hour offset zone: the local hour starts at :30 UTC
    ind = local_hour(datetime(2026, 5, 4, 10, 20, tzinfo=UTC), ZoneInfo("Asia/Kolkata"))
    assert ind == (datetime(2026, 5, 4, 9, 30, tzinfo=UTC), date(2026, 5, 4), 15)


def test_dst_spring_forward_berlin() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST; 00:59:59 UTC is 01:59:59 CET, 01:00 UTC is 03:00
    before = local_hour(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC), BERLIN)
    after = local_hour(datetime(2026, 3, 29, 1, 0, tzinfo=UTC), BERLIN)
    assert before == (datetime(2026, 3, 29, 0, tzinfo=UTC), date(2026, 3, 29), 1)
    assert after == (datetime(2026, 3, 29, 1, tzinfo=UTC), date(2026, 3, 29), 3)
    hours = {local_hour(datetime(2026, 3, 28, 23, tzinfo=UTC) + timedelta(minutes=m), BERLIN)[2]
             for m in range(0, 24 * 60, 7)}  # fmt: skip
    assert 2 not in hours and len(hours) == 23  # the day has 23 hours


def test_dst_fall_back_berlin_repeated_hour_is_two_buckets() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET; local 02:xx happens twice
    first = local_hour(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), BERLIN)
    second = local_hour(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), BERLIN)
    assert first[1:] == second[1:] == (date(2026, 10, 25), 2)
    assert first[0] == datetime(2026, 10, 25, 0, tzinfo=UTC)
    assert second[0] == datetime(2026, 10, 25, 1, tzinfo=UTC)
    starts = {local_hour(datetime(2026, 10, 24, 22, tzinfo=UTC) + timedelta(minutes=m), BERLIN)[0]
              for m in range(0, 25 * 60, 7)}  # fmt: skip
    assert len(starts) == 25  # the day has 25 hourly buckets


# --- Erlang C ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "pw"), [(11, 0.6821), (12, 0.4494), (13, 0.2853), (14, 0.1741), (15, 0.1020)]
)
def test_erlang_c_textbook_values(agents: int, pw: float) -> None:
    # A = 10 erlangs (e.g. 200 calls/hour x 180 s AHT)
    assert erlang_c(agents, 10.0) == pytest.approx(pw, abs=5e-4)


def test_erlang_c_staffing_textbook_example() -> None:
    # 200 calls/hour, AHT 180 s, 80 % within 20 s: 13 agents give 79.6 %, 14 give 88.8 %
    assert service_level(13, 10.0, 180, 20) == pytest.approx(0.7956, abs=5e-4)
    assert service_level(14, 10.0, 180, 20) == pytest.approx(0.8884, abs=5e-4)
    assert agents_needed(200, 180, 20, 0.8) == 14
    assert agents_needed(0, 180, 20, 0.8) == 0
    assert agents_needed(10, None, 20, 0.8) is None
    assert erlang_c(10, 10.0) == 1.0 and erlang_c(1, 0.0) == 0.0
    assert agents_needed(100_000, 300, 20, 0.8) is not None  # large N: no overflow


# --- queue_log ------------------------------------------------------------------------------

QLOG = """\
1779000000|c1|support|NONE|ENTERQUEUE||13800138000|1
1779000004|c1|support|agent1|RINGNOANSWER|4000
1779000012|c1|support|agent2|CONNECT|12|c1b|3
1779000042|c1|support|agent2|COMPLETECALLER|12|30|1
1779000100|c2|support|NONE|ENTERQUEUE||139|1
1779000103|c2|support|NONE|ABANDON|1|1|3
1779000200|c3|sales|NONE|ENTERQUEUE||139|1
1779000260|c3|sales|NONE|EXITWITHTIMEOUT|1|1|60
1779000300|c4|sales|NONE|JOINEMPTY|
garbage line
1779000400|c5|support|NONE|CONNECT|5|x|1
"""


def test_derive_entries_from_queue_log() -> None:
    lines = [p for p in (parse_line(t) for t in QLOG.splitlines()) if p is not None]
    assert len(lines) == 10
    got = {e.callid: e for e in derive_entries(reversed(lines))}  # order does not matter
    assert set(got) == {"c1", "c2", "c3", "c4"}  # c5 has no ENTERQUEUE: not ours
    c1 = got["c1"]
    assert (c1.outcome, c1.wait_s, c1.talk_s, c1.completed, c1.agent) == (
        "answered", 12, 30, True, "agent2")  # fmt: skip
    assert c1.ringnoanswer == 1 and c1.missed_by == ["agent1"]
    assert (got["c2"].outcome, got["c2"].wait_s) == ("abandoned", 3)
    assert (got["c3"].outcome, got["c3"].wait_s) == ("timeout", 60)
    assert got["c4"].outcome == "refused"
    assert parse_line("1|a|b|c|") is None and parse_line("x|a|b|c|EV") is None


# --- CSV ------------------------------------------------------------------------------------


def test_csv_neutralises_formulas() -> None:
    text = to_csv([{"queue": "=cmd|' /C calc'!A0", "n": 1}])
    assert text.splitlines()[1].startswith("'=cmd")


# --- wallboard ------------------------------------------------------------------------------


def test_wallboard_counts_ami_and_store_once() -> None:
    tz = ZoneInfo("UTC")
    now = datetime(2026, 11, 23, 10, tzinfo=UTC)
    wb = Wallboard(tz)
    assert wb.apply(CallQueued("L1", now, "support", 1, "u1"), now)
    assert wb.apply(CallAnswered("L1", now, "support", "x", "a1", 25.0, "u1"), now)
    wb.apply(CallQueued("L2", now, "support", 1, "u2"), now)
    wb.apply(CallAbandoned("L2", now, "support", 1, 2.0, "u2"), now)
    wb.apply(CallQueued("L3", now, "support", 1, "u3"), now)
    wb.apply(CallTimedOut("L3", now, "support", 30.0, "timeout", "u3"), now)
    rules = {"support": QueueRules(20, 5, 0)}
    f = figures(wb.today(rules)["support"])
    assert (f["offered"], f["answered"], f["abandoned"], f["short_abandoned"]) == (3, 1, 1, 1)
    assert f["timed_out"] == 1 and f["service_level"] == 0.0
    # the store says the same entry waited 25 s: still one entry
    wb.merge_store([("u1", "support", now, "answered", 25.0, 30.0, True)], [], now)
    assert figures(wb.today(rules)["support"])["offered"] == 3
    frame = drive(wb.frame_steps(
        [{"name": "support", "entries": [{"wait_s": 18.0}], "members": [
            {"name": "a1", "interface": "x", "state": "idle", "paused": True,
             "paused_reason": "lunch"}]}],
        rules, {}, 0.8, 0.75, now,
    ))  # fmt: skip
    q = frame["queues"][0]
    assert frame["type"] == "wallboard"
    assert q["waiting"] == 1 and q["longest_wait_s"] == 18.0
    assert q["statuses"] == {"paused:lunch": 1} and q["risk"] == "bad"


def test_wallboard_shows_an_owner_queue_only_while_in_use() -> None:
    now = datetime(2026, 11, 23, 10, tzinfo=UTC)
    wb = Wallboard(ZoneInfo("UTC"))
    idle = {"name": "cti_owner_7", "entries": [], "members": []}
    busy = {"name": "cti_owner_8", "entries": [{"wait_s": 3.0}], "members": []}
    frame = drive(
        wb.frame_steps(
            [idle, busy], {}, {}, 0.8, 0.75, now, is_personal=lambda q: q.startswith("cti_owner_")
        )
    )
    assert [q["queue"] for q in frame["queues"]] == ["cti_owner_8"]
