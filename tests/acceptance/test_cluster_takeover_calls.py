"""A takeover keeps what a call IS (issue #18): calls the system placed for an agent,
taken over by another node while they ring, end with the results they would have had.

Server A (the session's Asterisk), node n1 driving it and n2 standing by, on PostgreSQL
and NATS; two simulated agents (answering after 10 s) in a preview campaign's queue, and
the carrier (SIPp) answering each customer after 1 s:

- agent 1 dials the lead it previews, and agent 2's personal callback comes due: both are
  agent-first calls (the agent's phone rings, then the customer is dialled); agent 3
  clicks to call a lost caller back (the ACD's click-to-call, a simulated customer);
- n1 is SIGKILLed while the three agents' phones ring; n2 takes server A over and the
  campaign with it;
- each agent answers, the customer is dialled and answers: each attempt ends ``answered``
  with its agent, each lead is ``done``, the lost caller is closed by the click-to-call,
  and each call has exactly one call row. (Taken over as ordinary queue calls, the
  customers' answers with no queue agent ended as ``abandoned``; the click-to-call,
  unknown to n2, left the lost caller open.)

And an agent-first call that talks and ends while no node drives the server at all is
settled by n2 from the server's records: ``answered`` with its agent (it came out
``no_answer``: its recovered row has no queue agent, and its channel, whose marks say
what it was, is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from acd.models import LostCallerRow
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.calls.recovery import parse_cdr
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from outbound.store import OutboundStore
from tests.acceptance.harness import free_port, no_channels, start_sipp_uas, wait_for
from tests.acceptance.test_cluster import (  # noqa: F401  (fixtures)
    ALWAYS,
    CARRIER,
    node_per_server,
    pg_url,
    restore,
    stream,
)
from tests.acceptance.test_cluster_outbound import import_numbers
from tests.acceptance.test_outbound_dialer import write_hello_pcap
from tests.acceptance.traffic import DaemonProcess
from tests.cluster_services import api, driving, members, queue_with_agents, remove_members

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

AGENTS = (("tk-ag1", "3221"), ("tk-ag2", "3222"))
CLICKER = ("tk-ag3", "3223")  # in a queue of its own (no campaign)
LOST = "+8613800147031"
AGENT_RING_S = 10  # the simulated agents answer after this long (the kill is within it)


async def accepted(node: DaemonProcess, token: str, path: str, body: Any = None) -> Any:
    """POST a dial: 202 Accepted, its JSON answer."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s, s.post(
        node.base + path, json=body
    ) as r:  # fmt: skip
        assert r.status == 202, await r.text()
        return await r.json()


