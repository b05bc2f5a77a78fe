"""The ACD live model fed as the daemon feeds it, in any order: queue member AMI events
directly, call AMI events through the platform's call model (the only reader of those)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from acd.live import CALL_EVENTS, LiveModel, QueueLive
from acd.queues_conf import QueueParams, render
from acd.store import ConfigInvalid, queue_params
from cti.calls.model import CallModel

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
IFACE = "Local/101@cti-sim-agents/n"


def ev(name: str, t: float, **headers: str) -> dict[str, str]:
    return {"Event": name, "Timestamp": f"{(T0 + timedelta(seconds=t)).timestamp():.6f}", **headers}


def member(name: str, t: float, **kw: str) -> dict[str, str]:
    base = {"Queue": "support", "Interface": IFACE, "MemberName": "alice", "Penalty": "0",
            "Paused": "0", "Membership": "dynamic", "Status": "1"}  # fmt: skip
    return ev(name, t, **{**base, **kw})


class Fed:
    """The live model with the platform's call model in front of it."""

    def __init__(self) -> None:
        self.live = LiveModel()
        self.calls = CallModel()

    @property
    def queues(self) -> dict[str, QueueLive]:
        return self.live.queues

    def handle(self, msg: dict[str, str], now: datetime) -> None:
        self.live.handle(msg, now)
        for event in self.calls.handle(msg, now):
            if isinstance(event, CALL_EVENTS):
                self.live.apply(event)


def feed(events: list[dict[str, str]]) -> LiveModel:
    model = Fed()
    for e in events:
        model.handle(e, T0 + timedelta(seconds=100))
    return model.live


def test_member_added_paused_penalty() -> None:
    model = feed(
        [
            member("QueueMemberAdded", 1),
            member("QueueMemberPause", 2, Paused="1", PausedReason="lunch"),
            member("QueueMemberPenalty", 3, Paused="1", PausedReason="lunch", Penalty="3"),
        ]
    )
    m = model.queues["support"].members[IFACE]
    assert (m.paused, m.paused_reason, m.penalty, m.name) == (True, "lunch", 3, "alice")


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_member_events_in_any_order_end_in_the_newest_state(order: tuple[int, ...]) -> None:
    events = [
        member("QueueMemberAdded", 1),
        member("QueueMemberPause", 2, Paused="1", PausedReason="break"),
        member("QueueMemberPause", 3, Paused="0"),
    ]
    model = feed([events[i] for i in order])
    m = model.queues["support"].members[IFACE]
    assert not m.paused and m.paused_reason == ""


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_removed_member_is_not_resurrected_by_late_events(order: tuple[int, ...]) -> None:
    events = [
        member("QueueMemberAdded", 1),
        member("QueueMemberStatus", 2, Status="2"),
        member("QueueMemberRemoved", 3),
    ]
    model = feed([events[i] for i in order])
    assert IFACE not in model.queues["support"].members


def call_events() -> list[dict[str, str]]:
    c = {"Queue": "support", "Uniqueid": "u1", "Linkedid": "L1", "Channel": "Local/x;2"}
    a = {**c, "Interface": IFACE, "MemberName": "alice"}
    return [
        ev("QueueCallerJoin", 10, **c, Position="1", CallerIDNum="13800138000"),
        ev("AgentCalled", 11, **a),
        ev("AgentConnect", 13, **a, HoldTime="3"),
        ev("QueueCallerLeave", 13.001, **c),
        ev("AgentComplete", 20, **a, TalkTime="7"),
    ]


@pytest.mark.parametrize("seed", range(12))
def test_call_lifecycle_in_shuffled_order(seed: int) -> None:
    import random

    events = call_events()
    random.Random(seed).shuffle(events)
    model = feed([member("QueueMemberAdded", 1), *events])
    q = model.queues["support"]
    assert q.entries == {}  # the caller left, whatever came first
    m = q.members[IFACE]
    assert m.state == "idle" and m.linkedid == ""
    assert q.completed == 1


@pytest.mark.parametrize("join_first", [True, False])
def test_members_still_ringing_when_the_caller_leaves_are_idle(join_first: bool) -> None:
    """Ring-all: one member answers, the other's phone stops ringing when the caller
    leaves the queue (app_queue sends no RingNoAnswer for it); also when AgentCalled came
    before the caller's QueueCallerJoin (no entry to remember who was rung)."""
    other = "Local/102@cti-sim-agents/n"
    c = {"Queue": "support", "Uniqueid": "u1", "Linkedid": "L1", "Channel": "Local/x;2"}
    a = {**c, "Interface": IFACE, "MemberName": "alice"}
    b = {**c, "Interface": other, "MemberName": "bob"}
    join = ev("QueueCallerJoin", 10, **c, Position="1")
    calls = [ev("AgentCalled", 11, **a), ev("AgentCalled", 11, **b)]
    model = Fed()
    for e in (
        member("QueueMemberAdded", 1),
        member("QueueMemberAdded", 1, Interface=other, MemberName="bob"),
        member("QueueMemberAdded", 1, Interface="Local/103@cti-sim-agents/n", MemberName="c"),
        *([join, *calls] if join_first else [*calls, join]),
        ev("AgentConnect", 13, **a, HoldTime="3"),
    ):
        model.handle(e, T0)
    q = model.queues["support"]
    assert q.members[other].state == "ringing"
    model.handle(ev("QueueCallerLeave", 13.001, **c), T0)
    assert (q.members[other].state, q.members[other].linkedid) == ("idle", "")
    assert q.members[IFACE].state == "on_call"


