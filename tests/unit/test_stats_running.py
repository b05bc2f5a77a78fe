"""Today's figures kept as entries change (stats.running, stats.wallboard; issue #19):
the same figures as summing the whole day again, at the cost of what changed."""

from __future__ import annotations

import random
from dataclasses import astuple, fields
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

import stats.wallboard
from cti.events import CallAbandoned, CallAnswered, CallHandled, CallQueued
from stats.formulas import MAX_FIELDS, Counts, EntryFacts, count_entry, figures
from stats.running import RunningCounts
from stats.store import QueueRules
from stats.wallboard import Wallboard, drive

NOW = datetime(2026, 11, 30, 15, tzinfo=UTC)
UTC_TZ = ZoneInfo("UTC")


def exact_sum(parts: list[Counts]) -> Counts:
    """The reference: every sum as an exact fraction, rounded once; the max fields' max."""
    out = Counts()
    for f in fields(Counts):
        values = [getattr(p, f.name) for p in parts]
        if f.name in MAX_FIELDS:
            setattr(out, f.name, max(values, default=0.0))
        elif isinstance(f.default, int):
            setattr(out, f.name, sum(values))
        else:
            setattr(out, f.name, float(sum((Fraction(v) for v in values), Fraction(0))))
    return out


def random_counts(rng: random.Random) -> Counts:
    facts = EntryFacts(
        rng.choice(["answered", "abandoned", "timeout", "refused", "waiting"]),
        wait_s=rng.choice([0.0, 1.0, 7.25, 19.999, 0.1, 1e-7, 3600.5, rng.random() * 100]),
        talk_s=rng.random() * 600, completed=rng.random() < 0.7,
        hold_s=rng.choice([0.0, 0.3, 12.7]), hold_max_s=rng.choice([0.0, 12.7, 40.1]),
        hold_count=rng.randint(0, 2), ringnoanswer=rng.randint(0, 3),
        wrapup_s=rng.choice([None, 0.1, 5.5]), survey_score=rng.choice([None, 1, 5]),
    )  # fmt: skip
    return count_entry(facts, service_level_s=20, short_abandon_s=5, wrapup_s=10)


def test_the_sum_of_the_parts_still_in_is_exact_whatever_came_and_went() -> None:
    rng = random.Random(19)
    running, kept = RunningCounts(), list[Counts]()
    for _ in range(3000):
        if kept and rng.random() < 0.4:
            running.remove(kept.pop(rng.randrange(len(kept))))
        else:
            c = random_counts(rng)
            running.add(c)
            kept.append(c)
        if rng.random() < 0.05:
            assert astuple(running.counts()) == astuple(exact_sum(kept))
    assert running.parts == len(kept)
    assert astuple(running.counts()) == astuple(exact_sum(kept))


def test_floats_that_do_not_add_up_in_floating_point_still_do() -> None:
    running = RunningCounts()
    parts = [Counts(offered=1, wait_sum=x) for x in (0.1, 0.2, 1e16, 0.3)]
    for c in parts:
        running.add(c)
    running.remove(parts[2])  # in floats, 1e16 in and out again leaves 0.0 or 2.0
    assert running.counts().wait_sum == float(Fraction(0.1) + Fraction(0.2) + Fraction(0.3))
    assert running.counts().offered == 3


def test_the_max_is_found_again_only_when_the_last_part_at_it_leaves() -> None:
    running = RunningCounts()
    a, b, c = Counts(wait_max=30.0), Counts(wait_max=30.0), Counts(wait_max=12.0)
    for x in (a, b, c):
        running.add(x)
    running.remove(a)
    assert running.counts().wait_max == 30.0  # b is still at it
    running.remove(b)
    assert running.counts().wait_max == 12.0
    running.remove(c)
    assert astuple(running.counts()) == astuple(Counts())
    assert running.parts == 0


# --- the wallboard ---------------------------------------------------------------------


def recount(wb: Wallboard, rules: dict[str, QueueRules]) -> dict[str, Counts]:
    """Today's figures summed from every entry, as the wallboard did for every frame."""
    out: dict[str, list[Counts]] = {}
    for e in wb.entries.values():
        r = rules.get(e.queue, QueueRules())
        out.setdefault(e.queue, []).append(
            count_entry(e.facts(), service_level_s=r.service_level_s,
                        short_abandon_s=r.short_abandon_s, wrapup_s=r.wrapup_s)
        )  # fmt: skip
    return {q: exact_sum(parts) for q, parts in out.items()}


