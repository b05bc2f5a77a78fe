"""The domain events the call model publishes (cti.events), from AMI sequences as Asterisk
22 sends them: how a queue stay ends (app_queue reports a timeout as an abandon), an
AgentComplete sent after the caller's channel was gone, transfers, conferences, dials
outside queues, late caller ID, legs, and calls with a gap."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from cti.calls.model import CallModel
from cti.events import (
    CallAbandoned,
    CallCompleted,
    CallConferenceJoined,
    CallConferenceLeft,
    CallDialEnded,
    CallDialing,
    CallEntered,
    CallerIdChanged,
    CallHandled,
    CallLegEnded,
    CallRecord,
    CallTimedOut,
    CallTransferred,
    DomainEvent,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
CALLER = {"Linkedid": "L1", "Uniqueid": "L1", "Channel": "PJSIP/trunk-1"}
QUEUED = {"Linkedid": "L1", "Uniqueid": "L1.2", "Channel": "Local/x;2", "Queue": "support"}


def ev(name: str, t: float, **headers: str) -> dict[str, str]:
    return {"Event": name, "Timestamp": f"{(T0 + timedelta(seconds=t)).timestamp():.6f}", **headers}


def run(model: CallModel, msgs: Iterable[dict[str, str]]) -> list[DomainEvent]:
    out: list[DomainEvent] = []
    for m in msgs:
        out += model.handle(m, T0)
    return out


def of(events: list[DomainEvent], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def record(events: list[DomainEvent]) -> CallRecord:
    (done,) = of(events, CallCompleted)
    rec: CallRecord = done.record
    return rec


def stay(*tail: dict[str, str]) -> list[dict[str, str]]:
    """A caller entering ``support`` at t=1 (queued leg L1.2), then ``tail``."""
    return [
        ev("Newchannel", 0, **CALLER, Context="cti-inbound", Exten="4008001234",
           CallerIDNum="13800138000"),
        ev("QueueCallerJoin", 1, **QUEUED, Position="1", CallerIDNum="13800138000"),
        *tail,
    ]  # fmt: skip


def test_a_queue_timeout_is_a_timeout_not_an_abandon() -> None:
    """app_queue sends QueueCallerAbandon on a timeout too; the dialplan's CtiQueueExit
    (the caller is still on the line) decides."""
    model = CallModel()
    events = run(
        model,
        stay(
            ev("QueueCallerAbandon", 31.2, **QUEUED, Position="1", HoldTime="30"),
            ev("QueueCallerLeave", 31.2, **QUEUED, Position="1"),
            ev("UserEvent", 31.3, **QUEUED, UserEvent="CtiQueueExit", Status="TIMEOUT"),
            ev("Hangup", 32, **QUEUED),
            ev("Hangup", 32, **CALLER),
        ),
    )
    events += model.expire(LATER)
    assert not of(events, CallAbandoned)
    (timeout,) = of(events, CallTimedOut)
    assert (timeout.queue, timeout.reason, timeout.wait_s, timeout.uniqueid) == (
        "support", "timeout", 30.0, "L1.2",
    )  # fmt: skip
    rec = record(events)
    assert (rec.disposition, rec.queue, rec.wait_s) == ("timeout", "support", 30.0)


def test_a_real_abandon_is_the_queued_leg_hanging_up() -> None:
    model = CallModel()
    events = run(
        model,
        stay(
            ev("QueueCallerAbandon", 8, **QUEUED, Position="1", HoldTime="7"),
            ev("QueueCallerLeave", 8, **QUEUED, Position="1"),
            ev("Hangup", 8.01, **QUEUED),
        ),
    )
    (abandon,) = of(events, CallAbandoned)
    assert (abandon.wait_s, abandon.position, abandon.uniqueid) == (7.0, 1, "L1.2")
    events += run(model, [ev("Hangup", 8.02, **CALLER)]) + model.expire(LATER)
    assert record(events).disposition == "abandoned"
    assert not of(events, CallTimedOut)


def test_without_the_dialplans_word_a_caller_alive_after_an_abandon_timed_out() -> None:
    model = CallModel(abandon_grace_s=2)
    run(model, stay(ev("QueueCallerAbandon", 31, **QUEUED, Position="1", HoldTime="30")))
    assert model.expire(T0 + timedelta(seconds=31.5)) == []  # its hang-up may still come
    run(model, [ev("Newstate", 33.5, **CALLER)])  # AMI time moved on, nobody hung up
    (timeout,) = of(model.expire(T0 + timedelta(seconds=33.5)), CallTimedOut)
    assert timeout.reason == "timeout" and timeout.wait_s == 30.0


AGENT = {"Linkedid": "L1", "Uniqueid": "A1", "Channel": "Local/101@cti-sim-agents-1;1"}
MEMBER = {"Queue": "support", "Interface": "Local/101@cti-sim-agents/n",
          "MemberName": "agent101"}  # fmt: skip
# the member's channel as app_queue prefixes it (DestLinkedid: the caller's, inherited)
DEST = {"DestChannel": "Local/101@cti-sim-agents-1;1", "DestChannelState": "6",
        "DestChannelStateDesc": "Up", "DestCallerIDNum": "4008001234",
        "DestConnectedLineNum": "13800138000", "DestContext": "cti-sim-agents",
        "DestExten": "support", "DestPriority": "1", "DestUniqueid": "A1",
        "DestLinkedid": "L1"}  # fmt: skip


def answered_then_caller_hangs_up() -> list[dict[str, str]]:
    """Answered after 1 s of waiting, talking 20 s; the caller's BYE ends it: the caller's
    legs hang up, then the member's (the bridge dissolves)."""
    return stay(
        ev("Newchannel", 1.5, **AGENT),
        ev("AgentCalled", 1.5, **{**QUEUED, **DEST, **MEMBER}),
        ev("QueueCallerLeave", 2, **QUEUED, Position="1"),
        ev("AgentConnect", 2, **{**QUEUED, **DEST, **MEMBER}, HoldTime="1", RingTime="1"),
        ev("Hangup", 22, **CALLER, Cause="16"),
        ev("Hangup", 22.01, **QUEUED, Cause="16"),
        ev("Hangup", 22.02, **AGENT, Cause="16"),
    )


