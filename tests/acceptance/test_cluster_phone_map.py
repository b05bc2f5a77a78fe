"""Where each phone is registered is kept in the store, so a node that restarts (or takes
a server over) knows it (issue #18).

Two Asterisk servers, n1 driving A and n2 driving B, on PostgreSQL and NATS. An agent's
desk phone registers to A (the agent is a queue member on A), then to B without
unregistering from A (a desk phone moved to another registrar): the membership moves to
B, and the store says B, with the contact and an expiry. n1 is then SIGKILLed and
started again: on connecting to A it finds the phone's old contact there, but the map it
loads from the store says the phone registered on B later, so the agent stays a member
on B only (before, a restarted node knew nothing, located the phone on A again as a new
registration, and the membership went back to A).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from phones.locations import LocationStore
from tests.acceptance.harness import wait_for
from tests.acceptance.sip_phones import sipp_register
from tests.acceptance.test_cluster import (  # noqa: F401  (fixtures)
    ami_b,
    asterisk_b,
    node_per_server,
    pg_url,
    restore,
    stream,
)
from tests.cluster_services import (
    api,
    desk_phone,
    driving,
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

AGENT = "cm-ag1"
#: after n1 drives A again, how long the membership is watched for a wrong move
WATCH_S = 4.0


async def test_a_restarted_node_knows_where_phones_are_from_the_store(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    asterisk_b: ChrootAsterisk,  # noqa: F811
    ami_b: AmiClient,  # noqa: F811
    pg_url: str,  # noqa: F811
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    queue = f"cmq{secrets.token_hex(3)}"
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    agent = (await queue_with_agents(db, queue, [AGENT]))[AGENT]
    admin = await create_token(db, "cm-admin", "admin")
    nodes = node_per_server(
        tmp_path, {"n1": (asterisk, "a"), "n2": (asterisk_b, "b")}, db_url=pg_url, stream=stream
    )
    phone = ""
    places = LocationStore(db)
    try:
        await start_driving(*nodes.values())
        phone, password = await desk_phone(nodes["n1"], admin, AGENT, (ami, ami_b))
        iface = f"PJSIP/{phone}"

        async def member_on(here: AmiClient, there: AmiClient) -> bool:
            return iface in await members(here, queue) and iface not in await members(there, queue)

        # registered to A, the agent logs in: a member on A
        ok, _, out = await sipp_register(asterisk, phone, password, cwd=tmp_path)
        assert ok, out
        await api(nodes["n2"], agent, "POST", f"/api/v1/acd/agents/{AGENT}/status",
                  {"status": "available"})  # fmt: skip
        await wait_for(lambda: member_on(ami, ami_b), timeout=15, what="a member on A")
        # then to B, A's contact left behind: a member on B; the store says B
        ok, _, out = await sipp_register(asterisk_b, phone, password, cwd=tmp_path)
        assert ok, out
        await wait_for(lambda: member_on(ami_b, ami), timeout=15, what="a member on B")
        located = await places.where(phone, datetime.now(UTC))
        assert located is not None and located.server == "b", located
        assert located.contact.startswith("sip:") and located.expires_at > datetime.now(UTC)
        print(
            f"stored location: {located.server} {located.contact} until "
            f"{located.expires_at:%H:%M:%S} (registered {located.registered_at:%H:%M:%S})"
        )

        # n1 (driver of A) killed and started again: A still holds the old contact
        await nodes["n1"].kill()
        await nodes["n1"].start()
        await wait_for(lambda: driving(nodes["n1"]), timeout=30, what="n1 to drive A again")
        deadline = time.monotonic() + WATCH_S
        while time.monotonic() < deadline:
            assert await member_on(ami_b, ami), "the membership moved back to A"
            await asyncio.sleep(0.25)
        again = await places.where(phone, datetime.now(UTC))
        assert again is not None and again.server == "b", again
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(40)}")
        raise
    finally:
        if phone:  # unprovisioned and unregistered on both servers again
            with contextlib.suppress(Exception):
                await api(nodes["n2"], admin, "DELETE", f"/api/v1/phones/{phone}")
        for n in nodes.values():
            await n.stop()
        for a, inst in ((ami, asterisk), (ami_b, asterisk_b)):
            await remove_members(a, queue)
            await restore(inst, a)
        await db.dispose()
