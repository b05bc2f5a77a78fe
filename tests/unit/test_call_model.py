"""The call model against AMI streams recorded from our Asterisk 22, in any order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cti.ami.protocol import AmiParser, Message
from cti.calls.model import CallModel
from cti.events import (
    CallAbandoned,
    CallAnswered,
    CallCompleted,
    CallEntered,
    CallHeld,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    CallRecord,
    CallRecordingArmed,
    CallResumed,
    CallTimedOut,
    DomainEvent,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
LATER = datetime(2100, 1, 1, tzinfo=UTC)


def call_events(name: str) -> list[Message]:
    parser = AmiParser()
    parser.receive_data((FIXTURES / name).read_bytes())
    parser.receive_eof()
    return [
        m
        for m in parser.events_received()
        if isinstance(m, Message) and m.event and not m.action_id and m.get("Linkedid")
    ]


def run(messages: list[Message]) -> tuple[list[DomainEvent], list[CallRecord]]:
    model = CallModel()
    now = datetime.now(UTC)
    events: list[DomainEvent] = []
    for msg in messages:
        events += model.handle(msg, now)
    finals = model.expire(LATER)
    assert not model.calls
    return events, [e.record for e in finals if isinstance(e, CallCompleted)]


def test_answered_queue_call() -> None:
    events, records = run(call_events("queue_answered.raw"))
    kinds = [type(e) for e in events]
    assert kinds.index(CallEntered) < kinds.index(CallQueued) < kinds.index(CallOffered)
    assert kinds.index(CallOffered) < kinds.index(CallAnswered)
    (rec,) = records
    assert rec.disposition == "answered"
    assert rec.caller_num == "13800138000"
    assert rec.caller_name == "张三 Zhang"
    assert rec.dnis == "4008001234"
    assert rec.queue == "support"
    assert rec.agent == "agent101"
    assert rec.wait_s == 1 and rec.talk_s == 4
    assert rec.answered_at is not None
    assert rec.started_at < rec.answered_at < rec.ended_at
    assert len(rec.legs) == 4


def test_abandoned_queue_call_keeps_hostile_name_as_data() -> None:
    events, records = run(call_events("queue_abandoned.raw"))
    assert any(isinstance(e, CallAbandoned) for e in events)
    (rec,) = records
    assert rec.disposition == "abandoned"
    assert rec.caller_name == "<img src=x onerror=alert(1)>"
    assert rec.caller_num == "+8613900139000"
    assert rec.wait_s == 3


@pytest.mark.parametrize("fixture", ["queue_answered.raw", "queue_abandoned.raw"])
@pytest.mark.parametrize("seed", range(25))
def test_any_event_order_gives_the_same_record(fixture: str, seed: int) -> None:
    messages = call_events(fixture)
    _, (expected,) = run(messages)
    shuffled = messages[:]
    random.Random(seed).shuffle(shuffled)
    _, (got,) = run(shuffled)
    assert got == expected


def test_call_is_finalised_only_after_the_grace_period() -> None:
    model = CallModel(close_grace_s=1.0)
    messages = call_events("queue_abandoned.raw")
    for msg in messages:
        model.handle(msg, datetime.now(UTC))
    (call,) = model.calls.values()
    assert call.closing_since is not None
    assert model.expire(call.closing_since + timedelta(seconds=0.5)) == []
    (done,) = model.expire(call.closing_since + timedelta(seconds=1))
    assert isinstance(done, CallCompleted)
    # stragglers for a finished call are ignored, not a second call
    assert model.handle(messages[-1], datetime.now(UTC)) == []
    assert not model.calls


def test_resync_hands_back_calls_that_ended_while_away() -> None:
    model = CallModel()
    messages = [m for m in call_events("queue_answered.raw") if m.event != "Hangup"]
    for msg in messages:
        model.handle(msg, datetime.now(UTC))
    (call,) = model.calls.values()
    model.link_lost()
    now = datetime.now(UTC)
    ended = model.resync([], now, snapshot_at=now)
    assert [c.linkedid for c in ended] == [call.linkedid]
    assert not model.calls and model.is_known(call.linkedid)


def test_resync_adopts_unknown_channels_and_spares_newer_legs() -> None:
    model = CallModel()
    chan = Message(
        [("Event", "CoreShowChannel"), ("Channel", "PJSIP/trunk-1"), ("Uniqueid", "u1"),
         ("Linkedid", "u1"), ("Context", "cti-inbound"), ("Exten", "4008001234"),
         ("CallerIDNum", "13800138000"), ("Duration", "00:01:05")]
    )  # fmt: skip
    now = datetime.now(UTC)
    assert model.resync([chan], now, snapshot_at=now) == []
    call = model.calls["u1"]
    assert call.dnis == "4008001234" and call.caller_num == "13800138000"
    assert 64 <= (now - call.started_at).total_seconds() <= 66
    # a leg first seen after the snapshot is not declared gone
    new = Message(
        [
            ("Event", "Newchannel"),
            ("Uniqueid", "u2"),
            ("Linkedid", "u2"),
            ("Channel", "PJSIP/trunk-2"),
            ("Context", "cti-inbound"),
            ("Exten", "1"),
        ]
    )
    model.handle(new, now + timedelta(seconds=1))
    assert model.resync([chan], now + timedelta(seconds=2), snapshot_at=now) == []
    assert "u2" in model.calls


def test_events_without_ids_or_unhandled_are_ignored() -> None:
    model = CallModel()
    assert model.handle(Message([("Event", "Hangup")]), datetime.now(UTC)) == []
    assert (
        model.handle(
            Message([("Event", "VarSet"), ("Linkedid", "x"), ("Uniqueid", "x")]), datetime.now(UTC)
        )
        == []
    )
    assert not model.calls


def test_leave_before_connect_is_not_a_timeout() -> None:
    """Asterisk sends QueueCallerLeave before AgentConnect for an answered caller."""
    model = CallModel()
    now = datetime.now(UTC)
    events: list[DomainEvent] = []
    for msg in call_events("queue_answered.raw"):
        events += model.handle(msg, now)
    events += model.expire(LATER)
    assert not [e for e in events if isinstance(e, CallTimedOut)]


def test_leave_without_connect_times_out_after_the_grace() -> None:
    model = CallModel()
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    base = {"Linkedid": "1.1", "Uniqueid": "1.1", "Channel": "Local/x-1;2", "Queue": "support"}
    assert model.handle({**base, "Event": "QueueCallerJoin", "Position": "1"}, t0)
    left = t0 + timedelta(seconds=30)
    [gone] = model.handle({**base, "Event": "QueueCallerLeave"}, left)
    assert isinstance(gone, CallLeftQueue) and gone.queue == "support"  # not waiting now
    assert model.expire(left + timedelta(seconds=0.5)) == []  # an AgentConnect may follow
    [timed_out] = model.expire(left + timedelta(seconds=1))
    assert isinstance(timed_out, CallTimedOut)
    assert (timed_out.queue, timed_out.at, timed_out.wait_s) == ("support", left, 30.0)
    assert model.expire(left + timedelta(seconds=5)) == []  # once


def test_unhold_without_hold_is_not_a_resume() -> None:
    """Asterisk unholds a blind transferer that was never held."""
    model = CallModel()
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    leg = {"Linkedid": "1.1", "Uniqueid": "1.1", "Channel": "PJSIP/trunk-1"}
    assert model.handle({**leg, "Event": "Unhold"}, t0) == []
    [held] = model.handle({**leg, "Event": "Hold"}, t0)
    assert model.handle({**leg, "Event": "Hold"}, t0) == []  # already held
    [resumed] = model.handle({**leg, "Event": "Unhold"}, t0)
    assert isinstance(held, CallHeld) and isinstance(resumed, CallResumed)


def test_the_dialplans_recording_user_event_becomes_a_domain_event() -> None:
    """[cti-rec-arm] raises UserEvent(CtiRecording, State: armed|disarmed, ...)."""
    model = CallModel()
    now = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    base = {
        "Event": "UserEvent", "UserEvent": "CtiRecording", "Linkedid": "1.7",
        "Uniqueid": "1.7", "Channel": "PJSIP/carrier-00000007", "Queue": "support",
        "Path": "2026/11/29/cti-20261129T090000-1_7-0.wav", "MixMonitorID": "0x7f",
    }  # fmt: skip
    [armed] = model.handle({**base, "State": "armed"}, now)
    assert armed == CallRecordingArmed(
        "1.7", now, "1.7", "PJSIP/carrier-00000007", "support",
        "2026/11/29/cti-20261129T090000-1_7-0.wav", "0x7f", armed=True,
    )  # fmt: skip
    [disarmed] = model.handle({**base, "State": "disarmed"}, now)
    assert isinstance(disarmed, CallRecordingArmed) and not disarmed.armed
    assert model.handle({**base, "State": "something else"}, now) == []
    assert model.handle({**base, "UserEvent": "Other", "State": "armed"}, now) == []