async def test_calls_placed_for_agents_keep_their_identity_across_a_takeover(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    pg_url: str,  # noqa: F811
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    queue = f"tkq{secrets.token_hex(3)}"
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    tokens = await queue_with_agents(db, queue, AGENTS)
    own_queue = queue + "c"
    tokens |= await queue_with_agents(db, own_queue, [CLICKER])
    now = datetime.now(UTC)
    async with db.session() as s, s.begin():  # a caller lost a minute ago
        s.add(LostCallerRow(linkedid="tk-lost-1", caller_num=LOST, caller_key=LOST,
                            queue=own_queue, reason="abandon",
                            lost_at=now - timedelta(minutes=1)))  # fmt: skip
    admin = await create_token(db, "tk-admin", "admin")
    # n1 starts first and drives A; n2 stands by for A
    nodes = node_per_server(
        tmp_path, {"n1": (asterisk, "a"), "n2": (asterisk, "a")}, db_url=pg_url, stream=stream
    )
    carrier_port = free_port()
    write_hello_pcap(tmp_path / "hello.pcap")
    carrier = await start_sipp_uas(CARRIER, carrier_port, cwd=tmp_path)
    store = OutboundStore(db, "CN", lambda: None)
    try:
        for var, value in (("CTI_CARRIER_URI", f"127.0.0.1:{carrier_port}"),
                           ("CTI_SIM_RING", str(AGENT_RING_S)), ("CTI_SIM_TALK", "2"),
                           ("CTI_SIM_OUTBOUND", "1")):  # fmt: skip
            await ami.send_action("Setvar", {"Variable": var, "Value": value})
        await nodes["n1"].start()
        await wait_for(lambda: driving(nodes["n1"]), timeout=30, what="n1 to drive A")
        await nodes["n2"].start()

        campaign = await api(nodes["n1"], admin, "POST", "/api/v1/outbound/campaigns", {
            "name": "takeover", "queue": queue, "mode": "preview", "ring_s": 10,
            "window": {"days": ALWAYS},
        })  # fmt: skip
        cid = campaign["id"]
        lst = await api(nodes["n1"], admin, "POST", f"/api/v1/outbound/campaigns/{cid}/lists",
                        {"name": "l"})  # fmt: skip
        await import_numbers(nodes["n1"], admin, lst["id"], ["13800147011", "13800147021"])
        leads = {ld["number"]: ld for ld in await store.leads(campaign_id=cid)}
        preview, callback = leads["+8613800147011"], leads["+8613800147021"]
        # the second lead: agent 2 asked to call back (not due yet)
        later = datetime.now(UTC) + timedelta(hours=1)
        await store.update_lead(callback["id"], None, status="callback", agent=AGENTS[1][0],
                                next_at=later)  # fmt: skip
        await api(nodes["n1"], admin, "POST", f"/api/v1/outbound/campaigns/{cid}/start")

        async def idle_members() -> bool:
            n = len(await members(ami, queue)) + len(await members(ami, own_queue))
            return n == len(AGENTS) + 1

        await wait_for(idle_members, timeout=30, what="the agents in their queues")
        # agent 1 previews its lead and dials it; agent 2's callback comes due
        card = await api(nodes["n1"], tokens[AGENTS[0][0]], "POST",
                         f"/api/v1/outbound/campaigns/{cid}/next")  # fmt: skip
        assert card["lead"]["id"] == preview["id"], card
        await accepted(nodes["n1"], tokens[AGENTS[0][0]],
                       f"/api/v1/outbound/leads/{preview['id']}/dial")  # fmt: skip
        await store.update_lead(callback["id"], ["callback"], next_at=datetime.now(UTC))
        clicker = CLICKER[0]
        clicked = await accepted(
            nodes["n1"], tokens[clicker], f"/api/v1/acd/agents/{clicker}/dial", {"number": LOST}
        )

        async def both_ringing() -> list[dict[str, Any]]:
            placed = [a for a in await store.attempts(cid) if a["linkedid"]]
            return placed if len(placed) == 2 else []

        placed = await wait_for(both_ringing, timeout=20, what="both agent-first calls placed",
                                every=0.1)  # fmt: skip
        await nodes["n1"].kill()  # both agents' phones still ring
        await wait_for(lambda: driving(nodes["n2"]), timeout=30, what="n2 to take A over")

        async def finished() -> bool:
            rows = await store.leads(campaign_id=cid)
            return all(ld["status"] not in ("dialing", "preview", "callback") for ld in rows)

        await wait_for(finished, timeout=90, what="both leads finished", every=0.5)
        attempts = {a["lead_id"]: a for a in await store.attempts(cid)}
        assert len(attempts) == 2, attempts
        for lead, (agent, _) in ((preview, AGENTS[0]), (callback, AGENTS[1])):
            got = attempts[lead["id"]]
            assert got["outcome"] == "answered", got
            assert got["agent"] == agent and got["connected_at"] is not None, got
        for ld in await store.leads(campaign_id=cid):
            assert ld["status"] == "done" and ld["attempts"] == 1, ld
            assert ld["last_outcome"] == "answered", ld
        # one call row per call (n2 recorded the calls it took over)
        linkedids = [a["linkedid"] for a in placed]

        async def recorded() -> dict[str, int]:
            async with db.session() as s:
                rows = await s.execute(select(CallRow.linkedid, func.count()).where(
                    CallRow.linkedid.in_(linkedids)).group_by(CallRow.linkedid))  # fmt: skip
                counts = {str(lid): int(n) for lid, n in rows.all()}
            return counts if len(counts) == len(linkedids) else {}

        linkedids.append(clicked["linkedid"])
        counts = await wait_for(recorded, timeout=30, what="a call row for each call")
        assert counts == dict.fromkeys(linkedids, 1), counts
        # the click-to-call reached the lost caller: closed by it
        async with db.session() as s:
            lost = (await s.scalars(select(LostCallerRow))).one()
        assert lost.closed_by == "click_to_call", vars(lost)
        assert lost.closed_linkedid == clicked["linkedid"], vars(lost)
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(80)}")
        raise
    finally:
        if carrier.returncode is None:
            carrier.kill()
        await carrier.wait()
        for n in nodes.values():
            await n.stop()
        with contextlib.suppress(Exception):
            await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": "2"})
            await ami.send_action("Setvar", {"Variable": "CTI_SIM_OUTBOUND", "Value": ""})
        await remove_members(ami, queue, own_queue)
        await restore(asterisk, ami)
        await db.dispose()


