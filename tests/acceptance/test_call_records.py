"""Every call ends as exactly one store row, also across AMI cuts and Asterisk restarts."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from crm_bridge.access import SYSTEM
from crm_bridge.feature import CrmFeature
from crm_bridge.schemas import CustomerIn
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.events import CallHandled
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from tests.acceptance.conftest import DaemonFactory
from tests.acceptance.harness import (
    SQLITE_ONLY,
    add_sim_agent,
    no_channels,
    originate_call,
    restart_test_asterisk,
    wait_for,
)
from tests.acceptance.proxy import CuttableProxy
from tests.acceptance.test_ivr_harness import ivr_daemons
from tests.acceptance.traffic import Callers


async def rows_for(daemon: Daemon, linkedid: str) -> list[CallRow]:
    async with daemon.db.session() as session:
        result = await session.execute(select(CallRow).where(CallRow.linkedid == linkedid))
        return list(result.scalars())


async def one_row(daemon: Daemon, linkedid: str, timeout: float = 25) -> CallRow:
    async def found() -> list[CallRow]:
        return await rows_for(daemon, linkedid)

    rows = await wait_for(found, timeout=timeout, what=f"the store row of {linkedid}")
    await daemon.recorder.flush()
    await asyncio.sleep(1.5)  # anything that would write it twice has had its chance
    rows = await rows_for(daemon, linkedid)
    assert len(rows) == 1, rows
    return rows[0]


async def set_sim(ami: AmiClient, ring: float, talk: float) -> None:
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": str(ring)})
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(talk)})


async def test_answered_call_is_one_row_with_its_facts(
    ami: AmiClient, start_daemon: DaemonFactory
) -> None:
    daemon = await start_daemon()
    await set_sim(ami, ring=1, talk=1)
    await add_sim_agent(ami, "101")
    linkedid = await originate_call(ami, caller="13800138000", caller_name="张三", hold_s=15)

    row = await one_row(daemon, linkedid)
    assert row.disposition == "answered"
    assert row.caller_num_raw == "13800138000"
    assert row.caller_num_e164 == "+8613800138000"
    assert row.caller_name == "张三"
    assert row.dnis == "4008001234"
    assert row.queue == "support"
    assert row.agent == "agent101"
    # Written from the call's own AMI events. The simulated agent (a Local channel) hangs
    # up first and the caller's side right after: under load app_queue's AgentComplete then
    # often comes with neither channel's fields (6 of 20 calls at load ~13), only Queue,
    # Interface, MemberName, HoldTime, TalkTime, Reason; the model keys it by the member.
    assert row.source == "ami"
    assert row.answered_at is not None and row.ended_at is not None
    assert row.started_at <= row.answered_at <= row.ended_at
    assert row.wait_s is not None and 0.5 <= row.wait_s <= 3
    assert row.talk_s is not None and row.talk_s >= 1


@SQLITE_ONLY  # what it proves is the call model's; the store is the same either way
async def test_calls_the_caller_hangs_up_are_written_from_their_own_events(
    ami: AmiClient, asterisk: ChrootAsterisk, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """Three SIPp callers (the carrier's trunk) are answered by three simulated agents who
    never hang up first; the callers send BYE at once. app_queue's AgentComplete may then
    come without the caller's fields, or without the member's too (those channels were
    gone from Asterisk's snapshot cache when it built the event: a few calls in a hundred
    under load, likelier when calls end together). Each call still has its CallHandled
    (who hung up: the caller) and one row from its own events (source "ami", not CDR +
    queue_log 5 s later), with the agent and the talk time app_queue reported."""
    assert shutil.which("sipp"), "sip-tester (sipp) is required"
    daemon = await start_daemon()
    handled: list[CallHandled] = []
    daemon.bus.subscribe(CallHandled, handled.append)
    completes: list[Message] = []

    def on_ami(msg: Message) -> None:
        if msg.event == "AgentComplete":
            completes.append(msg)

    ami.add_event_handler(on_ami)
    await set_sim(ami, ring=1, talk=120)
    for ext in ("101", "102", "103"):
        await add_sim_agent(ami, ext)
    callers = Callers(ami, asterisk.spec.sip_port, tmp_path)
    try:
        placed = [
            await callers.place(f"c{i}", "4008001234", ["bye"], "answered") for i in (1, 2, 3)
        ]

        async def all_answered() -> bool:
            calls = [daemon.model.calls.get(c.uniqueid) for c in placed]  # Linkedid: 1st leg
            return all(call is not None and call.answered_at is not None for call in calls)

        await wait_for(all_answered, timeout=30, what="the three calls to be answered")
        await asyncio.gather(*(callers.send(c, "bye") for c in placed))
        rows = await asyncio.gather(*(one_row(daemon, c.uniqueid) for c in placed))
    finally:
        ami.remove_event_handler(on_ami)
        await callers.stop_all()
        callers.close()
        for msg in completes:  # shown when the test failed: which form each one had
            print("ami:", dict(msg))
    assert {row.agent for row in rows} == {"agent101", "agent102", "agent103"}
    for caller, row in zip(placed, rows, strict=True):
        assert (row.source, row.disposition, row.queue) == ("ami", "answered", "support")
        (done,) = [h for h in handled if h.linkedid == caller.uniqueid]
        assert (done.reason, done.member_name, done.queue) == ("caller", row.agent, "support")
        assert done.uniqueid == caller.uniqueid  # the caller's leg (queued: the SIP channel)
        assert row.talk_s is not None and row.talk_s == done.talk_s
        assert row.wait_s is not None and row.wait_s == done.wait_s


async def test_abandoned_call_and_the_calls_api(
    ami: AmiClient, start_daemon: DaemonFactory
) -> None:
    daemon = await start_daemon()
    linkedid = await originate_call(
        ami, caller="+8613900139000", caller_name="<img src=x onerror=alert(1)>", hold_s=2
    )
    row = await one_row(daemon, linkedid)
    assert row.disposition == "abandoned"
    assert row.queue == "support"
    assert row.agent in ("", None)
    assert row.caller_name == "<img src=x onerror=alert(1)>"  # stored as given, escaped on render
    assert row.wait_s is not None and 1 <= row.wait_s <= 4

    token = await create_token(daemon.db, "test-supervisor", "supervisor")
    base = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v1/calls") as resp:
            assert resp.status == 401
        async with http.get(
            f"{base}/api/v1/calls", headers={"Authorization": "Bearer nope"}
        ) as resp:
            assert resp.status == 401
        async with http.get(
            f"{base}/api/v1/calls", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
            assert "cti_calls_completed_total" in metrics
            assert 'cti_queue_worker_dropped_total{worker="calls"} 0.0' in metrics
    assert [c["linkedid"] for c in body["calls"]].count(linkedid) == 1


async def test_ami_cut_mid_call_still_one_row(
    asterisk: ChrootAsterisk, ami: AmiClient, start_daemon: DaemonFactory, proxy: CuttableProxy
) -> None:
    daemon = await start_daemon(ami_port=proxy.port)
    await set_sim(ami, ring=1, talk=3)
    await add_sim_agent(ami, "101")
    linkedid = await originate_call(ami, caller="13800138000", hold_s=20)

    async def answered() -> bool:
        call = daemon.model.calls.get(linkedid)
        return call is not None and call.answered_at is not None

    await wait_for(answered, timeout=10, what="the daemon to see the answer")
    proxy.cut()  # the call goes on and ends while the daemon is blind
    await wait_for(lambda: no_channels(asterisk), timeout=20, what="the call to end")
    assert not daemon.ami.connected
    proxy.restore()

    row = await one_row(daemon, linkedid)
    assert row.disposition == "answered"
    assert row.agent == "agent101"
    assert row.queue == "support"
    assert row.dnis == "4008001234"
    assert row.talk_s is not None and row.talk_s >= 3
    # the end comes from Asterisk's CDR, not from when we noticed
    assert row.answered_at is not None
    assert row.ended_at - row.answered_at < timedelta(seconds=10)


async def test_call_entirely_during_ami_outage_is_recovered(
    asterisk: ChrootAsterisk, ami: AmiClient, start_daemon: DaemonFactory, proxy: CuttableProxy
) -> None:
    daemon = await start_daemon(ami_port=proxy.port)
    proxy.cut()
    await wait_for(lambda: _disconnected(daemon), timeout=5, what="the daemon to notice")
    linkedid = await originate_call(ami, caller="13912345678", hold_s=2)  # nobody answers
    await wait_for(lambda: no_channels(asterisk), timeout=15, what="the call to end")
    proxy.restore()

    row = await one_row(daemon, linkedid)
    assert row.disposition == "abandoned"
    assert row.queue == "support"
    assert row.caller_num_e164 == "+8613912345678"
    assert row.dnis == "4008001234"
    assert row.source == "cdr"


async def _disconnected(daemon: Daemon) -> bool:
    return not daemon.ami.connected


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "sigkill"])
async def test_asterisk_restart_mid_call_still_one_row(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    start_daemon: DaemonFactory,
    kill: bool,
) -> None:
    daemon = await start_daemon()
    await set_sim(ami, ring=1, talk=30)
    await add_sim_agent(ami, "102")
    linkedid = await originate_call(ami, caller="13800138000", hold_s=40)

    async def answered() -> bool:
        call = daemon.model.calls.get(linkedid)
        return call is not None and call.answered_at is not None

    await wait_for(answered, timeout=10, what="the daemon to see the answer")
    await asyncio.to_thread(restart_test_asterisk, asterisk, kill=kill)
    await daemon.ami.wait_connected(timeout=20)
    await ami.wait_connected(timeout=20)

    row = await one_row(daemon, linkedid)
    assert row.disposition == "answered"
    assert row.agent == "agent102"
    assert row.ended_at is not None and row.answered_at is not None
    assert row.ended_at >= row.answered_at


# --- the call's CRM interaction (crm_bridge) ---------------------------------------------


async def test_known_callers_call_ends_as_its_interaction(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> None:
    """A real call from a known customer's number goes through the IVR (digit 1) and the
    sales queue to a simulated agent; the CRM feature's InteractionWriter turns it into one
    interaction linked to the customer and contact, with the IVR path, queue, agent, wait
    and talk. A note written over the API during the call survives the call's end."""
    async with ivr_daemons(asterisk, tmp_path) as start:
        ivr = await start(crm=True)
        crm = ivr.daemon.features[0]
        assert isinstance(crm, CrmFeature) and crm.services is not None
        customer = await crm.services.store.create_customer(
            CustomerIn(name="李四", company="深圳物流", phones=["+86 138 0013 8000"]), SYSTEM
        )
        contact_id = customer["contacts"][0]["id"]
        await set_sim(ami, ring=1, talk=3)
        await add_sim_agent(ami, "101", "sales")
        linkedid, done = await ivr.route(ami, caller="13800138000", dtmf="1", hold_s=25)
        assert (done.action, done.target, done.customer_id) == ("queue", "sales", customer["id"])

        token = await create_token(ivr.daemon.db, "sup1", "supervisor")
        url = f"http://127.0.0.1:{ivr.daemon.http_port}/api/v1/interactions/by-call/{linkedid}"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:

            async def current() -> dict[str, Any]:
                async with http.get(url, headers=auth) as resp:
                    return await resp.json() if resp.status == 200 else {}

            during = await wait_for(current, timeout=15, what="the interaction during the call")
            assert during["ended_at"] is None and during["customer_id"] == customer["id"]
            async with http.put(url, headers=auth, json={"notes": "说明: 要报价"}) as resp:
                assert resp.status == 200

            async def ended() -> dict[str, Any]:
                data = await current()
                return data if data and data["ended_at"] else {}

            inter = await wait_for(ended, timeout=40, what="the interaction of the ended call")
        assert inter["customer_id"] == customer["id"] and inter["contact_id"] == contact_id
        assert inter["caller_num"] == "+8613800138000"
        assert (inter["ivr_path"], inter["queue"], inter["agent"]) == ("main", "sales", "agent101")
        assert inter["outcome"] == "answered" and inter["notes"] == "说明: 要报价"
        assert inter["wait_s"] is not None and 0.5 <= inter["wait_s"] <= 10
        assert inter["talk_s"] is not None and inter["talk_s"] >= 2
        history = await crm.services.interactions.for_customer(customer["id"], SYSTEM)
        assert [h["linkedid"] for h in history] == [linkedid]