# AgentComplete as Asterisk 22 sent it (captured from the test Asterisk, ids renamed) when
# the caller's channel had gone from the snapshot cache before app_queue built the event:
# only the member's Dest* fields; and, when the member's Local channel had gone too, only
# the blob's fields
COMPLETE = {**MEMBER, "HoldTime": "1", "TalkTime": "20", "Reason": "caller"}
CALLER_GONE = {**DEST, **COMPLETE}
BOTH_GONE = COMPLETE


@pytest.mark.parametrize("complete", [CALLER_GONE, BOTH_GONE], ids=["dest-only", "blob-only"])
def test_agent_complete_without_the_callers_fields_is_the_calls(
    complete: dict[str, str],
) -> None:
    model = CallModel()
    events = run(model, answered_then_caller_hangs_up())
    assert model.calls["L1"].closing_since is not None  # every leg hung up
    (handled,) = of(run(model, [ev("AgentComplete", 22.05, **complete)]), CallHandled)
    assert handled == CallHandled(
        "L1", T0 + timedelta(seconds=22.05), "support", "Local/101@cti-sim-agents/n",
        "agent101", 1.0, 20.0, "caller", "L1.2", complete.get("DestChannel", ""),
    )  # fmt: skip
    # written from its events after the close grace, not left to recovery
    events += model.expire(T0 + timedelta(seconds=23.1))
    rec = record(events)
    assert (rec.source, rec.disposition, rec.queue, rec.agent) == (
        "ami", "answered", "support", "agent101",
    )  # fmt: skip
    assert (rec.wait_s, rec.talk_s) == (1.0, 20.0)
    assert model.take_gapped() == []
    # a straggler of the finalised call is not a second CallHandled
    assert run(model, [ev("AgentComplete", 23.5, **complete)]) == []


def test_agent_complete_without_the_caller_is_keyed_only_when_unambiguous() -> None:
    model = CallModel()
    run(model, answered_then_caller_hangs_up())
    # another queue's event, or a member with no answered call here: nothing
    other_queue = {**CALLER_GONE, "Queue": "sales"}
    assert run(model, [ev("AgentComplete", 22.05, **other_queue)]) == []
    stranger = {**BOTH_GONE, "Interface": "Local/102@cti-sim-agents/n"}
    assert run(model, [ev("AgentComplete", 22.05, **stranger)]) == []
    # only AgentComplete is ever built from cached snapshots: other Agent* events without
    # the member's Linkedid are not guessed
    assert run(model, [ev("AgentRingNoAnswer", 22.05, **BOTH_GONE)]) == []
    assert model.calls["L1"].talk_s is None
    # the call waits for its AgentComplete, then goes to recovery without it
    assert of(model.expire(T0 + timedelta(seconds=23.1)), CallCompleted) == []
    assert of(model.expire(T0 + timedelta(seconds=27.1)), CallCompleted) == []
    assert [c.linkedid for c in model.take_gapped()] == ["L1"]


