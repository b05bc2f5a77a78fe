"""encode_action and PendingActions: no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cti.ami.actions import AmiActionError, PendingActions, UnsafeActionValue, encode_action
from cti.ami.protocol import AmiParser, Message


def m(**headers: str) -> Message:
    return Message(list(headers.items()))


# --- encode_action -----------------------------------------------------------------------


def test_encode_basic() -> None:
    data = encode_action("QueueAdd", {"Queue": "support", "Penalty": 2}, "cti-7")
    assert data == (b"Action: QueueAdd\r\nActionID: cti-7\r\nQueue: support\r\nPenalty: 2\r\n\r\n")


def test_encode_without_headers() -> None:
    assert encode_action("Ping", None, "cti-1") == b"Action: Ping\r\nActionID: cti-1\r\n\r\n"
    assert encode_action("Ping", {}, "cti-1") == b"Action: Ping\r\nActionID: cti-1\r\n\r\n"


def test_encode_sequence_repeats_key() -> None:
    data = encode_action(
        "Originate",
        {"Channel": "Local/1@ctx", "Variable": ["A=1", "B=2"], "Async": True},
        "o-1",
    )
    assert data == (
        b"Action: Originate\r\nActionID: o-1\r\nChannel: Local/1@ctx\r\n"
        b"Variable: A=1\r\nVariable: B=2\r\nAsync: true\r\n\r\n"
    )
    assert encode_action("X", {"Variable": ("A=1",)}, "1").count(b"Variable") == 1


def test_encode_utf8_round_trips_through_the_parser() -> None:
    data = encode_action("Originate", {"CallerID": '"张三" <13800138000>'}, "o-2")
    parser = AmiParser()
    parser.receive_data(data)
    (msg,) = parser.events_received()
    assert isinstance(msg, Message)
    assert msg["CallerID"] == '"张三" <13800138000>'
    assert msg.action_id == "o-2"
    assert msg["Action"] == "Originate"


BAD = ["\r", "\n", "\r\n", "\x00", "x\r\nAction: Originate", "ok\nSecret: y"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(
    "where",
    ["action", "key", "value", "sequence item", "action_id"],
)
def test_unsafe_input_is_refused_before_encoding(bad: str, where: str) -> None:
    action, headers, action_id = "Setvar", {"Variable": "X", "Value": "1"}, "cti-1"
    headers_any: dict[str, Any] = dict(headers)
    if where == "action":
        action = "Set" + bad + "var"
    elif where == "key":
        headers_any["Val" + bad + "ue"] = "1"
    elif where == "value":
        headers_any["Value"] = "1" + bad
    elif where == "sequence item":
        headers_any["Variable"] = ["A=1", "B=" + bad]
    else:
        action_id = "cti" + bad
    with pytest.raises(UnsafeActionValue) as excinfo:
        encode_action(action, headers_any, action_id)
    assert isinstance(excinfo.value, ValueError)


def test_unsafe_error_never_contains_the_value() -> None:
    with pytest.raises(UnsafeActionValue) as excinfo:
        encode_action("Login", {"Username": "u", "Secret": "hunter2\r\n"}, "1")
    assert "hunter2" not in str(excinfo.value)
    assert "Secret" in str(excinfo.value)


@pytest.mark.parametrize("key", ["Bad Key", "Key:", "", "Kéy", "A.B"])
def test_bad_keys_refused(key: str) -> None:
    with pytest.raises(UnsafeActionValue):
        encode_action("Ping", {key: "1"}, "1")


@pytest.mark.parametrize("key", ["Action", "actionid", "ActionID"])
def test_reserved_keys_refused(key: str) -> None:
    with pytest.raises(UnsafeActionValue):
        encode_action("Ping", {key: "Originate"}, "1")


def test_bad_value_type_refused() -> None:
    with pytest.raises(TypeError):
        encode_action("Ping", {"X": 1.5}, "1")  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        encode_action("Ping", {"X": [1.5]}, "1")  # type: ignore[list-item]


# --- PendingActions ----------------------------------------------------------------------


def future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


async def test_new_id_unique() -> None:
    pending = PendingActions()
    ids = {pending.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("cti-") for i in ids)


async def test_response_resolves_non_list_action() -> None:
    pending = PendingActions()
    fut = future()
    pending.add("cti-1", is_list=False, loop_future=fut)
    assert "cti-1" in pending
    assert not pending.feed(m(Event="Newchannel"))
    assert not pending.feed(m(Response="Success", ActionID="other"))
    # QueueAdd: a plain Response resolves it, whatever its Message says
    reply = m(Response="Success", ActionID="cti-1", Message="Added interface to queue")
    assert pending.feed(reply)
    assert fut.result() is reply
    assert len(pending) == 0
    assert not pending.feed(reply)  # a duplicate is not ours any more


async def test_error_response_fails_with_ami_action_error() -> None:
    pending = PendingActions()
    fut = future()
    pending.add("cti-1", is_list=False, loop_future=fut)
    reply = m(Response="Error", ActionID="cti-1", Message="Unable to add interface")
    assert pending.feed(reply)
    exc = fut.exception()
    assert isinstance(exc, AmiActionError)
    assert exc.response is reply
    assert str(exc) == "Unable to add interface"


async def test_list_action_collects_items_until_complete() -> None:
    pending = PendingActions()
    fut = future()
    pending.add("list-1", is_list=True, loop_future=fut)
    start = m(Response="Success", ActionID="list-1", EventList="start", Message="will follow")
    item1 = m(Event="CoreShowChannel", ActionID="list-1", Channel="A")
    item2 = m(Event="CoreShowChannel", ActionID="list-1", Channel="B")
    unrelated = m(Event="Hangup", Channel="C")
    complete = m(Event="CoreShowChannelsComplete", ActionID="list-1", EventList="Complete")
    assert pending.feed(start)
    assert pending.feed(item1)
    assert not pending.feed(unrelated)
    assert not fut.done()
    assert pending.feed(item2)
    assert pending.feed(complete)
    assert fut.result() == (start, [item1, item2])
    assert len(pending) == 0


async def test_list_action_error_and_empty_answer() -> None:
    pending = PendingActions()
    failed, empty = future(), future()
    pending.add("l-1", is_list=True, loop_future=failed)
    pending.add("l-2", is_list=True, loop_future=empty)
    assert pending.feed(m(Response="Error", ActionID="l-1", Message="Permission denied"))
    assert isinstance(failed.exception(), AmiActionError)
    plain = m(Response="Success", ActionID="l-2", Message="No channels")
    assert pending.feed(plain)
    assert empty.result() == (plain, [])


async def test_event_with_action_id_of_non_list_action_is_an_event() -> None:
    pending = PendingActions()
    fut = future()
    pending.add("o-1", is_list=False, loop_future=fut)
    # OriginateResponse has a "Response:" header but is an event, not the answer
    assert not pending.feed(m(Event="OriginateResponse", ActionID="o-1", Response="Failure"))
    assert not fut.done()
    assert pending.feed(m(Response="Success", ActionID="o-1", Message="Originate queued"))
    assert fut.done()


async def test_duplicate_id_refused() -> None:
    pending = PendingActions()
    pending.add("x", is_list=False, loop_future=future())
    with pytest.raises(ValueError):
        pending.add("x", is_list=False, loop_future=future())


async def test_cancelled_future_then_late_response() -> None:
    pending = PendingActions()
    fut = future()
    pending.add("cti-1", is_list=False, loop_future=fut)
    fut.cancel()
    assert pending.feed(m(Response="Success", ActionID="cti-1"))
    assert len(pending) == 0


async def test_discard() -> None:
    pending = PendingActions()
    pending.add("cti-1", is_list=False, loop_future=future())
    pending.discard("cti-1")
    pending.discard("cti-1")
    assert not pending.feed(m(Response="Success", ActionID="cti-1"))


async def test_fail_all() -> None:
    pending = PendingActions()
    futs = [future() for _ in range(3)]
    for i, fut in enumerate(futs):
        pending.add(f"cti-{i}", is_list=bool(i % 2), loop_future=fut)
    futs[2].cancel()
    boom = ConnectionError("gone")
    pending.fail_all(boom)
    assert futs[0].exception() is boom
    assert futs[1].exception() is boom
    assert futs[2].cancelled()
    assert len(pending) == 0
    pending.fail_all(boom)  # nothing left: no error
