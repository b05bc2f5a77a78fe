"""Call control's view of the calls in progress, from domain events only (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime

from callcontrol.calls import AGENT_CONTEXT, Handover, LiveCalls
from cti.events import (
    CallAnswered,
    CallCompleted,
    CallDialEnded,
    CallDialing,
    CallLegEnded,
    CallQueued,
    CallRecord,
    CallTransferred,
)

AT = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
CALLER, AGENT1, AGENT2 = "PJSIP/trunk-1", "Local/401@cti-sim-agents-1;1", "PJSIP/b-web1-2"


def answered(calls: LiveCalls) -> None:
    calls.apply(CallAnswered("L1", AT, "q", "Local/401@cti-sim-agents/n", "a401", 3.0,
                             "u1", CALLER, "u2", AGENT1))  # fmt: skip


def test_an_answered_call_is_the_agents_with_a_chain_of_one() -> None:
    calls = LiveCalls()
    answered(calls)
    call = calls.get("L1")
    assert call is not None and call.agent == "a401" and call.agents == ["a401"]
    assert [c.linkedid for c in calls.of_agent("a401")] == ["L1"]
    calls.apply(CallCompleted(CallRecord("L1", AT, AT)))
    assert calls.get("L1") is None


def test_a_blind_transfer_rings_then_hands_the_call_over() -> None:
    calls = LiveCalls()
    answered(calls)
    call = calls.get("L1")
    assert call is not None
    call.handover = Handover("123456", "a402", "blind", "refund")
    calls.apply(CallTransferred("L1", AT, "blind", "123456", AGENT_CONTEXT))
    (ringing,) = calls.apply(CallDialing("L1", AT, "u1", CALLER, AGENT_CONTEXT, "u3", AGENT2))
    assert (ringing.to_agent, ringing.state, ringing.notes) == ("a402", "ringing", "refund")
    (done,) = calls.apply(CallDialEnded("L1", AT, "u1", CALLER, AGENT_CONTEXT, "ANSWER",
                                        "u3", AGENT2))  # fmt: skip
    assert (done.from_agent, done.to_agent, done.state) == ("a401", "a402", "answered")
    assert call.agent == "a402" and call.agent_channel == AGENT2
    assert call.agents == ["a401", "a402"] and call.handover is None


def test_a_consultation_hands_over_only_when_the_transfer_completes() -> None:
    calls = LiveCalls()
    answered(calls)
    call = calls.get("L1")
    assert call is not None
    call.handover, call.mode = Handover("123456", "a402", "attended"), "consulting"
    assert calls.apply(CallDialEnded("L1", AT, "u9", "Local/123456@cti-cc-agent-3;2",
                                     AGENT_CONTEXT, "ANSWER", "u3", AGENT2)) == []  # fmt: skip
    assert call.agent == "a401"  # the agents talk, the caller waits
    (done,) = calls.apply(CallTransferred("L1", AT, "attended", AGENT2))
    assert done.kind == "attended" and call.agent == "a402" and call.mode == "talking"


def test_nobody_answering_the_transfer_is_a_failed_handover() -> None:
    calls = LiveCalls()
    answered(calls)
    call = calls.get("L1")
    assert call is not None
    call.handover = Handover("123456", "a402", "blind")
    (failed,) = calls.apply(CallDialEnded("L1", AT, "u1", CALLER, AGENT_CONTEXT, "NOANSWER"))
    assert failed.state == "failed" and call.handover is None and call.agent == "a401"


def test_a_kept_browser_leg_that_drops_leaves_the_caller_waiting_for_the_agent() -> None:
    calls = LiveCalls()
    answered(calls)
    call = calls.get("L1")
    assert call is not None
    call.browser, call.keep_ref = True, "654321"
    calls.apply(CallLegEnded("L1", AT, "u2", AGENT1, "16", remaining=1))
    assert call.dropped and call.agent == "a401" and call.view()["dropped"] is True
    # the grace period is over: the caller is back in the queue, nobody's call for now
    calls.apply(CallQueued("L1", AT, "q", 1, "u1", CALLER))
    assert not call.dropped and call.agent == "" and calls.of_agent("a401") == []


def test_a_leg_that_ends_with_the_caller_gone_is_no_drop() -> None:
    calls = LiveCalls()
    answered(calls)
    call = calls.get("L1")
    assert call is not None
    call.browser, call.keep_ref = True, "654321"
    calls.apply(CallLegEnded("L1", AT, "u2", AGENT1, "16", remaining=0))
    assert not call.dropped
