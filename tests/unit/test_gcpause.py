"""When the daemon runs a full garbage collection (decision 0027): at a quiet moment,
or regardless once an hour; never while calls are in progress before that."""

from __future__ import annotations

import time

from cti.gcpause import FORCE_EVERY_S, QUIET_EVERY_S, GcPolicy


def _policy(calls: list[str], age_s: float) -> GcPolicy:
    policy = GcPolicy(quiet=lambda: not calls)
    policy.last_full = time.monotonic() - age_s
    return policy


def test_no_full_collection_while_calls_are_in_progress() -> None:
    policy = _policy(["call-1"], QUIET_EVERY_S + 1)
    assert policy.collect_if_due() is False
    assert policy.full_collections == 0


def test_a_quiet_moment_collects_once_due() -> None:
    assert _policy([], QUIET_EVERY_S - 5).collect_if_due() is False  # not due yet
    policy = _policy([], QUIET_EVERY_S + 1)
    assert policy.collect_if_due() is True
    assert policy.full_collections == 1
    assert policy.collect_if_due() is False  # just done


def test_a_busy_daemon_still_collects_after_the_longest_wait() -> None:
    policy = _policy(["call-1"], FORCE_EVERY_S + 1)
    assert policy.collect_if_due() is True
