"""The daemon gives a caller back to the agent whose browser phone dropped, whichever of
"the leg dropped" and "the phone registered again" it learns first; once; never after
the grace period (callcontrol.rejoin, callcontrol.calls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callcontrol.calls import Handover, LiveCall, LiveCalls, phone_of
from callcontrol.control import CallControl
from callcontrol.rejoin import MEMORY_S, Rejoins
from cti.ami.client import AmiClient
from cti.events import CallAnswered, CallDialEnded, CallLegEnded, CallQueued, PhoneRegistered
from cti.principal import Principal
from cti.services import Services
from cti.web.errors import ApiError

AT = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
CALLER, LEG = "PJSIP/trunk-00000001", "PJSIP/s511-web1-00000002"


def kept_call(calls: LiveCalls) -> LiveCall:
    """a511 answered L1 on its browser phone s511-web1; call control armed the keep."""
    calls.apply(CallAnswered("L1", AT, "q", "PJSIP/s511-web1", "a511", 3.0,
                             "u1", CALLER, "u2", LEG))  # fmt: skip
    call = calls.get("L1")
    assert call is not None
    call.browser, call.keep_ref = True, "654321"
    return call


def drop(calls: LiveCalls, at: datetime = AT) -> None:
    calls.apply(CallLegEnded("L1", at, "u2", LEG, "16", remaining=1))


def registered(phone: str, at: datetime) -> PhoneRegistered:
    return PhoneRegistered(at, phone, "a511", "sip:x@y.invalid;transport=ws")


def test_the_phone_of_a_pjsip_leg_is_its_endpoint() -> None:
    assert phone_of(LEG) == "s511-web1"
    assert phone_of("Local/401@cti-sim-agents-1;1") == "" == phone_of("PJSIP/")


def test_the_leg_drops_then_the_phone_registers_again_reconnect_at_once() -> None:
    calls = LiveCalls()
    rejoins = Rejoins(calls)
    call = kept_call(calls)
    drop(calls)
    assert call.dropped and call.lost_by == "a511" and call.lost_phone == "s511-web1"
    assert rejoins.dropped(call, AT) is False  # no registration seen yet: the caller waits
    assert rejoins.registered(registered("s511-web1", AT + timedelta(seconds=3))) == [call]


def test_the_phone_registers_again_before_the_drop_is_seen_reconnect_on_the_drop() -> None:
    calls = LiveCalls()
    rejoins = Rejoins(calls)
    call = kept_call(calls)
    # a reload: the new contact arrives while Asterisk still holds the old leg up
    assert rejoins.registered(registered("s511-web1", AT + timedelta(seconds=2))) == []
    drop(calls, AT + timedelta(seconds=10))  # rtp_timeout noticed it
    assert rejoins.dropped(call, AT + timedelta(seconds=10)) is True
    # the remembered registration is used once
    assert rejoins.dropped(call, AT + timedelta(seconds=11)) is False


def test_a_registration_long_before_the_drop_is_forgotten() -> None:
    calls = LiveCalls()
    rejoins = Rejoins(calls)
    call = kept_call(calls)
    rejoins.registered(registered("s511-web1", AT + timedelta(seconds=1)))
    later = AT + timedelta(seconds=MEMORY_S + 5)
    drop(calls, later)
    assert rejoins.dropped(call, later) is False


def test_the_registration_the_leg_was_made_on_is_no_return() -> None:
    calls = LiveCalls()
    rejoins = Rejoins(calls)
    # the page registered, then answered; it reloads at once: its old contact is gone
    rejoins.registered(registered("s511-web1", AT - timedelta(seconds=3)))
    call = kept_call(calls)
    drop(calls, AT + timedelta(seconds=1))
    assert rejoins.dropped(call, AT + timedelta(seconds=1)) is False  # the caller waits
    assert rejoins.registered(registered("s511-web1", AT + timedelta(seconds=5))) == [call]


def test_another_phone_or_a_phone_without_a_dropped_call_does_nothing() -> None:
    calls = LiveCalls()
    rejoins = Rejoins(calls)
    call = kept_call(calls)
    assert rejoins.registered(registered("s511-web1", AT)) == []  # its call is up
    drop(calls)
    rejoins = Rejoins(calls)
    assert rejoins.registered(registered("s512-web1", AT)) == []
    assert call.dropped


def test_a_second_trigger_while_a_reconnect_is_under_way_does_nothing() -> None:
    calls = LiveCalls()
    rejoins = Rejoins(calls)
    call = kept_call(calls)
    drop(calls)
    # call control marks it before its first AMI action (CallControl.reconnect)
    call.handover = Handover("", "a511", "reconnect")
    assert call.reconnecting
    assert rejoins.registered(registered("s511-web1", AT)) == []
    assert rejoins.dropped(call, AT) is False
    # answered on the phone again: the agent's call, on its new leg
    new_leg = "PJSIP/s511-web1-00000009"
    call.handover.ref = "123456"
    (back,) = calls.apply(CallDialEnded("L1", AT, "u1", CALLER, "cti-cc-reconnect", "ANSWER",
                                        "u9", new_leg))  # fmt: skip
    assert (back.kind, back.state, back.to_agent) == ("reconnect", "answered", "a511")
    assert call.agent_channel == new_leg and not call.reconnecting and not call.dropped


def test_after_the_grace_period_the_caller_is_back_in_the_queue_and_not_reconnected() -> None:
    calls = LiveCalls()
    rejoins = Rejoins(calls)
    call = kept_call(calls)
    drop(calls)
    calls.apply(CallQueued("L1", AT + timedelta(seconds=30), "q", 1, "u1", CALLER))
    assert not call.dropped and call.agent == "" and call.lost_by == "a511"
    assert rejoins.registered(registered("s511-web1", AT + timedelta(seconds=31))) == []
    assert rejoins.dropped(call, AT + timedelta(seconds=31)) is False


# --- what call control answers (its AMI client is not connected: nothing may be sent) ----


def control(calls: LiveCalls) -> CallControl:
    return CallControl(AmiClient("127.0.0.1", 1, "u", "p"), calls, Services(), lambda e: None)


async def test_a_reconnect_under_way_is_not_started_again() -> None:
    calls = LiveCalls()
    call = kept_call(calls)
    drop(calls)
    call.handover = Handover("123456", "a511", "reconnect")
    # no AMI action: it would raise Unavailable (not connected)
    assert await control(calls).reconnect(call) is False
    assert call.handover.ref == "123456"


async def test_a_failed_reconnect_is_not_left_under_way() -> None:
    calls = LiveCalls()
    call = kept_call(calls)
    drop(calls)
    cc = control(calls)
    cc.interface_of = lambda agent: "PJSIP/s511-web1"  # type: ignore[method-assign]
    with pytest.raises(ApiError) as err:
        await cc.reconnect(call)
    assert err.value.status == 503 and not call.reconnecting and call.dropped


async def test_asking_back_a_caller_the_grace_period_requeued_is_a_409() -> None:
    calls = LiveCalls()
    call = kept_call(calls)
    drop(calls)
    calls.apply(CallQueued("L1", AT + timedelta(seconds=30), "q", 1, "u1", CALLER))
    cc = control(calls)
    with pytest.raises(ApiError) as err:
        cc.reclaimable(Principal(None, "a511", "agent"), "L1")
    assert (err.value.status, err.value.code) == (409, "requeued")
    with pytest.raises(ApiError) as err:
        await cc.reconnect(call)
    assert (err.value.status, err.value.code) == (409, "requeued")
    with pytest.raises(ApiError) as err:  # someone else's call stays none of its business
        cc.reclaimable(Principal(None, "a512", "agent"), "L1")
    assert err.value.status == 403
