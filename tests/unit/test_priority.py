"""``cti run``'s CPU priority (cti.priority): the event loop's thread at ``[daemon] nice``
when the process may lower it, told and kept otherwise, never a failed start."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cti.config import DaemonConfig, Settings
from cti.priority import Outcome, set_nice

ROOT = Path(__file__).resolve().parents[2]


def in_a_thread(fn: Callable[[], Outcome]) -> tuple[Outcome, int]:
    """``fn`` in a thread of its own (niceness is per thread on Linux: the test runner's
    stays as it is); what it returned and the thread's niceness after it."""
    out: list[tuple[Outcome, int]] = []

    def run() -> None:
        outcome = fn()
        out.append((outcome, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


def test_the_default_is_a_weight_above_a_default_thread() -> None:
    assert DaemonConfig().nice == -5
    assert Settings().daemon.nice == -5


def test_a_value_outside_linux_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between -20 and 19"):
        set_nice(20)
    with pytest.raises(ValueError, match=r"daemon\.nice"):
        Settings.model_validate({"daemon": {"nice": -21}})


def test_a_higher_value_is_always_set_and_described() -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)
    outcome, now = in_a_thread(lambda: set_nice(min(19, before + 3)))
    assert now == outcome.after == min(19, before + 3)
    assert outcome.before == before and not outcome.refused
    assert outcome.describe() == f"running at nice {now} (was {before})"


def test_a_thread_already_at_or_below_the_value_is_left_as_it_is() -> None:
    if os.geteuid() != 0:  # an unprivileged thread cannot get below its start: refused
        outcome, now = in_a_thread(lambda: set_nice(-20))
        assert outcome.refused and now == outcome.before
        return

    def below_then_ask() -> Outcome:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -7)
        return set_nice(-5)

    outcome, now = in_a_thread(below_then_ask)
    assert now == -7 and outcome.before == outcome.after == -7
    assert outcome.describe() == "running at nice -7"


def test_lowering_without_the_privilege_is_told_not_fatal() -> None:
    """A process that may not lower its niceness keeps it and says why and what to do
    (as root: run without CAP_SYS_NICE, util-linux's setpriv)."""
    code = "from cti.priority import set_nice; o = set_nice(-5); print(o.after, '|', o.describe())"
    drop = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"]
    out = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    after, said = out.stdout.strip().split(" | ")
    assert int(after) >= 0
    assert said.startswith(f"running at nice {after}, not -5: ")
    assert "CAP_SYS_NICE" in said and "Nice=" in said