def test_exit_with_the_callback_key() -> None:
    model = CallModel()
    events = run(
        model,
        stay(
            ev("QueueCallerLeave", 7.4, **QUEUED, Position="2"),
            ev("UserEvent", 7.5, **QUEUED, UserEvent="CtiQueueExit", Status="EXITWITHKEY"),
            ev("Hangup", 12, **QUEUED),
            ev("Hangup", 12, **CALLER),
        ),
    )
    events += model.expire(LATER)
    (left,) = of(events, CallTimedOut)
    assert (left.reason, left.wait_s) == ("exit_key", 6.0)  # queue_log's whole seconds
    rec = record(events)
    assert (rec.disposition, rec.queue, rec.wait_s) == ("callback", "support", 6.0)


def test_refused_by_a_full_queue_and_an_ivr_callback() -> None:
    model = CallModel()
    refused = {**CALLER, "Queue": "support", "UserEvent": "CtiQueueExit", "Status": "FULL"}
    events = run(model, [ev("Newchannel", 0, **CALLER), ev("UserEvent", 1, **refused)])
    events += run(model, [ev("Hangup", 2, **CALLER)]) + model.expire(LATER)
    assert (record(events).disposition, record(events).queue) == ("refused", "support")

    model = CallModel()
    other = {**CALLER, "Linkedid": "L2", "Uniqueid": "L2"}
    run(model, [ev("Newchannel", 0, **other, Context="cti-inbound", Exten="400")])
    model.callback_requested("L2")
    events = run(model, [ev("Hangup", 9, **other)]) + model.expire(LATER)
    assert record(events).disposition == "callback"  # not an IVR abandon


def test_transfers_are_published_with_their_target() -> None:
    model = CallModel()
    blind = ev(
        "BlindTransfer", 20, Result="Success", TransfererLinkedid="L1",
        TransfererUniqueid="A1", TransfererChannel="PJSIP/agent-1", Extension="8001",
        Context="cti-agents",
    )  # fmt: skip
    (t,) = run(model, [blind])
    assert isinstance(t, CallTransferred)
    assert (t.linkedid, t.kind, t.target, t.context, t.transferer_channel) == (
        "L1", "blind", "8001", "cti-agents", "PJSIP/agent-1",
    )  # fmt: skip
    attended = ev(
        "AttendedTransfer", 30, Result="Success", OrigTransfererLinkedid="L1",
        OrigTransfererUniqueid="A1", OrigTransfererChannel="PJSIP/agent-1",
        SecondTransfererLinkedid="L9", SecondTransfererChannel="PJSIP/agent-1b",
        TransferTargetChannel="PJSIP/agent-2", DestType="Bridge",
    )  # fmt: skip
    (a,) = run(model, [attended])
    assert isinstance(a, CallTransferred)
    assert (a.kind, a.target, a.target_channel, a.target_linkedid) == (
        "attended", "PJSIP/agent-2", "PJSIP/agent-2", "L9",
    )  # fmt: skip
    failed = {**blind, "Result": "Fail"}
    assert run(model, [failed]) == []


def test_a_third_party_in_the_bridge_is_a_conference() -> None:
    model = CallModel()
    b = {"BridgeUniqueid": "B1"}
    agent2 = {"Linkedid": "L9", "Uniqueid": "A2", "Channel": "PJSIP/agent-2"}
    events = run(
        model,
        [
            ev("BridgeEnter", 1, **CALLER, **b, BridgeNumChannels="1"),
            ev("BridgeEnter", 1, Linkedid="L1", Uniqueid="A1", Channel="PJSIP/agent-1", **b,
               BridgeNumChannels="2"),
            ev("BridgeEnter", 5, **agent2, **b, BridgeNumChannels="3"),
        ],
    )  # fmt: skip
    joined = of(events, CallConferenceJoined)
    assert {j.uniqueid for j in joined} == {"L1", "A1", "A2"}
    assert {j.linkedid for j in joined} == {"L1"} and joined[0].parties == 3
    (left,) = run(model, [ev("BridgeLeave", 9, **agent2, **b)])
    assert isinstance(left, CallConferenceLeft)
    assert (left.linkedid, left.uniqueid, left.parties) == ("L1", "A2", 2)
    # back to two parties: leaving is no longer a conference event
    assert run(model, [ev("BridgeLeave", 10, **CALLER, **b)]) == []