def test_the_wallboard_shows_what_summing_the_whole_day_again_shows() -> None:
    rng = random.Random(7)
    wb = Wallboard(UTC_TZ)
    rules = {"support": QueueRules(20, 5, 10), "sales": QueueRules(30, 3, 0)}
    queues = ["support", "sales", "billing"]  # billing: no thresholds, the defaults
    for i in range(400):
        u, q, at = f"u{i % 150}", rng.choice(queues), NOW - timedelta(seconds=rng.randint(0, 3600))
        step = rng.random()
        if step < 0.35:
            wb.apply(CallQueued(f"L{i}", at, q, 1, u), NOW)
        elif step < 0.55:
            wb.apply(CallAnswered(f"L{i}", at, q, "x", f"agent{i % 9}", rng.random() * 40, u), NOW)
        elif step < 0.7:
            wb.apply(CallHandled(f"L{i}", at, q, "x", f"agent{i % 9}", 3.0, 90.5, uniqueid=u), NOW)
        elif step < 0.8:
            wb.apply(CallAbandoned(f"L{i}", at, q, 1, rng.random() * 9, u), NOW)
        else:  # the store's row replaces what AMI told
            wb.merge_store(
                [(u, q, at, rng.choice(["answered", "abandoned"]), rng.random() * 30,
                  rng.random() * 300, rng.random() < 0.5, rng.choice([None, 4.5]),
                  f"agent{i % 9}", rng.choice([0.0, 2.5]), f"L{i}")], [], NOW,
            )  # fmt: skip
        if i % 37 == 0:
            assert {q: astuple(c) for q, c in wb.today(rules).items()} == {
                q: astuple(c) for q, c in recount(wb, rules).items()
            }
    rules["support"] = QueueRules(10, 5, 10)  # a supervisor changes a threshold
    assert {q: astuple(c) for q, c in wb.today(rules).items()} == {
        q: astuple(c) for q, c in recount(wb, rules).items()
    }
    per_agent: dict[str, list[Counts]] = {}
    for e in wb.entries.values():
        if e.agent:
            r = rules.get(e.queue, QueueRules())
            per_agent.setdefault(e.agent, []).append(
                count_entry(e.facts(), service_level_s=r.service_level_s,
                            short_abandon_s=r.short_abandon_s, wrapup_s=r.wrapup_s)
            )  # fmt: skip
    expected = {}
    for name, parts in per_agent.items():
        f = figures(exact_sum(parts))
        expected[name] = {"handled": f["handled"], "aht_s": f["aht_s"]}
    assert wb.agents_today(rules) == expected


def test_a_frame_counts_again_only_the_entries_that_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted: list[EntryFacts] = []
    real = count_entry

    def counting(e: EntryFacts, **kw: float) -> Counts:
        counted.append(e)
        return real(e, **kw)

    monkeypatch.setattr(stats.wallboard, "count_entry", counting)
    wb = Wallboard(UTC_TZ)
    rows = [
        (f"u{i}", "support", NOW - timedelta(seconds=i), "answered", 5.0, 60.0, True, None,
         f"agent{i % 50}", 0.0, f"L{i}")
        for i in range(5000)
    ]  # fmt: skip
    wb.merge_store(rows, [], NOW)
    rules = {"support": QueueRules()}
    assert figures(wb.today(rules)["support"])["offered"] == 5000
    assert len(counted) == 5000  # the day, once
    counted.clear()
    wb.apply(CallQueued("L-new", NOW, "support", 1, "u-new", caller_num="13800000000"), NOW)
    wb.apply(CallAnswered("L-new", NOW, "support", "x", "agent3", 4.0, "u-new"), NOW)
    frame = drive(wb.frame_steps([], rules, {}, 0.8, 0.75, NOW))
    assert frame["queues"][0]["today"]["offered"] == 5001
    assert len(counted) == 1  # the new entry, once, however many frames and agents
    counted.clear()
    drive(wb.frame_steps([], rules, {}, 0.8, 0.75, NOW))
    assert counted == []
    wb.today({"support": QueueRules(service_level_s=5)})  # its thresholds changed: all again
    assert len(counted) == 5001