async def test_an_agent_first_call_that_ends_while_no_node_drives_is_settled_by_its_facts(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    pg_url: str,  # noqa: F811
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A preview call placed by n1, which dies at once: the agent answers, the customer
    answers, they talk and hang up while no node drives server A. n2, started after, takes
    A and the campaign over: the attempt ends ``answered`` with its agent, from the
    server's CDR (the call's channel, whose marks say what it was, is gone)."""
    queue = f"tnq{secrets.token_hex(3)}"
    agent = ("tn-ag1", "3231")
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    tokens = await queue_with_agents(db, queue, [agent])
    admin = await create_token(db, "tn-admin", "admin")
    nodes = node_per_server(
        tmp_path, {"n1": (asterisk, "a"), "n2": (asterisk, "a")}, db_url=pg_url, stream=stream
    )
    carrier_port = free_port()
    write_hello_pcap(tmp_path / "hello.pcap")
    carrier = await start_sipp_uas(CARRIER, carrier_port, cwd=tmp_path)
    store = OutboundStore(db, "CN", lambda: None)
    try:
        for var, value in (("CTI_CARRIER_URI", f"127.0.0.1:{carrier_port}"),
                           ("CTI_SIM_RING", "1"), ("CTI_SIM_TALK", "2"),
                           ("CTI_SIM_OUTBOUND", "1")):  # fmt: skip
            await ami.send_action("Setvar", {"Variable": var, "Value": value})
        await nodes["n1"].start()
        await wait_for(lambda: driving(nodes["n1"]), timeout=30, what="n1 to drive A")
        campaign = await api(nodes["n1"], admin, "POST", "/api/v1/outbound/campaigns", {
            "name": "no-driver", "queue": queue, "mode": "preview", "ring_s": 10,
            "window": {"days": ALWAYS},
        })  # fmt: skip
        cid = campaign["id"]
        lst = await api(nodes["n1"], admin, "POST", f"/api/v1/outbound/campaigns/{cid}/lists",
                        {"name": "l"})  # fmt: skip
        await import_numbers(nodes["n1"], admin, lst["id"], ["13800147041"])
        await api(nodes["n1"], admin, "POST", f"/api/v1/outbound/campaigns/{cid}/start")
        await wait_for(lambda: members(ami, queue), timeout=30, what="the agent in its queue")
        card = await api(nodes["n1"], tokens[agent[0]], "POST",
                         f"/api/v1/outbound/campaigns/{cid}/next")  # fmt: skip
        await accepted(nodes["n1"], tokens[agent[0]],
                       f"/api/v1/outbound/leads/{card['lead']['id']}/dial")  # fmt: skip

        async def placed() -> list[dict[str, Any]]:
            return [a for a in await store.attempts(cid) if a["linkedid"]]

        (attempt,) = await wait_for(placed, timeout=20, what="the call placed", every=0.1)
        await nodes["n1"].kill()  # the agent's phone rings: nobody drives A from here on

        async def answered_and_gone() -> bool:
            path = asterisk.cdr_csv  # Asterisk's own record of the call
            cdr = parse_cdr(path.read_text()) if path.exists() else []
            talked = any(r.linkedid == attempt["linkedid"] and r.dstchannel
                         and r.disposition == "ANSWERED" for r in cdr)  # fmt: skip
            return talked and await no_channels(asterisk)

        await wait_for(answered_and_gone, timeout=30, what="the call talked and ended")
        await nodes["n2"].start()
        await wait_for(lambda: driving(nodes["n2"]), timeout=30, what="n2 to take A over")

        async def settled() -> dict[str, Any] | None:
            (got,) = await store.attempts(cid)
            return got if got["outcome"] else None

        got = await wait_for(settled, timeout=30, what="the attempt settled", every=0.5)
        assert got["outcome"] == "answered", got
        assert got["agent"] == agent[0] and got["connected_at"] is not None, got
        assert got["talk_s"] >= 1, got  # from the customer's answer in the CDR to the end

        async def lead_moved_on() -> dict[str, Any] | None:
            (lead,) = await store.leads(campaign_id=cid)  # written just after the attempt
            return lead if lead["status"] != "dialing" else None

        lead = await wait_for(lead_moved_on, timeout=10, what="the lead finished")
        assert lead["status"] == "done" and lead["last_outcome"] == "answered", lead
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(80)}")
        raise
    finally:
        if carrier.returncode is None:
            carrier.kill()
        await carrier.wait()
        for n in nodes.values():
            await n.stop()
        with contextlib.suppress(Exception):
            await ami.send_action("Setvar", {"Variable": "CTI_SIM_OUTBOUND", "Value": ""})
        await remove_members(ami, queue)
        await restore(asterisk, ami)
        await db.dispose()
