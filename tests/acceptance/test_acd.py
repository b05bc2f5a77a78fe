"""The ACD against the real Asterisk: strategies, penalties, pause, wrap-up,
ring-no-answer, overflow, lost callers, and the live model after a daemon restart.

What Asterisk does with the queues (strategies, penalties, wrap-up, ring-no-answer,
overflow) is checked on SQLite only; the ACD store the daemon reads them from runs on
PostgreSQL too in the pause, lost-caller and restart tests."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from acd.feature import AcdFeature
from acd.queues_conf import FILE_NAME
from acd.service import AcdService
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.events import AgentStatusChanged
from cti.store.tokens import create_token
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import SQLITE_ONLY, originate_call, wait_for

AcdDaemonFactory = Callable[[], Awaitable[Daemon]]


@pytest.fixture
async def acd_daemon(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient
) -> AsyncIterator[AcdDaemonFactory]:
    """Daemons running the ACD feature; at teardown the queues file is removed and
    app_queue reloaded, so other tests find the shipped support/sales again."""
    started: list[Daemon] = []
    settings = daemon_settings(asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)})

    async def factory() -> Daemon:
        daemon = Daemon(settings, features=[AcdFeature()])
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        return daemon

    yield factory
    for daemon in started:
        await daemon.stop()
    (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
    await ami.send_action("QueueReload", {"Parameters": "yes"})
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")


def acd(daemon: Daemon) -> AcdService:
    feature = daemon.features[0]
    assert isinstance(feature, AcdFeature) and feature.service is not None
    return feature.service


class Events:
    """AMI events seen by the test's own connection while in the ``with`` block."""

    def __init__(self, ami: AmiClient, names: set[str]) -> None:
        self.ami, self.names, self.seen = ami, names, list[Message]()

    def __enter__(self) -> Events:
        self.ami.add_event_handler(self._on)
        return self

    def __exit__(self, *_: object) -> None:
        self.ami.remove_event_handler(self._on)

    def _on(self, msg: Message) -> None:
        if msg.event in self.names:
            self.seen.append(msg)

    def of(self, event: str, linkedid: str | None = None) -> list[Message]:
        return [
            m for m in self.seen
            if m.event == event and (linkedid is None or m.get("Linkedid") == linkedid)
        ]  # fmt: skip


async def set_sim(ami: AmiClient, ring: float, talk: float) -> None:
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": str(ring)})
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(talk)})


async def call_queue(
    ami: AmiClient, queue: str, *, caller: str = "13800138000", hold_s: float = 10
) -> str:
    """A simulated caller straight into ``queue``; returns its Linkedid. (Nothing answers
    the caller before an agent does: for abandon tests go through cti-inbound.)"""
    linkedid = f"t-{secrets.token_hex(6)}"
    await ami.send_action(
        "Originate",
        {
            "Channel": f"Local/{queue}@cti-queue", "Context": "cti-sim-caller", "Exten": "s",
            "Priority": "1", "CallerID": caller, "Variable": f"CTI_SIM_HOLD={hold_s}",
            "Async": "true", "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
        },
    )  # fmt: skip
    return linkedid


async def setup_queue(svc: AcdService, name: str, agents: dict[str, int], **params: Any) -> None:
    """Queue ``name`` with params, and agents (ext -> penalty) logged in on it."""
    from acd import store

    await store.put_queue(svc.db, store.queue_params(name, {"timeout_s": 5, **params}))
    await svc.apply_queues()
    for ext, penalty in agents.items():
        await store.put_agent(svc.db, f"a{ext}", "", [("local", ext)], {name: penalty})
        await svc.set_status(f"a{ext}", "available", by="test")


async def answered_by(events: Events, linkedid: str, timeout: float = 15) -> str:
    async def connected() -> list[Message]:
        return events.of("AgentConnect", linkedid)

    msgs = await wait_for(connected, timeout=timeout, what=f"{linkedid} answered")
    return msgs[0].get("MemberName", "")


async def completed(events: Events, linkedid: str, timeout: float = 15) -> None:
    """The call ended: AgentComplete, or the queued channel's Hangup (app_queue on
    Asterisk 22 sometimes sends no AgentComplete when both Local channels hang up at
    once; seen under load)."""

    async def done() -> list[Message]:
        return events.of("AgentComplete", linkedid) or [
            m for m in events.of("Hangup", linkedid) if m.get("Uniqueid") == linkedid + "-2"
        ]

    await wait_for(done, timeout=timeout, what=f"{linkedid} completed")


async def sequence(ami: AmiClient, events: Events, queue: str, n: int) -> list[str]:
    """``n`` calls one after the other; who answered each."""
    out = []
    for _ in range(n):
        lid = await call_queue(ami, queue, hold_s=20)
        out.append(await answered_by(events, lid))
        await completed(events, lid)
    return out