def test_states_ringing_on_call_hold_wrapup() -> None:
    model = Fed()
    model.handle(member("QueueMemberAdded", 1, Wrapuptime="30"), T0)
    events = call_events()
    for e in events[:2]:
        model.handle(e, T0)
    q = model.queues["support"]
    assert q.members[IFACE].state == "ringing"
    assert q.entries["u1"].ringing == {IFACE}
    model.handle(events[2], T0)
    assert q.members[IFACE].state == "on_call"
    model.handle(ev("Hold", 15, Linkedid="L1", Uniqueid="u9"), T0)
    assert q.members[IFACE].state == "on_hold"
    model.handle(ev("Unhold", 16, Linkedid="L1", Uniqueid="u9"), T0)
    assert q.members[IFACE].state == "on_call"
    model.handle(events[4], T0)
    assert q.members[IFACE].snapshot(T0 + timedelta(seconds=25))["state"] == "wrapup"
    assert q.members[IFACE].snapshot(T0 + timedelta(seconds=51))["state"] == "idle"


def test_ring_no_answer_moves_on_and_abandon_counts() -> None:
    model = Fed()
    c = {"Queue": "support", "Uniqueid": "u1", "Linkedid": "L1", "Channel": "Local/x;2"}
    a = {**c, "Interface": IFACE, "MemberName": "alice"}
    for e in (
        member("QueueMemberAdded", 1),
        ev("QueueCallerJoin", 2, **c, Position="1"),
        ev("AgentCalled", 3, **a),
        ev("AgentRingNoAnswer", 5, **a, RingTime="2"),
    ):
        model.handle(e, T0)
    q = model.queues["support"]
    assert q.members[IFACE].state == "idle" and q.entries["u1"].ringing == set()
    model.handle(ev("QueueCallerAbandon", 8, **c, Position="1", HoldTime="6"), T0)
    model.handle(ev("QueueCallerLeave", 8, **c, Position="1"), T0)
    assert q.entries == {} and q.abandoned == 0  # a timeout looks the same so far
    model.handle(ev("Hangup", 8.1, **c), T0)  # the caller was gone: a real abandon
    model.handle(ev("QueueCallerJoin", 2, **c, Position="1"), T0)  # late duplicate
    assert q.entries == {} and q.abandoned == 1


def test_a_queue_timeout_is_not_an_abandon() -> None:
    """app_queue reports a timeout as QueueCallerAbandon; the dialplan's CtiQueueExit
    says the caller is still there."""
    model = Fed()
    c = {"Queue": "support", "Uniqueid": "u1", "Linkedid": "L1", "Channel": "Local/x;2"}
    model.handle(member("QueueMemberAdded", 1), T0)
    model.handle(ev("QueueCallerJoin", 2, **c, Position="1"), T0)
    model.handle(ev("QueueCallerAbandon", 32, **c, Position="1", HoldTime="30"), T0)
    model.handle(ev("QueueCallerLeave", 32, **c, Position="1"), T0)
    exit_ = {**c, "UserEvent": "CtiQueueExit", "Status": "TIMEOUT"}
    model.handle(ev("UserEvent", 32.01, **exit_), T0)
    model.handle(ev("Hangup", 32.02, **c), T0)
    q = model.queues["support"]
    assert q.entries == {} and q.abandoned == 0


def test_resync_replaces_everything() -> None:
    model = feed(
        [
            member("QueueMemberAdded", 1),
            ev("QueueCallerJoin", 2, Queue="sales", Uniqueid="old", Linkedid="old"),
        ]
    )
    items = [
        {"Event": "QueueParams", "Queue": "support", "Strategy": "linear", "Completed": "4",
         "Abandoned": "1"},
        {"Event": "QueueMember", "Queue": "support", "Name": "bob", "Location": "PJSIP/bob",
         "StateInterface": "PJSIP/bob", "Membership": "dynamic", "Penalty": "2",
         "CallsTaken": "3", "InCall": "1", "Status": "2", "Paused": "1",
         "PausedReason": "break", "Wrapuptime": "5"},
        {"Event": "QueueEntry", "Queue": "support", "Position": "1", "Channel": "Local/y;2",
         "Uniqueid": "u7", "CallerIDNum": "100", "Wait": "12"},
    ]  # fmt: skip
    model.resync(items, T0)
    assert set(model.queues) == {"support"}
    q = model.queues["support"]
    assert q.strategy == "linear" and q.completed == 4 and q.wrapup_s == 5
    bob = q.members["PJSIP/bob"]
    assert (bob.name, bob.penalty, bob.paused, bob.paused_reason, bob.state) == (
        "bob",
        2,
        True,
        "break",
        "on_call",
    )
    assert q.entries["u7"].joined_at == T0 - timedelta(seconds=12)
    snap = model.snapshot(T0)
    assert snap[0]["entries"][0]["wait_s"] == 12.0  # type: ignore[index]


def test_queue_params_validation_and_render() -> None:
    p = queue_params("billing", {"strategy": "linear", "wrapup_s": 5, "leave_empty": True})
    text = render([p, QueueParams("support")])
    assert "[billing]\nstrategy = linear" in text
    assert "wrapuptime = 5" in text and "leavewhenempty = paused,unavailable,invalid" in text
    assert "[support]\nstrategy = rrmemory" in text
    for bad in (
        {"strategy": "random\n[evil]"},
        {"timeout_s": "5"},
        {"timeout_s": 0},
        {"music_class": "x y"},
        {"overflow_queue": "billing"},
        {"nope": 1},
        {"join_empty": 1},
    ):
        with pytest.raises(ConfigInvalid):
            queue_params("billing", bad)
    with pytest.raises(ConfigInvalid):
        queue_params("Bad\nName", {})