def test_dials_outside_queues_only() -> None:
    model = CallModel()
    queue_ring = {**QUEUED, "DestUniqueid": "M1", "DestChannel": "Local/101@agents;1"}
    events = run(
        model,
        stay(
            ev("DialBegin", 2, **queue_ring),
            ev("DialEnd", 3, **queue_ring, DialStatus="ANSWER"),
        ),
    )
    assert not of(events, CallDialing) and not of(events, CallDialEnded)
    out = {
        "Linkedid": "cti-out-1", "Uniqueid": "cti-out-1", "Channel": "PJSIP/agent-1",
        "Context": "cti-outbound", "DestUniqueid": "C1", "DestChannel": "PJSIP/trunk-9",
    }  # fmt: skip
    events = run(
        model,
        [ev("DialBegin", 1, **out, DialString="8613800138000@trunk"),
         ev("DialEnd", 6, **out, DialStatus="ANSWER")],
    )  # fmt: skip
    (dialing,) = of(events, CallDialing)
    (ended,) = of(events, CallDialEnded)
    assert (dialing.context, dialing.dest_channel, dialing.dial_string) == (
        "cti-outbound", "PJSIP/trunk-9", "8613800138000@trunk",
    )  # fmt: skip
    assert (ended.status, ended.uniqueid, ended.dest_uniqueid) == ("ANSWER", "cti-out-1", "C1")


def test_late_caller_id_and_legs() -> None:
    model = CallModel()
    assert not of(run(model, [ev("Newchannel", 0, **CALLER)]), CallerIdChanged)
    (cid,) = of(
        run(model, [ev("NewCallerid", 0.2, **CALLER, CallerIDNum="13800138000",
                       CallerIDName="Zhang")]),
        CallerIdChanged,
    )  # fmt: skip
    assert (cid.caller_num, cid.caller_name) == ("13800138000", "Zhang")
    assert run(model, [ev("Newstate", 0.3, **CALLER, CallerIDNum="<unknown>")]) == []
    run(model, [ev("Newchannel", 1, **QUEUED)])
    (leg,) = of(run(model, [ev("Hangup", 5, **QUEUED, Cause="16")]), CallLegEnded)
    assert (leg.uniqueid, leg.channel, leg.cause, leg.remaining) == ("L1.2", "Local/x;2", "16", 1)


def test_calls_with_a_gap_are_completed_by_recovery() -> None:
    model = CallModel()
    run(model, [ev("Newchannel", 0, **CALLER)])
    model.link_lost()  # the AMI link dropped mid-call
    snap = [
        {"Uniqueid": "L1", "Linkedid": "L1", "Channel": "PJSIP/trunk-1", "Duration": "00:00:40"},
        # adopted: both legs of a call we did not know; the older leg gives its start
        {"Uniqueid": "N2", "Linkedid": "N1", "Channel": "Local/y;2", "Duration": "00:00:05"},
        {"Uniqueid": "N1", "Linkedid": "N1", "Channel": "PJSIP/trunk-2", "Duration": "00:00:12"},
    ]
    now = T0 + timedelta(seconds=60)
    assert model.resync(snap, now, snapshot_at=now) == []
    assert model.calls["L1"].gap and model.calls["N1"].gap
    assert model.calls["N1"].started_at == now - timedelta(seconds=12)
    run(model, [ev("Hangup", 61, **CALLER)])
    events = model.expire(LATER)
    assert not of(events, CallCompleted)  # not written from what we saw: recovered
    assert [c.linkedid for c in model.take_gapped()] == ["L1"]
    assert model.take_gapped() == []