CALL_EVENTS = {"AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer",
               "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "Hangup"}  # fmt: skip


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("linear", ["a101", "a101", "a101"]),
        ("rrmemory", None),  # rotates: three different answerers in a row of three
        ("leastrecent", None),
        ("fewestcalls", None),
    ],
)
@SQLITE_ONLY
async def test_strategies_distribute_as_specified(
    ami: AmiClient, acd_daemon: AcdDaemonFactory, strategy: str, expected: list[str] | None
) -> None:
    svc = acd(await acd_daemon())
    await set_sim(ami, ring=0.2, talk=0.3)
    queue = f"acd_{strategy}"
    await setup_queue(svc, queue, {"101": 0, "102": 0, "103": 0}, strategy=strategy)
    with Events(ami, CALL_EVENTS) as events:
        got = await sequence(ami, events, queue, 3)
    if expected is not None:
        assert got == expected
    else:
        # each of these gives the next call to an agent who has not had one yet
        assert sorted(got) == ["a101", "a102", "a103"], got


@SQLITE_ONLY
async def test_ringall_rings_all_and_penalties_are_respected(
    ami: AmiClient, acd_daemon: AcdDaemonFactory
) -> None:
    svc = acd(await acd_daemon())
    await set_sim(ami, ring=0.5, talk=0.3)
    await setup_queue(svc, "acd_ringall", {"101": 0, "102": 0}, strategy="ringall")
    await setup_queue(svc, "acd_penalty", {"103": 5, "104": 0}, strategy="rrmemory")
    with Events(ami, CALL_EVENTS) as events:
        lid = await call_queue(ami, "acd_ringall", hold_s=20)
        await answered_by(events, lid)
        rung = {m.get("MemberName") for m in events.of("AgentCalled", lid)}
        assert rung == {"a101", "a102"}
        await completed(events, lid)
        got = await sequence(ami, events, "acd_penalty", 3)
    assert got == ["a104"] * 3  # the penalty-5 agent never gets one while 104 is free