def test_a_new_day_starts_from_nothing() -> None:
    wb = Wallboard(UTC_TZ)
    rules: dict[str, QueueRules] = {}
    wb.apply(CallQueued("L1", NOW, "support", 1, "u1", caller_num="1"), NOW)
    wb.apply(CallAnswered("L1", NOW, "support", "x", "agent1", 4.0, "u1"), NOW)
    assert figures(wb.today(rules)["support"])["answered"] == 1
    tomorrow = NOW + timedelta(days=1)
    drive(wb.frame_steps([], rules, {}, 0.8, 0.75, tomorrow))
    assert wb.today(rules) == {} and wb.agents_today(rules) == {} and wb.callers() == {}
    wb.apply(CallQueued("L2", tomorrow, "support", 1, "u2"), tomorrow)
    assert figures(wb.today(rules)["support"])["offered"] == 1


def members(n: int) -> list[dict[str, object]]:
    """``n`` queue members as the ACD's live model shows them, half of them on a call."""
    return [
        {"interface": f"Local/{i}@agents", "name": f"agent{i}", "paused": False,
         "paused_reason": "", "state": "on_call" if i % 2 else "idle",
         "linkedid": f"L{i}" if i % 2 else None, "state_since": NOW.isoformat()}
        for i in range(n)
    ]  # fmt: skip


def test_a_frame_is_built_in_short_steps_that_add_up_to_the_same_frame() -> None:
    """A start's count of a whole afternoon and a frame of 500 agents never hold the event
    loop in one go: each step between two yields counts at most ENTRIES_A_STEP entries
    and builds at most AGENTS_A_STEP agents' rows; driven to the end, the steps give
    exactly the frame built in one go."""
    wb = Wallboard(UTC_TZ)
    rows = [
        (f"u{i}", "support", NOW - timedelta(seconds=i), "answered", float(i % 40),
         float(i % 300), True, None, f"agent{i % 500}", 0.0, f"L{i}")
        for i in range(3000)
    ]  # fmt: skip
    wb.merge_store(rows, [], NOW)
    rules = {"support": QueueRules()}
    live = [{"name": "support", "entries": [], "members": members(500)}]
    steps = wb.frame_steps(live, rules, {}, 0.8, 0.75, NOW)
    counted_per_step, left = [], len(wb._dirty)
    n_steps = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            stepped = done.value
            break
        n_steps += 1
        counted_per_step.append(left - len(wb._dirty))
        left = len(wb._dirty)
    assert max(counted_per_step) <= stats.wallboard.ENTRIES_A_STEP
    # 3000 entries, 500 agents' figures and 500 agents' rows: that many steps at least
    assert (
        n_steps
        >= 3000 // stats.wallboard.ENTRIES_A_STEP + 2 * 500 // stats.wallboard.AGENTS_A_STEP - 1
    )
    whole = Wallboard(UTC_TZ)
    whole.merge_store(rows, [], NOW)
    assert stepped == drive(whole.frame_steps(live, rules, {}, 0.8, 0.75, NOW))
    assert stepped["queues"][0]["today"]["offered"] == 3000
    assert len(stepped["queues"][0]["agents"]) == 500


def test_entries_that_change_between_the_steps_are_counted_by_the_next_frame() -> None:
    wb = Wallboard(UTC_TZ)
    rules = {"support": QueueRules()}
    rows = [
        (f"u{i}", "support", NOW - timedelta(seconds=i), "answered", 5.0, 60.0, True, None,
         f"agent{i % 7}", 0.0, f"L{i}")
        for i in range(500)
    ]  # fmt: skip
    wb.merge_store(rows, [], NOW)
    steps = wb.frame_steps([], rules, {}, 0.8, 0.75, NOW)
    next(steps)  # the first step counted; a call comes in before the next
    wb.apply(CallQueued("L-new", NOW, "support", 1, "u-new", caller_num="13800000000"), NOW)
    wb.apply(CallAbandoned("L-new", NOW, "support", 1, 30.0, "u-new"), NOW)
    for _ in steps:
        pass
    assert (
        drive(wb.frame_steps([], rules, {}, 0.8, 0.75, NOW))["queues"][0]["today"]["offered"] == 501
    )
    assert wb._dirty == set()