def test_a_call_born_on_the_new_link_before_the_resync_has_no_gap() -> None:
    """The daemon's resync runs a moment after login; the calls that started in between
    sent all their events on the new link: they are written from them, not recovered."""
    model = CallModel()
    run(model, [ev("Newchannel", 0, **CALLER), ev("Newchannel", 0.1, **QUEUED)])
    short = {"Linkedid": "S1", "Uniqueid": "S1", "Channel": "PJSIP/trunk-3"}
    run(model, [ev("Newchannel", 0.2, **short), ev("Hangup", 0.5, **short)])
    snap = [
        {"Uniqueid": "L1", "Linkedid": "L1", "Channel": "PJSIP/trunk-1", "Duration": "00:00:01"},
        {"Uniqueid": "L1.2", "Linkedid": "L1", "Channel": "Local/x;2", "Duration": "00:00:01"},
    ]
    after = T0 + timedelta(seconds=1)
    assert model.resync(snap, after, snapshot_at=after) == []
    assert not model.calls["L1"].gap and not model.calls["S1"].gap
    run(model, [ev("Hangup", 5, **QUEUED), ev("Hangup", 5, **CALLER)])
    done = [e.record for e in of(model.expire(LATER), CallCompleted)]
    assert sorted((r.linkedid, r.source) for r in done) == [("L1", "ami"), ("S1", "ami")]
    assert model.take_gapped() == []


def test_a_call_first_seen_mid_call_on_the_new_link_has_a_gap() -> None:
    """Its first channel started before the login (no Newchannel of it seen): the events
    before the login are missing, whenever its first event on the new link came."""
    model = CallModel()
    run(model, [ev("Newstate", 0, **CALLER)])
    snap = [{"Uniqueid": "L1", "Linkedid": "L1", "Channel": "PJSIP/trunk-1",
             "Duration": "00:00:30"}]  # fmt: skip
    before = T0 - timedelta(seconds=1)  # the event came after the snapshot was asked for
    assert model.resync(snap, before, snapshot_at=before) == []
    assert model.calls["L1"].gap


def test_a_call_that_had_hung_up_when_the_link_dropped_is_written_from_its_events() -> None:
    model = CallModel()
    run(model, [ev("Newchannel", 0, **CALLER), ev("Hangup", 3, **CALLER)])
    model.link_lost()
    now = T0 + timedelta(seconds=3.5)
    assert model.resync([], now, snapshot_at=now) == []
    (done,) = of(model.expire(LATER), CallCompleted)
    assert (done.record.linkedid, done.record.source) == ("L1", "ami")


def test_a_call_listed_by_the_snapshot_before_its_first_event_is_written_from_its_events() -> None:
    """Asterisk answers CoreShowChannels before it sends the events queued meanwhile: a call
    born just after the login can be in the snapshot before its Newchannel reaches us."""
    model = CallModel()
    snap = [
        {"Uniqueid": "L1", "Linkedid": "L1", "Channel": "PJSIP/trunk-1", "Duration": "00:00:00",
         "Context": "cti-inbound", "Exten": "4008001234"},
        {"Uniqueid": "L1.2", "Linkedid": "L1", "Channel": "Local/x;2", "Duration": "00:00:00"},
    ]  # fmt: skip
    assert model.resync(snap, T0 + timedelta(seconds=0.5), snapshot_at=T0) == []
    assert model.calls["L1"].gap
    inbound = {"Context": "cti-inbound", "Exten": "4008001234", "CallerIDNum": "13800138000"}
    events = run(model, [ev("Newchannel", 0.1, **CALLER, **inbound)])
    assert [e.dnis for e in of(events, CallEntered)] == ["4008001234"]
    assert not model.calls["L1"].gap
    run(model, [ev("Newchannel", 0.1, **QUEUED), ev("Hangup", 3, **QUEUED)])
    run(model, [ev("Hangup", 3, **CALLER)])
    (done,) = of(model.expire(LATER), CallCompleted)
    assert (done.record.source, done.record.caller_num) == ("ami", "13800138000")
    assert done.record.legs == ("L1", "L1.2") and model.take_gapped() == []
    # a call whose first event after the snapshot is not its birth stays gapped
    model.resync([{"Uniqueid": "N1", "Linkedid": "N1", "Duration": "00:01:00"}], LATER, LATER)
    run(model, [ev("Newchannel", 3600.5, Linkedid="N1", Uniqueid="N1.2")])
    assert model.calls["N1"].gap
