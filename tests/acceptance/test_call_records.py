"""Every call ends as exactly one store row, also across AMI cuts and Asterisk restarts."""

from __future__ import annotations

import asyncio
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
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from tests.acceptance.conftest import DaemonFactory
from tests.acceptance.harness import (
    add_sim_agent,
    no_channels,
    originate_call,
    restart_test_asterisk,
    wait_for,
)
from tests.acceptance.proxy import CuttableProxy
from tests.acceptance.test_ivr_harness import ivr_daemons


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
    # Written from the call's own AMI events; or, when app_queue sent no AgentComplete (the
    # simulated agent is a Local channel that hangs up at once: under load Asterisk 22
    # sometimes publishes none, while queue_log has the COMPLETE line), completed from
    # CDR + queue_log 5 s after the hang-up. Either way the same facts, asserted below.
    assert row.source in ("ami", "cdr")
    assert row.answered_at is not None and row.ended_at is not None
    assert row.started_at <= row.answered_at <= row.ended_at
    assert row.wait_s is not None and 0.5 <= row.wait_s <= 3
    assert row.talk_s is not None and row.talk_s >= 1


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
