"""In-call hold and blind transfer against the real Asterisk.

Hold: a carrier caller (SIPp through the shipped ``trunk`` endpoint -> cti-inbound -> the
queue) answered by a simulated agent puts the call on hold with a re-INVITE ``a=sendonly``
and takes it back with ``a=sendrecv``. chan_pjsip turns those into Hold/Unhold AMI events
on the caller's channel (the only SIP leg here: agents are Local channels, which never
produce Hold/Unhold). The test steers SIPp with in-dialog SIP MESSAGEs (AMI SendText on the
caller's channel), so nothing depends on how fast the queue connects. Checked: the daemon's
CallHeld/CallResumed for the call's Linkedid, the agent's card updates (held, resumed) and
the statistics (hold count and duration, AHT) of the queue's hour over the REST API.

Transfer: AMI BlindTransfer of the answering agent's channel to another simulated agent;
Asterisk reports a BlindTransfer event and the original agent's card shows ``transferred``.

Both run on SQLite only (harness.SQLITE_ONLY): what they prove is Asterisk's and the card's;
the statistics store runs on PostgreSQL in test_stats.py and tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acd import store as acd_store
from acd.queues_conf import QueueParams
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.events import CallHeld, CallResumed
from cti.store.tokens import create_token
from stats.feature import StatsFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import (
    SQLITE_ONLY,
    free_media_ports,
    free_port,
    originate_call,
    wait_for,
)
from tests.acceptance.test_pop import Stack, desktop, next_of, running_stack, set_sim

SCENARIO = Path(__file__).parent / "sipp" / "uac_hold.xml"
HOLD_S = 3.0  # how long the test keeps the caller on hold (measured, not asserted as time)
LIVE = ("held", "resumed", "transferred")  # the in-call states of a card
WATCHED = (
    "QueueCallerJoin", "AgentConnect", "BridgeEnter", "AgentComplete", "Hold", "Unhold",
    "BlindTransfer", "Hangup",
)  # fmt: skip


class Watch:
    """This test's own view: raw AMI events of interest and the daemon's domain events."""

    def __init__(self, stack: Stack) -> None:
        self.ami: list[Message] = []
        self.bus: list[CallHeld | CallResumed] = []
        stack.ami.add_event_handler(self._on_ami)
        stack.daemon.bus.subscribe(CallHeld, self.bus.append)
        stack.daemon.bus.subscribe(CallResumed, self.bus.append)

    def _on_ami(self, msg: Message) -> None:
        if msg.event in WATCHED:
            self.ami.append(msg)

    def close(self, stack: Stack) -> None:
        stack.ami.remove_event_handler(self._on_ami)

    def of(self, name: str, **match: str) -> list[Message]:
        return [
            m for m in self.ami if m.event == name and all(m.get(k) == v for k, v in match.items())
        ]

    async def one(self, name: str, timeout: float = 30, **match: str) -> Message:
        async def seen() -> list[Message]:
            return self.of(name, **match)

        return (await wait_for(seen, timeout=timeout, what=f"{name} {match}"))[0]


@pytest.fixture
async def hstack(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient
) -> AsyncIterator[tuple[Stack, str, Watch]]:
    """ACD + CRM + desktop + statistics; inbound calls go to a queue of this test only
    (Asterisk's queue_log is shared by the whole session)."""
    queue = f"ht{secrets.token_hex(4)}"
    base = daemon_settings(asterisk, db_url).model_dump()
    base["site"] = {"timezone": "UTC"}
    base["acd"] = {"asterisk_etc_dir": str(asterisk.etc_dir)}
    base["stats"] = {"tail_interval_s": 1}
    await ami.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": queue})
    try:
        async with running_stack(asterisk, Settings(**base), ami, StatsFeature()) as stack:
            await acd_store.put_queue(stack.daemon.db, QueueParams(queue, service_level_s=20))
            acd = stack.daemon.services.extra["acd"]
            assert await acd.apply_queues()  # type: ignore[attr-defined]

            async def exists() -> bool:
                _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
                return any(i.get("Event") == "QueueParams" for i in items)

            await wait_for(exists, timeout=10, what=f"queue {queue} in Asterisk")
            watch = Watch(stack)
            try:
                yield stack, queue, watch
            finally:
                watch.close(stack)
                for m in watch.ami:  # shown by pytest when the test failed
                    print("ami:", dict(m))
    finally:
        await ami.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": "support"})


async def send_text(ami: AmiClient, channel: str, text: str) -> None:
    """An in-dialog SIP MESSAGE to the SIPp caller: its next step."""
    resp = await ami.send_action("SendText", {"Channel": channel, "Message": text})
    assert resp.get("Response") == "Success", dict(resp)


async def updates_until(
    ws: aiohttp.ClientWebSocketResponse, linkedid: str, state: str
) -> tuple[list[str], dict[str, Any]]:
    """The states of the call's ``call.update`` messages up to the first ``state`` one."""
    states: list[str] = []
    while True:
        update = await next_of(ws, linkedid, type="call.update", timeout=30)
        states.append(update["state"])
        if update["state"] == state:
            return states, update


async def hourly_rows(stack: Stack, queue: str, day: datetime) -> list[dict[str, Any]]:
    """The queue's rows of the hourly report, over REST as a supervisor."""
    token = await create_token(stack.daemon.db, f"sup-{secrets.token_hex(3)}", "supervisor")
    d = day.date()
    q = f"from={(d - timedelta(days=1)).isoformat()}&to={(d + timedelta(days=1)).isoformat()}"
    status, body = await stack.api("GET", f"/api/v1/stats/hourly?{q}&queue={queue}", token)
    assert status == 200, body
    rows: list[dict[str, Any]] = [r for r in body["rows"] if r["queue"] == queue]
    return rows


@SQLITE_ONLY
async def test_sip_caller_hold_updates_the_card_and_the_statistics(
    hstack: tuple[Stack, str, Watch], ami: AmiClient, asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    assert shutil.which("sipp"), "sip-tester (sipp) is required"
    stack, queue, watch = hstack
    token = await stack.agent("h301", "301", queue=queue)
    ws = await desktop(stack, token)
    await set_sim(ami, ring=1, talk=120)  # the caller ends the call, not the agent
    started = datetime.now(UTC)
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIO), "-m", "1", "-i", "127.0.0.1",
        "-p", str(free_port(socket.SOCK_DGRAM)), "-mi", "127.0.0.1",
        "-mp", str(free_media_ports()), "-s", "4008001234",
        "-nostdin", "-timeout", "120", "-timeout_error",
        f"127.0.0.1:{asterisk.spec.sip_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        join = await watch.one("QueueCallerJoin", Queue=queue)
        channel, linkedid = join["Channel"], join["Linkedid"]
        assert channel.startswith("PJSIP/trunk-")
        pop = await next_of(ws, linkedid, type="pop", timeout=30)
        assert pop["agent"] == "h301" and pop["queue"] == queue
        await watch.one("AgentConnect", Queue=queue, Linkedid=linkedid)
        await next_of(ws, linkedid, type="call.update", state="answered", timeout=30)

        await send_text(ami, channel, "hold")
        hold = await watch.one("Hold", Linkedid=linkedid)
        assert hold["Channel"] == channel  # the SIP leg that sent a=sendonly
        states, held = await updates_until(ws, linkedid, "held")
        await asyncio.sleep(HOLD_S)
        await send_text(ami, channel, "resume")
        unhold = await watch.one("Unhold", Linkedid=linkedid)
        assert unhold["Channel"] == channel
        more, resumed = await updates_until(ws, linkedid, "resumed")
        states += more
        assert held["at"] <= resumed["at"]
        measured = float(unhold["Timestamp"]) - float(hold["Timestamp"])
        assert measured >= HOLD_S

        # the daemon's domain events, for this call, in order
        def mine(kind: type[CallHeld | CallResumed]) -> list[CallHeld | CallResumed]:
            return [e for e in watch.bus if isinstance(e, kind) and e.linkedid == linkedid]

        async def both() -> bool:
            return bool(mine(CallHeld)) and bool(mine(CallResumed))

        await wait_for(both, timeout=15, what="CallHeld and CallResumed on the bus")
        assert len(mine(CallHeld)) == 1 and len(mine(CallResumed)) == 1
        assert watch.bus.index(mine(CallHeld)[0]) < watch.bus.index(mine(CallResumed)[0])

        await send_text(ami, channel, "bye")
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        more, ended = await updates_until(ws, linkedid, "ended")
        states += more
        assert ended["reason"] == "answered"
        assert [x for x in states if x in LIVE] == ["held", "resumed"], states
        # the call's AgentComplete, by its queue (this test's own, one call) and member:
        # app_queue adds the caller's fields (Linkedid) and the agent's (DestLinkedid)
        # only for the channels still there as it builds the event, and the caller's
        # hang-up ends both; once in CI it had neither (Queue, Interface, MemberName,
        # HoldTime, TalkTime, Reason only)
        complete = await watch.one("AgentComplete", Queue=queue, MemberName="h301")
        talk = float(complete["TalkTime"])  # bridged time, hold included

        # statistics of the queue's hour: one handled call with one hold of `measured`
        async def rolled_up() -> bool:
            rows = await hourly_rows(stack, queue, started)
            return bool(rows) and rows[0]["handled"] == 1 and rows[0]["hold_count"] >= 1

        with contextlib.suppress(AssertionError):  # a timeout: the asserts below say what
            await wait_for(rolled_up, timeout=30, what="the call and its hold in the stats")
        rows = await hourly_rows(stack, queue, started)
        assert len(rows) == 1, rows  # one call, one queue entry, one hour
        row = rows[0]
        assert row["offered"] == 1 and row["answered"] == 1 and row["handled"] == 1
        assert row["hold_count"] == 1
        assert row["hold_s"] == pytest.approx(measured, abs=1.0)
        assert row["hold_max_s"] == pytest.approx(measured, abs=1.0)
        # talk excludes the hold; AHT = talk + hold + wrap-up (0) = the bridged call time
        # (queue_log's and AMI's whole seconds may be read across a second boundary)
        assert row["talk_s"] == pytest.approx(talk - row["hold_s"], abs=1.0)
        assert row["aht_s"] == pytest.approx(row["talk_s"] + row["hold_s"], abs=1e-6)
        assert row["aht_s"] == pytest.approx(talk, abs=1.0)
        assert row["aht_s"] >= row["hold_s"]
    finally:
        await ws.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@SQLITE_ONLY
async def test_blind_transfer_updates_the_original_agents_card(
    hstack: tuple[Stack, str, Watch], ami: AmiClient
) -> None:
    stack, queue, watch = hstack
    token = await stack.agent("h311", "311", queue=queue)
    ws = await desktop(stack, token)
    await set_sim(ami, ring=1, talk=60)
    linkedid = await originate_call(ami, caller="13800138011", hold_s=60)
    try:
        await next_of(ws, linkedid, type="pop", timeout=30)
        connect = await watch.one("AgentConnect", Queue=queue, Linkedid=linkedid)
        await next_of(ws, linkedid, type="call.update", state="answered", timeout=30)
        agent_channel = connect["DestChannel"]
        assert agent_channel.startswith("Local/311@cti-sim-agents")
        # AgentConnect can precede the bridge: a transfer before BridgeEnter is "invalid"
        await watch.one("BridgeEnter", Channel=agent_channel)
        resp = await ami.send_action(
            "BlindTransfer",
            {"Channel": agent_channel, "Context": "cti-sim-agents", "Exten": "312"},
        )
        assert resp.get("Response") == "Success", dict(resp)
        bt = await watch.one("BlindTransfer", TransfererLinkedid=linkedid)
        assert bt["Result"] == "Success" and bt["Extension"] == "312"
        states, update = await updates_until(ws, linkedid, "transferred")
        assert update["transfer"] == {"kind": "blind", "target": "312"}
        # Asterisk unholds the transferer (an Unhold with no Hold before it): not a resume
        assert watch.of("Unhold", Linkedid=linkedid) and not watch.of("Hold", Linkedid=linkedid)
        assert [x for x in states if x in LIVE] == ["transferred"], states
    finally:
        await ws.close()
