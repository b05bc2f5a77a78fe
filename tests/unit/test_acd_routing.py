"""ACD routing pieces without sockets: queue parameters and their rendering, number
validation for outbound calls, overflow selection, and outbound call results from AMI
event sequences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from acd.live import LiveModel
from acd.notifier import AcdNotifier
from acd.outbound import Dialer, InvalidNumber, OutboundCall, is_own_call, valid_number
from acd.queues_conf import QueueParams, owner_queue, render
from acd.service import AcdService
from acd.settings import AcdSettings
from acd.store import ConfigInvalid, queue_params
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.events import (
    CallAnswered,
    CallDialEnded,
    CallDialing,
    CallHandled,
    CallLegEnded,
    CallQueued,
    DomainEvent,
)
from cti.services import Services
from cti.store.db import Database

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def test_overflow_and_callback_parameters_are_validated() -> None:
    p = queue_params("q1", {"overflow_after_s": 30, "overflow_action": "voicemail",
                            "overflow_mailbox": "8001"})  # fmt: skip
    assert p.overflow == "voicemail"
    assert queue_params("q1", {"overflow_queue": "q2"}).overflow == "queue"  # as before
    assert queue_params("q1", {}).overflow == ""
    for bad in (
        {"overflow_action": "voicemail"},  # no mailbox
        {"overflow_action": "queue"},  # no queue
        {"overflow_action": "sms"},
        {"overflow_mailbox": "8001@evil"},
        {"callback_key": "12"},
        {"callback_key": "*"},
        {"owner_ring_s": -1},
        {"owner_ring_s": "5"},
    ):
        with pytest.raises(ConfigInvalid):
            queue_params("q1", bad)
    with pytest.raises(ConfigInvalid, match="reserved"):
        queue_params("cti_owner_1", {})


def test_render_owner_queues_and_callback_key() -> None:
    text = render(
        [QueueParams("support", callback_key="1"), QueueParams("sales")], [7, 3],
        callback_prompt="custom/press-1", callback_announce_s=20,
    )  # fmt: skip
    support = text.split("[support]")[1].split("\n\n")[0]
    assert "context = cti-acd-key-1" in support
    assert "periodic-announce = custom/press-1" in support
    assert support.count("periodic-announce-frequency") == 1
    sales = text.split("[sales]")[1].split("\n\n")[0]
    assert "context" not in sales and "periodic-announce-frequency = 0" in sales
    assert owner_queue(3) == "cti_owner_3"
    assert text.index("[cti_owner_3]") < text.index("[cti_owner_7]")
    owner = text.split("[cti_owner_3]")[1].split("\n\n")[0]
    assert "strategy = ringall" in owner and "joinempty = paused," in owner


def test_periodic_announcements_are_validated_and_rendered() -> None:
    for bad in (
        {"periodic_announce": "../../etc/passwd", "periodic_announce_s": 30},
        {"periodic_announce": "beep,evil", "periodic_announce_s": 30},
        {"periodic_announce": "a b"},
        {"periodic_announce_s": 30},  # no sound
        {"periodic_announce": "beep", "periodic_announce_s": -1},
    ):
        with pytest.raises(ConfigInvalid):
            queue_params("q1", bad)
    sound = "/srv/cti/x/lib/sounds/cti/upload-ab"
    mine = queue_params("q1", {"periodic_announce": sound, "periodic_announce_s": 45})
    both = QueueParams("q2", callback_key="1", periodic_announce="queue-periodic-announce",
                       periodic_announce_s=60)  # fmt: skip
    text = render([mine, both], callback_prompt="custom/press-1", callback_announce_s=20)
    q1 = text.split("[q1]")[1].split("\n\n")[0]
    assert "periodic-announce = /srv/cti/x/lib/sounds/cti/upload-ab" in q1
    assert "periodic-announce-frequency = 45" in q1
    q2 = text.split("[q2]")[1].split("\n\n")[0]
    assert "periodic-announce = queue-periodic-announce,custom/press-1" in q2
    assert "periodic-announce-frequency = 60" in q2 and q2.count("periodic-announce-freq") == 1


@pytest.mark.parametrize(
    ("raw", "e164"),
    [("139 1234 5678", "+8613912345678"), ("+8613912345678", "+8613912345678"),
     ("010-12345678", "+861012345678"), ("+1 650 253 0000", "+16502530000")],
)  # fmt: skip
def test_valid_numbers(raw: str, e164: str) -> None:
    assert valid_number(raw, "CN") == e164


@pytest.mark.parametrize(
    "raw",
    ["", "1", "123", "139&PJSIP/evil", "139\r\nAction: Login", "5551234" * 5, None, 13912345678,
     "+86 139 1234 5678 9999", "SIP/100"],
)  # fmt: skip
def test_invalid_numbers(raw: object) -> None:
    with pytest.raises(InvalidNumber):
        valid_number(raw, "CN")


def test_own_calls_are_recognised() -> None:
    assert is_own_call("cti-out-ab12") and is_own_call("cti-cb-3-ab12")
    assert not is_own_call("1700000000.12") and not is_own_call("t-cti-out-")


def join(uid: str, t: float, pos: int, queue: str = "q1") -> CallQueued:
    """The platform's event for a caller entering ``queue``."""
    return CallQueued(uid, T0 + timedelta(seconds=t), queue, pos, uid, f"Local/{uid};2")


