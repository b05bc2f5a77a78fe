"""A campaign dials on every Asterisk server that has its agents (issue #18).

Two Asterisk servers (the session's A and test_cluster's B), node n1 driving A and n2
driving B, on PostgreSQL and NATS. Two agents, each with a desk phone provisioned on both
servers: agent 1's phone registers to A, agent 2's to B (each is a queue member only on
its phone's server); the phones (SIPp) answer, talk 2 s and hang up. One progressive
campaign of 6 leads (the carrier, SIPp, answers each after 1 s):

- both agents get campaign calls: each server's driver paces the campaign on the agents
  located on its server, agent 1's calls placed on A, agent 2's on B;
- every lead is dialled once (one call, by Call-ID, at the carrier per number; one attempt
  per lead), though two pacers claimed leads at once;
- every attempt records the server it was placed on, and that server's own CDR has the
  call; the campaign's report by server adds up to the calls the carrier received.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from outbound.store import OutboundStore
from tests.acceptance.harness import free_port, start_sipp_uas, wait_for
from tests.acceptance.sip_phones import SIPP_DIR, sipp_register
from tests.acceptance.test_cluster import (  # noqa: F401  (fixtures)
    ALWAYS,
    CARRIER,
    ami_b,
    asterisk_b,
    carrier_invites,
    node_per_server,
    pg_url,
    restore,
    stream,
)
from tests.acceptance.test_outbound_dialer import write_hello_pcap
from tests.acceptance.traffic import DaemonProcess, read_truth
from tests.cluster_services import (
    api,
    desk_phone,
    members,
    queue_with_agents,
    remove_members,
    start_driving,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

AGENTS = ("co-ag1", "co-ag2")
LEADS = 6


async def test_a_campaign_dials_on_both_servers_each_lead_once(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    asterisk_b: ChrootAsterisk,  # noqa: F811
    ami_b: AmiClient,  # noqa: F811
    pg_url: str,  # noqa: F811
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    queue = f"coq{secrets.token_hex(3)}"
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    tokens = await queue_with_agents(db, queue, AGENTS)
    admin = await create_token(db, "co-admin", "admin")
    nodes = node_per_server(
        tmp_path, {"n1": (asterisk, "a"), "n2": (asterisk_b, "b")}, db_url=pg_url, stream=stream
    )
    carrier_port = free_port()
    write_hello_pcap(tmp_path / "hello.pcap")  # the carrier scenario loads it at start
    carrier = await start_sipp_uas(CARRIER, carrier_port, cwd=tmp_path)
    phones: dict[str, str] = {}  # agent -> phone
    desk: list[asyncio.subprocess.Process] = []
    started = time.time()
    try:
        for a in (ami, ami_b):
            await a.send_action("Setvar", {"Variable": "CTI_CARRIER_URI",
                                           "Value": f"127.0.0.1:{carrier_port}"})  # fmt: skip
        await start_driving(*nodes.values())

        # each agent's desk phone: provisioned on both servers, registered to its own
        for agent, inst in zip(AGENTS, (asterisk, asterisk_b), strict=True):
            phone, password = await desk_phone(nodes["n1"], admin, agent, (ami, ami_b))
            phones[agent] = phone
            ok, port, out = await sipp_register(inst, phone, password, cwd=tmp_path)
            assert ok, out
            own = tmp_path / agent  # its own message log (the carrier's is counted)
            own.mkdir()
            desk.append(await start_sipp_uas(SIPP_DIR / "uas_phone_hangs_up.xml", port,
                                             cwd=own))  # fmt: skip
            await api(nodes["n1"], tokens[agent], "POST", f"/api/v1/acd/agents/{agent}/status",
                      {"status": "available"})  # fmt: skip
        ifaces = {agent: f"PJSIP/{phone}" for agent, phone in phones.items()}

        async def each_on_its_server() -> bool:
            on_a, on_b = await members(ami, queue), await members(ami_b, queue)
            return on_a == {ifaces[AGENTS[0]]} and on_b == {ifaces[AGENTS[1]]}

        await wait_for(each_on_its_server, timeout=20,
                       what="agent 1 a member on A only, agent 2 on B only")  # fmt: skip

        # one campaign, started through n2
        numbers = [f"1380014{i:03d}1" for i in range(LEADS)]  # last digit 1: answers
        campaign = await api(nodes["n2"], admin, "POST", "/api/v1/outbound/campaigns", {
            "name": "bothservers", "queue": queue, "mode": "progressive", "ring_s": 10,
            "window": {"days": ALWAYS},
        })  # fmt: skip
        cid = campaign["id"]
        lst = await api(nodes["n2"], admin, "POST", f"/api/v1/outbound/campaigns/{cid}/lists",
                        {"name": "l"})  # fmt: skip
        await import_numbers(nodes["n2"], admin, lst["id"], numbers)
        await api(nodes["n2"], admin, "POST", f"/api/v1/outbound/campaigns/{cid}/start")
        store = OutboundStore(db, "CN", lambda: None)

        async def finished() -> bool:
            leads = await store.leads(campaign_id=cid)
            return all(ld["status"] not in ("new", "retry", "dialing") for ld in leads)

        try:
            await wait_for(finished, timeout=90, what="every lead called", every=0.5)
        except AssertionError:
            print("leads:", await store.leads(campaign_id=cid))
            print("attempts:", await store.attempts(cid))
            print("members:", await members(ami, queue), await members(ami_b, queue))
            raise
        took = time.time() - started

        attempts = await store.attempts(cid)
        leads = await store.leads(campaign_id=cid)
        by_server = {s: [a for a in attempts if a["server"] == s] for s in ("a", "b")}
        print(f"campaign on two servers: {len(by_server['a'])} call(s) placed on A, "
              f"{len(by_server['b'])} on B, {took:.1f} s from the nodes' start")  # fmt: skip
        # both agents got campaign calls, each on its phone's server
        assert by_server["a"] and by_server["b"], attempts
        assert {a["agent"] for a in by_server["a"]} == {AGENTS[0]}, by_server["a"]
        assert {a["agent"] for a in by_server["b"]} == {AGENTS[1]}, by_server["b"]
        assert all(a["outcome"] == "answered" for a in attempts), attempts
        # each lead dialled once: one attempt each, one call at the carrier each
        assert len(attempts) == LEADS and all(ld["attempts"] == 1 for ld in leads), leads
        invites = carrier_invites((tmp_path / "sipp_messages.log").read_text(errors="replace"))
        assert set(invites) == {"86" + n for n in numbers}, invites
        assert all(len(calls) == 1 for calls in invites.values()), invites
        # the server recorded on each attempt is the one whose CDR has the call
        for server, inst in (("a", asterisk), ("b", asterisk_b)):
            truth = await asyncio.to_thread(read_truth, inst.cdr_csv, inst.queue_log,
                                            started - 1)  # fmt: skip
            ids = {a["linkedid"] for a in by_server[server]}
            assert ids <= set(truth), (server, ids - set(truth))
            other = {a["linkedid"] for a in attempts} - ids
            assert not other & set(truth), (server, other & set(truth))
        # the campaign's report by server adds up
        report = await api(nodes["n1"], admin, "GET",
                           f"/api/v1/outbound/campaigns/{cid}/report?by=server")  # fmt: skip
        rows = {r["server"]: r for r in report["rows"]}
        assert set(rows) == {"a", "b"}, report
        for server in ("a", "b"):
            assert rows[server]["attempts"] == len(by_server[server]), report
            assert rows[server]["contacts"] == len(by_server[server]), report
        assert report["total"]["attempts"] == report["total"]["contacts"] == LEADS, report
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(60)}")
        raise
    finally:
        for phone in phones.values():  # unprovisioned on both servers again
            with contextlib.suppress(Exception):
                await api(nodes["n1"], admin, "DELETE", f"/api/v1/phones/{phone}")
        for proc in (*desk, carrier):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        for n in nodes.values():
            await n.stop()
        for a, inst in ((ami, asterisk), (ami_b, asterisk_b)):
            await remove_members(a, queue)
            await restore(inst, a)
        await db.dispose()


async def import_numbers(node: DaemonProcess, token: str, list_id: int,
                         numbers: list[str]) -> Any:  # fmt: skip
    body = ("phone\n" + "\n".join(numbers) + "\n").encode()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s, s.post(
        f"{node.base}/api/v1/outbound/lists/{list_id}/import?phone=phone", data=body
    ) as r:  # fmt: skip
        got = await r.json()
        assert r.status in (200, 201), got
        return got
