"""An agent logs in to queues on whichever server their phone is registered (issue #18).

Two Asterisk servers (the session's A and test_cluster's B), node n1 driving A and n2
driving B, on PostgreSQL and NATS. An admin adds a desk phone on n1: it is provisioned on
both servers. The phone (SIPp) registers to server B; the agent logs in on n1 (which does
not drive B): the agent becomes a queue member on B only, and a queue call on B rings
PJSIP/<phone>. The phone then registers to server A: the membership moves to A and leaves
B.
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

from acd import store as acd_store
from acd.queues_conf import QueueParams
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from tests.acceptance.harness import wait_for
from tests.acceptance.sip_phones import sipp_register
from tests.acceptance.test_cluster import (  # noqa: F401  (fixtures)
    ami_b,
    asterisk_b,
    call,
    driving,
    node_per_server,
    pg_url,
    restore,
    set_globals,
    stream,
    write_node_config,
)
from tests.acceptance.traffic import DaemonProcess

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

AGENT = "cp-ag1"


async def api(node: DaemonProcess, token: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, node.base + path, json=body, headers=headers) as r,
    ):
        got = await r.json()
        assert r.status in (200, 201), (method, path, r.status, got)
        return got


async def members(ami: AmiClient, queue: str) -> set[str]:
    _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
    return {i.get("StateInterface") or i.get("Location", "") for i in items
            if i.get("Event") == "QueueMember"}  # fmt: skip


async def endpoint_exists(ami: AmiClient, name: str) -> bool:
    _, items = await ami.send_list_action("PJSIPShowEndpoints")
    return any(i.get("ObjectName") == name for i in items)


async def test_an_agent_is_a_member_on_the_server_where_its_phone_is_registered(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    asterisk_b: ChrootAsterisk,  # noqa: F811
    ami_b: AmiClient,  # noqa: F811
    pg_url: str,  # noqa: F811
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    queue = f"cpq{secrets.token_hex(3)}"
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    await acd_store.put_queue(db, QueueParams(queue, strategy="ringall", service_level_s=10))
    await acd_store.put_agent(db, AGENT, AGENT, [], {queue: 0})
    admin = await create_token(db, "cp-admin", "admin")
    agent = await create_token(db, AGENT, "agent")
    await db.dispose()
    nodes = node_per_server(
        tmp_path, {"n1": (asterisk, "a"), "n2": (asterisk_b, "b")}, db_url=pg_url, stream=stream
    )
    rang: list[str] = []
    phone = ""

    def on_ring(msg: Message) -> None:
        if msg.event == "AgentCalled" and msg.get("Queue") == queue:
            rang.append(msg.get("Interface", ""))

    ami_b.add_event_handler(on_ring)
    try:
        await set_globals(ami_b, queue)
        await asyncio.gather(*(n.start() for n in nodes.values()))
        for n in nodes.values():
            await wait_for(lambda n=n: driving(n), timeout=30, what="both nodes to drive")

        # a desk phone added on n1 is provisioned on both servers
        created = await api(nodes["n1"], admin, "POST", "/api/v1/phones",
                            {"agent": AGENT, "kind": "sip", "label": "desk"})  # fmt: skip
        phone, password = created["phone"]["name"], created["credentials"]["password"]
        iface = f"PJSIP/{phone}"
        for a in (ami, ami_b):
            await wait_for(lambda a=a: endpoint_exists(a, phone), timeout=15,
                           what="the phone provisioned on both servers")  # fmt: skip

        # registered to B; the agent logs in on n1 (driving A): a member on B, not on A
        ok, _, out = await sipp_register(asterisk_b, phone, password, cwd=tmp_path)
        assert ok, out
        # (whichever of PhoneLocated and AgentStatusChanged reaches n2 first, it converges)
        await api(nodes["n1"], agent, "POST", f"/api/v1/acd/agents/{AGENT}/status",
                  {"status": "available"})  # fmt: skip

        async def on_b_only() -> bool:
            return iface in await members(ami_b, queue) and iface not in await members(ami, queue)

        await wait_for(on_b_only, timeout=15, what="the agent a member on server B only")
        await call(ami_b, hold_s=4)
        await wait_for(lambda: _true(iface in rang), timeout=15,
                       what="the queue call on B to ring the desk phone")  # fmt: skip

        # the phone registers to A: the membership follows it
        ok, _, out = await sipp_register(asterisk, phone, password, cwd=tmp_path)
        assert ok, out
        registered_at = time.monotonic()

        async def on_a_only() -> bool:
            return iface in await members(ami, queue) and iface not in await members(ami_b, queue)

        await wait_for(on_a_only, timeout=15, what="the membership moved to server A")
        print(f"membership moved to A {time.monotonic() - registered_at:.2f} s after the REGISTER")
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(40)}")
        raise
    finally:
        ami_b.remove_event_handler(on_ring)
        if phone:  # unprovisioned and unregistered on A (the session's server) again
            with contextlib.suppress(Exception):
                await api(nodes["n1"], admin, "DELETE", f"/api/v1/phones/{phone}")
        for n in nodes.values():
            await n.stop()
        for a, inst in ((ami, asterisk), (ami_b, asterisk_b)):
            with contextlib.suppress(Exception):
                for q_iface in await members(a, queue):
                    await a.send_action("QueueRemove", {"Queue": queue, "Interface": q_iface})
            await restore(inst, a)


async def _true(value: bool) -> bool:
    return value
