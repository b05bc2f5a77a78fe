"""The event bus across nodes on the machine's real NATS JetStream: an event published on
one node reaches the other node's handlers that asked for every node's events, once and in
order; a node's own handlers see only its own events; only the types other nodes receive
leave the node; a broker restart in the middle of a stream of events loses none and
duplicates none."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest

from cti.cluster.natsbus import NODE_HEADER, NatsBus
from cti.events import CallLegEnded, CallOffered, ServerLiveState
from tests.cluster_services import NATS_URL, require_nats, start_nats, stop_nats

pytestmark = pytest.mark.broker


def offered(n: int, node: str = "a") -> CallOffered:
    return CallOffered(f"{node}-{n}", datetime.now(UTC), "sales", "PJSIP/1", "agent1", "+86")


@pytest.fixture
async def stream() -> AsyncIterator[tuple[str, str]]:
    """A stream of this test's own (name, subject prefix), deleted afterwards."""
    require_nats()
    tag = uuid.uuid4().hex[:10]
    yield f"CTI_TEST_{tag}", f"ctitest.{tag}"
    nc = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        await nc.jetstream().delete_stream(f"CTI_TEST_{tag}")
    except Exception:  # noqa: S110 - already gone (never created)
        pass
    await nc.close()


def node(name: str, stream: tuple[str, str]) -> NatsBus:
    return NatsBus(NATS_URL, node=name, stream=stream[0], subject_prefix=stream[1])


async def until(cond: object, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_an_event_on_one_node_reaches_the_other_node_once_and_in_order(
    stream: tuple[str, str],
) -> None:
    a, b = node("a", stream), node("b", stream)
    got_b: list[CallOffered] = []
    own_b: list[CallOffered] = []
    got_a: list[CallOffered] = []
    b.subscribe(CallOffered, got_b.append, remote=True)
    b.subscribe(CallOffered, own_b.append)
    a.subscribe(CallOffered, got_a.append, remote=True)
    await a.start()
    await b.start()
    try:
        assert await a.wait_ready(10) and await b.wait_ready(10)
        sent = [offered(i) for i in range(300)]
        for event in sent:
            a.publish(event)
        await until(lambda: len(got_b) >= 300)
        await asyncio.sleep(0.3)  # nothing more arrives
        assert got_b == sent
        assert own_b == []  # b's own handlers: b's events only
        assert got_a == sent  # a's handler got a's events once (locally, not again)
        assert a.health()["connected"] is True and a.health()["buffered"] == 0
    finally:
        await a.close()
        await b.close()


async def test_only_the_events_other_nodes_receive_leave_the_node(
    stream: tuple[str, str],
) -> None:
    """A call leg's end is the driver's business (call rows, recordings): it is handled on
    its node and never encoded nor sent; a ring crosses. A node's own messages, which the
    broker delivers back to it, are acknowledged unread: a message marked as node a's is
    not even decoded by a, while b reads (and here refuses) it."""
    a, b = node("a", stream), node("b", stream)
    legs: list[CallLegEnded] = []
    a.subscribe(CallLegEnded, legs.append)
    got: list[CallOffered] = []
    b.subscribe(CallOffered, got.append, remote=True)
    await a.start()
    await b.start()
    try:
        assert await a.wait_ready(10) and await b.wait_ready(10)
        leg = CallLegEnded("a-1", datetime.now(UTC), "a-1.1", "PJSIP/x-1")
        a.publish(leg)
        a.publish(offered(1))
        await until(lambda: len(got) >= 1 and a.health()["buffered"] == 0)
        assert legs == [leg]  # handled on its node
        assert a.by_type == {"CallOffered": 1} and a.published == 1  # the leg never left
        nc = await nats.connect(NATS_URL, connect_timeout=5)
        try:
            await nc.jetstream().publish(
                f"{stream[1]}.batch", b"not an envelope", headers={NODE_HEADER: a.durable}
            )
        finally:
            await nc.close()
        await until(lambda: b.metrics.bad._value.get() == 1)
        await asyncio.sleep(0.3)
        assert a.metrics.bad._value.get() == 0  # its own: not read
        assert [e.linkedid for e in got] == ["a-1"]
    finally:
        await a.close()
        await b.close()


async def test_a_live_state_crosses_unstored_the_newest_first_and_its_withdrawal_stored(
    stream: tuple[str, str],
) -> None:
    """A server's live state is a snapshot the next one replaces: it goes on plain NATS,
    never into the stream (nothing queued behind it waits for its acknowledgement), the
    newest of those waiting replacing the older; its withdrawal is stored like any event."""
    a, b = node("a", stream), node("b", stream)
    states: list[ServerLiveState] = []
    b.subscribe(ServerLiveState, states.append, remote=True)
    got: list[CallOffered] = []
    b.subscribe(CallOffered, got.append, remote=True)
    await a.start()
    await b.start()
    try:
        assert await a.wait_ready(10) and await b.wait_ready(10)
        now = datetime.now(UTC)
        members = [{"name": f"agent{i}", "state": "idle", "calls_taken": i} for i in range(500)]
        old = ServerLiveState("a", now, ({"name": "q", "members": []},))
        new = ServerLiveState("a", now, ({"name": "q", "members": members},))
        a.publish(old)
        a.publish(new)  # before the sender ran: replaces the old one
        a.publish(offered(1))
        await until(lambda: len(got) == 1 and len(states) >= 1)
        assert states == [new]
        assert a.published == 1  # the stream got the ring only
        gone = ServerLiveState("a", datetime.now(UTC), live=False)
        a.publish(gone)
        await until(lambda: len(states) == 2)
        assert states[-1] == gone and a.published == 2
    finally:
        await a.close()
        await b.close()


async def test_a_broker_restart_during_traffic_loses_and_duplicates_nothing(
    stream: tuple[str, str],
) -> None:
    a, b = node("a", stream), node("b", stream)
    got: list[CallOffered] = []
    b.subscribe(CallOffered, got.append, remote=True)
    await a.start()
    await b.start()
    total = 600
    try:
        assert await a.wait_ready(10) and await b.wait_ready(10)
        buffered_while_down = 0
        for i in range(total):
            a.publish(offered(i))
            if i == 200:
                await asyncio.to_thread(stop_nats)
            if 200 < i < 400:
                buffered_while_down = max(buffered_while_down, len(a._buffer))
            if i == 400:
                await asyncio.to_thread(start_nats)
            await asyncio.sleep(0.005)
        await until(lambda: len(got) >= total, timeout=60)
        await asyncio.sleep(1.0)
        ids = [e.linkedid for e in got]
        assert sorted(ids) == sorted(f"a-{i}" for i in range(total))  # none lost, none twice
        assert buffered_while_down > 0  # the broker really was away
        assert a.dropped == 0
    finally:
        await a.close()
        await b.close()
