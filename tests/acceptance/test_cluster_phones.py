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

import pytest

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
    node_per_server,
    pg_url,
    restore,
    set_globals,
    stream,
)
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

AGENT = "cp-ag1"


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
    agent = (await queue_with_agents(db, queue, [AGENT]))[AGENT]
    admin = await create_token(db, "cp-admin", "admin")
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
        await start_driving(*nodes.values())
        # a desk phone added on n1 is provisioned on both servers
        phone, password = await desk_phone(nodes["n1"], admin, AGENT, (ami, ami_b))
        iface = f"PJSIP/{phone}"

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
            await remove_members(a, queue)
            await restore(inst, a)


async def _true(value: bool) -> bool:
    return value