async def test_paused_agent_gets_no_call_and_the_reason_is_kept(
    ami: AmiClient, acd_daemon: AcdDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    daemon = await acd_daemon()
    svc = acd(daemon)
    seen: list[AgentStatusChanged] = []
    daemon.bus.subscribe(AgentStatusChanged, seen.append)
    await set_sim(ami, ring=0.2, talk=0.3)
    await setup_queue(svc, "acd_pause", {"101": 0, "102": 0}, strategy="linear")
    token = await create_token(daemon.db, "a101", "agent")
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/agents/a101/status",
            json={"status": "paused", "reason": "lunch"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 200, await resp.text()
    out = await asyncio.to_thread(asterisk.cli, "queue show acd_pause")
    assert re.search(r"a101 .*paused:lunch", out), out
    with Events(ami, CALL_EVENTS) as events:
        got = await sequence(ami, events, "acd_pause", 2)
        assert got == ["a102", "a102"]
        assert not [m for m in events.of("AgentCalled") if m.get("MemberName") == "a101"]
    assert (seen[-1].agent, seen[-1].status, seen[-1].reason) == ("a101", "paused", "lunch")
    members = {m.name: m for m in svc.live.queues["acd_pause"].members.values()}
    assert members["a101"].paused and members["a101"].paused_reason == "lunch"
    from acd import store

    history = await store.status_history(daemon.db, "a101")
    assert (history[0]["status"], history[0]["reason"]) == ("paused", "lunch")


@SQLITE_ONLY
async def test_wrapup_is_respected(ami: AmiClient, acd_daemon: AcdDaemonFactory) -> None:
    svc = acd(await acd_daemon())
    await set_sim(ami, ring=0.2, talk=0.3)
    await setup_queue(svc, "acd_wrapup", {"101": 0, "102": 0}, strategy="linear", wrapup_s=4)
    with Events(ami, CALL_EVENTS) as events:
        got = await sequence(ami, events, "acd_wrapup", 2)
        assert got == ["a101", "a102"]  # a101 is in wrap-up right after its call
        member = next(m for m in svc.live.queues["acd_wrapup"].members.values() if m.name == "a102")

        async def in_wrapup() -> bool:
            return member.state == "wrapup"

        await wait_for(in_wrapup, timeout=5, what="a102 in wrap-up in the model")
        await asyncio.sleep(4.5)
        got = await sequence(ami, events, "acd_wrapup", 1)
        assert got == ["a101"]


@SQLITE_ONLY
async def test_ring_no_answer_moves_on(ami: AmiClient, acd_daemon: AcdDaemonFactory) -> None:
    svc = acd(await acd_daemon())
    await set_sim(ami, ring=5, talk=0.3)  # nobody answers within the 1 s ring timeout
    await setup_queue(
        svc, "acd_rna", {"101": 0, "102": 0}, strategy="linear", timeout_s=1, retry_s=0
    )
    with Events(ami, CALL_EVENTS) as events:
        lid = await call_queue(ami, "acd_rna", hold_s=20)

        async def moved_on() -> bool:
            return any(m.get("MemberName") == "a102" for m in events.of("AgentCalled", lid))

        await wait_for(moved_on, timeout=10, what="the second agent rung")
        order = [(m.event, m.get("MemberName")) for m in events.seen
                 if m.event in ("AgentCalled", "AgentRingNoAnswer")]  # fmt: skip
    assert order[:3] == [
        ("AgentCalled", "a101"), ("AgentRingNoAnswer", "a101"), ("AgentCalled", "a102"),
    ]  # fmt: skip


@SQLITE_ONLY
async def test_overflow_fires_at_the_configured_time(
    ami: AmiClient, acd_daemon: AcdDaemonFactory
) -> None:
    svc = acd(await acd_daemon())
    await set_sim(ami, ring=0.2, talk=0.3)
    await setup_queue(svc, "acd_ovf2", {"101": 0})
    await setup_queue(svc, "acd_ovf", {"102": 0}, overflow_after_s=3, overflow_queue="acd_ovf2")
    await svc.set_status("a102", "paused", "break", by="test")  # nobody takes it here
    with Events(ami, CALL_EVENTS) as events:
        lid = await call_queue(ami, "acd_ovf", hold_s=20)
        assert await answered_by(events, lid, timeout=15) == "a101"
        joins = {m.get("Queue"): m for m in events.of("QueueCallerJoin", lid)}
    assert set(joins) == {"acd_ovf", "acd_ovf2"}
    t_join = float(joins["acd_ovf"]["Timestamp"])
    t_moved = float(joins["acd_ovf2"]["Timestamp"])
    assert 3 <= t_moved - t_join < 4.5


async def test_lost_caller_appears_on_abandon_and_closes_on_a_later_answer(
    ami: AmiClient, acd_daemon: AcdDaemonFactory
) -> None:
    daemon = await acd_daemon()
    svc = acd(daemon)
    await set_sim(ami, ring=0.2, talk=0.3)
    token = await create_token(daemon.db, "sup", "supervisor")
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/lost-callers"
    headers = {"Authorization": f"Bearer {token}"}
    caller = "13912345678"
    async with aiohttp.ClientSession() as http:

        async def open_entries() -> list[dict[str, Any]]:
            async with http.get(url, headers=headers) as resp:
                body = await resp.json()
            return [r for r in body["lost_callers"] if r["caller_num"] == caller]

        # through the inbound context (it answers the caller) into support, nobody there
        lid = await originate_call(ami, caller=caller, hold_s=1.5)
        entries = await wait_for(open_entries, timeout=20, what="the lost caller")
        assert entries[0]["linkedid"] == lid and entries[0]["reason"] == "abandoned"

        await setup_queue(svc, "support", {"101": 0})
        with Events(ami, CALL_EVENTS) as events:
            lid2 = await originate_call(ami, caller=caller, hold_s=3)
            await answered_by(events, lid2)

        async def closed() -> bool:
            return not await open_entries()

        await wait_for(closed, timeout=20, what="the lost caller closed")


def parse_queue_show(out: str) -> dict[str, tuple[str, int, bool]]:
    """member name -> (interface, penalty, paused) from ``queue show <q>``."""
    members = {}
    for line in out.splitlines():
        m = re.match(r"\s+(\S+) \(([^ )]+)(?: from [^)]+)?\)(.*)", line)
        if m:
            pen = re.search(r"with penalty (\d+)", m.group(3))
            members[m.group(1)] = (
                m.group(2),
                int(pen.group(1)) if pen else 0,
                "(paused" in m.group(3),
            )
    return members


async def test_model_matches_asterisk_after_a_daemon_restart_mid_call(
    ami: AmiClient, acd_daemon: AcdDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    first = await acd_daemon()
    await set_sim(ami, ring=0.2, talk=15)
    await setup_queue(acd(first), "acd_restart", {"101": 2, "102": 0, "103": 0},
                      strategy="linear")  # fmt: skip
    await acd(first).set_status("a103", "paused", "meeting", by="test")
    with Events(ami, CALL_EVENTS) as events:
        lid = await call_queue(ami, "acd_restart", hold_s=30)
        assert await answered_by(events, lid) == "a102"
    await first.stop()
    # while the daemon is away Asterisk loses a member (as after an Asterisk restart):
    # the store says a101 is logged in, so the next daemon puts it back
    await ami.send_action(
        "QueueRemove", {"Queue": "acd_restart", "Interface": "Local/101@cti-sim-agents/n"}
    )
    second = await acd_daemon()
    svc = acd(second)

    async def resynced() -> bool:
        q = svc.live.queues.get("acd_restart")
        return q is not None and len(q.members) == 3

    await wait_for(resynced, timeout=10, what="the model rebuilt")
    out = await asyncio.to_thread(asterisk.cli, "queue show acd_restart")
    shown = parse_queue_show(out)
    q = svc.live.queues["acd_restart"]
    model = {m.name: (m.interface, m.penalty, m.paused) for m in q.members.values()}
    assert model == shown, out
    assert model["a101"] == ("Local/101@cti-sim-agents/n", 2, False)
    assert model["a103"][2] and not model["a102"][2]
    states = {m.name: m.state for m in q.members.values()}
    assert states["a102"] == "on_call" and states["a101"] == "idle"
