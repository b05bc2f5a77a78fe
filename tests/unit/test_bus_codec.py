"""Domain events cross the broker as JSON and come back equal; the bus keeps a node's own
handlers apart from the handlers that want every node's events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cti.bus import EventBus
from cti.cluster.codec import CodecError, Envelope, decode, decode_batch, encode, encode_batch
from cti.cluster.natsbus import NatsBus
from cti.events import (
    AmiConnected,
    CallCompleted,
    CallLegEnded,
    CallOffered,
    CallRecord,
    ChannelInfo,
    ScreenPop,
)

AT = datetime(2026, 11, 29, 8, 0, 1, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    "event",
    [
        CallOffered("a-1.1", AT, "sales", "PJSIP/agent1", "agent1", "+8613800000000"),
        AmiConnected(AT, True, (ChannelInfo("a-1.2", "a-1.2", "PJSIP/x-1", duration_s=2.5),)),
        CallCompleted(CallRecord(linkedid="a-1.3", started_at=AT, ended_at=AT)),
        ScreenPop("agent1", "a-1.1", AT, {"type": "call.pop", "card": {"n": [1, "x"]}}),
    ],
)
def test_an_event_comes_back_equal(event: object) -> None:
    env = Envelope(id="e1", node="n1", event=event)  # type: ignore[arg-type]
    back = decode(encode(env))
    assert back == env


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"id": "x"}', b'{"id":"x","event":{"$dc":"Nope","f":{}}}',
     b'{"id":"x","event":{"$dc":"CallOffered","f":{"bogus":1}}}',
     b'{"id":"x","event":{"$dc":"ChannelInfo","f":{"uniqueid":"1","linkedid":"1","channel":"c"}}}'],
)  # fmt: skip
def test_a_foreign_message_is_refused_not_guessed(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_own_handlers_get_own_events_and_remote_handlers_get_all() -> None:
    bus = EventBus()
    local: list[object] = []
    everywhere: list[object] = []
    bus.subscribe(CallOffered, local.append)
    bus.subscribe(CallOffered, everywhere.append, remote=True)
    mine = CallOffered("a-1", AT, "q", "i", "m", "c")
    theirs = CallOffered("b-1", AT, "q", "i", "m", "c")
    bus.publish(mine)
    bus.deliver_remote(theirs)
    assert local == [mine]
    assert everywhere == [mine, theirs]


def test_other_nodes_events_can_be_asked_for_only_of_the_types_that_cross_nodes() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="CallLegEnded does not cross nodes"):
        bus.subscribe(CallLegEnded, print, remote=True)
    bus.subscribe(CallLegEnded, print)  # this node's own: any type


def test_unsubscribe_removes_only_that_subscription() -> None:
    bus = EventBus()
    got: list[object] = []
    off = bus.subscribe(CallOffered, got.append, remote=True)
    bus.subscribe(CallOffered, got.append)
    off()
    bus.deliver_remote(CallOffered("b-1", AT, "q", "i", "m", "c"))
    assert got == []


def test_a_batch_comes_back_in_order_and_a_bad_entry_is_counted_not_guessed() -> None:
    envs = [Envelope(id=f"e{i}", node="n1", event=CallOffered(f"a-{i}", AT, "q", "i", "m", "c"),
                     at=1.5) for i in range(3)]  # fmt: skip
    assert decode_batch(encode_batch(envs)) == (envs, 0)
    data = encode_batch(envs).replace(b'"$dc":"CallOffered"', b'"$dc":"Nope"', 1)
    back, bad = decode_batch(data)
    assert (back, bad) == (envs[1:], 1)
    assert decode_batch(encode(envs[0])) == ([envs[0]], 0)  # a single envelope too


def test_an_event_that_cannot_cross_is_refused_when_published_and_the_rest_still_go() -> None:
    """Encoded when published: an event the codec cannot carry, or too big for the broker,
    is handled on its node, refused for the others and counted; it never reaches the
    sender (where it would stop every later event)."""
    bus = NatsBus("nats://127.0.0.1:9", node="a")  # never started: the buffer only
    local: list[object] = []
    bus.subscribe(CallOffered, local.append)
    odd = CallOffered("a-1", AT, "q", "i", "m", object())  # type: ignore[arg-type]
    huge = CallOffered("a-2", AT, "q", "i", "m", "9" * 1_100_000)
    fine = CallOffered("a-3", AT, "q", "i", "m", "c")
    for event in (odd, huge, fine):
        bus.publish(event)
    assert local == [odd, huge, fine]
    assert bus.refused == 2 and bus.health()["refused"] == 2
    assert bus.health()["buffered"] == 1