def test_overflow_due_per_action_skips_placeholders_and_gives_positions() -> None:
    live = LiveModel()
    for e in (join("a", 0, 1), join("cti-cb-1-x", 1, 2), join("b", 2, 3), join("c", 9, 4)):
        live.apply(e)
    live.handle({"Event": "QueueMemberAdded", "Queue": "q1", "Interface": "Local/1@x/n",
                 "Timestamp": f"{T0.timestamp():.6f}"}, T0)  # fmt: skip
    svc = AcdService(
        Database.from_url("sqlite+aiosqlite://"), AmiClient("127.0.0.1", 1, "x", "y"), live,
        AcdNotifier(EventBus()), AcdSettings(),
    )  # fmt: skip
    svc._queues = {"q1": QueueParams("q1", overflow_after_s=5, overflow_action="callback")}
    due = svc.overflow_due(T0 + timedelta(seconds=8))
    assert [(ch, pos, p.overflow) for ch, _, p, pos in due] == [
        ("Local/a;2", 1, "callback"), ("Local/b;2", 3, "callback"),
    ]  # fmt: skip
    # no member logged in at all: everyone overflows at once
    live.queues["q1"].members.clear()
    assert len(svc.overflow_due(T0 + timedelta(seconds=9))) == 3


def dialing(lid: str, context: str = "cti-outbound") -> CallDialing:
    return CallDialing(lid, T0, lid, "Local/x;1", context)


def dial_end(lid: str, status: str, context: str = "cti-outbound") -> CallDialEnded:
    return CallDialEnded(lid, T0, lid, "Local/x;1", context, status)


def leg_end(lid: str, uniqueid: str) -> CallLegEnded:
    return CallLegEnded(lid, T0, uniqueid, "Local/x;1")


async def results_of(events: list[DomainEvent], call: OutboundCall) -> list[str]:
    dialer = Dialer(
        AmiClient("127.0.0.1", 1, "x", "y"), Services(), agent_ring_s=30, customer_ring_s=45
    )
    got: list[str] = []

    async def on_result(c: OutboundCall, result: str, at: datetime) -> None:
        got.append(result)

    dialer.on_result(on_result)
    dialer.calls[call.linkedid] = call
    for e in events:
        dialer.apply(e)
    await asyncio.sleep(0)
    await dialer.drain()
    return got


async def test_outbound_results() -> None:
    lid = "cti-out-1"
    answered: list[DomainEvent] = [
        dial_end(lid, "ANSWER", "cti-acd-callback-slot"),  # not the [cti-outbound] leg
        dialing(lid),
        dial_end(lid, "ANSWER"),
        leg_end(lid, lid),
    ]
    assert await results_of(answered, OutboundCall(lid, "click_to_call", "+1", "a")) == ["answered"]
    no_answer: list[DomainEvent] = [
        dialing(lid), dial_end(lid, "NOANSWER"), leg_end(lid, lid + "-2"), leg_end(lid, lid),
    ]  # fmt: skip
    assert await results_of(no_answer, OutboundCall(lid, "callback", "+1", "a", 1)) == [
        "unanswered"
    ]
    never: list[DomainEvent] = [leg_end(lid, lid)]  # the agent never answered / slot timed out
    assert await results_of(never, OutboundCall(lid, "callback", "+1", "a", 1)) == ["not_dialled"]
    other: list[DomainEvent] = [dial_end("t-1", "ANSWER")]
    assert await results_of(other, OutboundCall(lid, "callback", "+1", "a", 1)) == []


def test_a_missing_agent_complete_is_made_up_by_the_members_in_call_flag() -> None:
    iface = "Local/101@cti-sim-agents/n"

    def at(t: float) -> str:
        return f"{(T0 + timedelta(seconds=t)).timestamp():.6f}"

    base = {"Queue": "q1", "Interface": iface, "MemberName": "a101", "Timestamp": at(0)}
    live = LiveModel()
    live.wrapup_config = {"q1": 5}
    live.handle({**base, "Event": "QueueMemberAdded", "Status": "1"}, T0)
    live.apply(CallAnswered("L1", T0 + timedelta(seconds=10), "q1", iface, "a101", 3.0))
    member = live.queues["q1"].members[iface]
    # an older status (before the connect) does not end the call
    live.handle({**base, "Event": "QueueMemberStatus", "InCall": "0", "Timestamp": at(9)}, T0)
    assert member.state == "on_call"
    live.handle({**base, "Event": "QueueMemberStatus", "InCall": "1", "Timestamp": at(10.1)}, T0)
    assert member.state == "on_call"
    # the call ends; app_queue sent no AgentComplete
    live.handle({**base, "Event": "QueueMemberStatus", "InCall": "0", "Timestamp": at(30)}, T0)
    assert (member.state, member.linkedid) == ("wrapup", "")
    assert member.snapshot(T0 + timedelta(seconds=36))["state"] == "idle"
    # a late AgentComplete changes nothing but the counters
    live.apply(CallHandled("L1", T0 + timedelta(seconds=30), "q1", iface, "a101", 3.0, 20.0))
    assert member.state == "wrapup" and live.queues["q1"].completed == 1


async def test_a_callback_needs_a_number_and_an_existing_queue() -> None:
    from acd.callbacks import CallbackError, Callbacks
    from acd.lost import LostCallers

    db = Database.from_url("sqlite+aiosqlite://")  # never reached: refused before the store
    ami = AmiClient("127.0.0.1", 1, "x", "y")
    dialer = Dialer(ami, Services(), agent_ring_s=30, customer_ring_s=45)
    callbacks = Callbacks(
        db, ami, dialer, AcdNotifier(EventBus()), LostCallers(db, "CN"), AcdSettings(), "CN"
    )
    callbacks.queue_exists = {"support"}.__contains__
    with pytest.raises(CallbackError, match="no number"):
        await callbacks.request(number="anonymous", queue="support", source="ivr")
    with pytest.raises(CallbackError, match="no queue"):
        await callbacks.request(number="13912345678", queue="nosuch", source="ivr")
    await db.dispose()
