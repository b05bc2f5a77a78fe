"""Pacing (issue 16): preview never dials by itself, progressive keeps one call per free
agent, predictive dials ahead from the answer rate and talk time but never while the
rolling window has no room for one more dropped call under the cap."""

from __future__ import annotations

from outbound.pacing import Pacer, PacingConfig


def test_preview_never_dials_by_itself() -> None:
    pacer = Pacer(PacingConfig(mode="preview"))
    assert pacer.to_dial(0, free=5, in_flight=0) == 0


def test_progressive_keeps_one_call_per_free_agent() -> None:
    pacer = Pacer(PacingConfig(mode="progressive"))
    assert pacer.to_dial(0, free=3, in_flight=0) == 3
    assert pacer.to_dial(0, free=3, in_flight=2) == 1
    assert pacer.to_dial(0, free=3, in_flight=5) == 0
    assert pacer.to_dial(0, free=0, in_flight=0, busy_elapsed=[10, 20]) == 0


def _warm(pacer: Pacer, answered: int, dials: int, t: float = 0.0) -> None:
    for i in range(dials):
        pacer.dial_ended(t, answered=i < answered)
    for _ in range(answered):
        pacer.connected(t)


def test_predictive_is_progressive_until_the_window_has_room_for_a_drop() -> None:
    pacer = Pacer(PacingConfig(mode="predictive", abandon_cap=0.03))
    _warm(pacer, answered=30, dials=100)  # 0 + 1 > 0.03 * 30
    assert not pacer.room_for_abandon(0)
    assert pacer.to_dial(0, free=4, in_flight=0) == 4
    _warm(pacer, answered=4, dials=0)  # 34 answered: room for one
    assert pacer.room_for_abandon(0)
    assert pacer.to_dial(0, free=4, in_flight=0) > 4


def test_predictive_dials_ahead_from_the_answer_rate() -> None:
    pacer = Pacer(PacingConfig(mode="predictive", max_ratio=10), aggressiveness=1.0)
    _warm(pacer, answered=50, dials=200)  # answer rate 25 %
    assert pacer.answer_rate() == 0.25
    assert pacer.lines_wanted(0, free=4) == 16  # 4 / 0.25
    # busy agents count for the chance they finish within a ring time
    assert pacer.lines_wanted(0, free=4, busy_elapsed=[30.0] * 6) > 16
    # and the ratio is capped
    capped = Pacer(PacingConfig(mode="predictive", max_ratio=2), aggressiveness=1.0)
    _warm(capped, answered=50, dials=200)
    assert capped.lines_wanted(0, free=4) == 8


def test_drops_lower_the_aggressiveness_and_the_cap_stops_dialing_ahead() -> None:
    pacer = Pacer(PacingConfig(mode="predictive", abandon_cap=0.03, window_s=600))
    _warm(pacer, answered=100, dials=300)
    before = pacer.aggressiveness
    pacer.abandoned(1)
    assert pacer.aggressiveness < before
    pacer.abandoned(2)
    assert pacer.abandon_rate(2) == 2 / 102 and pacer.room_for_abandon(2)
    pacer.abandoned(3)  # 3 dropped of 103: no room for a fourth
    assert not pacer.room_for_abandon(3)
    assert pacer.to_dial(3, free=2, in_flight=0) == 2  # progressive
    # the window rolls: ten minutes later the old answers are gone, so are the drops
    assert pacer.abandon_rate(700) == 0.0


def test_the_benchmark_campaign_keeps_the_cap_and_beats_progressive() -> None:
    import argparse
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_dialer", Path(__file__).parents[2] / "bench" / "dialer.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    args = argparse.Namespace(agents=20, hours=3.0, answer=0.3, talk=90.0, wrapup=10.0,
                              cap=0.03, seed=3)  # fmt: skip
    progressive = bench.simulate("progressive", args)
    predictive = bench.simulate("predictive", args)
    assert progressive.abandon_rate == 0.0
    assert predictive.abandon_rate <= 0.03
    assert predictive.occupancy > progressive.occupancy * 1.1
