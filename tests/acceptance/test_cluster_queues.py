"""A queue changed through one node reaches every server (issue #18, decision 0031).

Two Asterisk servers (the session's A and test_cluster's B), node n1 driving A and n2
driving B, on PostgreSQL and NATS. A queue created through n1's API is pushed by n1 to A
and, on QueuesChanged, by n2 to B; its strategy changed through n2 follows on A; deleted
through n1, it is gone from both.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Any

import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from tests.acceptance.harness import wait_for
from tests.acceptance.test_cluster import (  # noqa: F401  (fixtures)
    ami_b,
    asterisk_b,
    node_per_server,
    pg_url,
    restore,
    stream,
)
from tests.cluster_services import api, start_driving

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


async def strategy(ami: AmiClient, queue: str) -> str:
    _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
    return next((i.get("Strategy", "") for i in items if i.get("Event") == "QueueParams"), "")


async def test_a_queue_changed_on_one_node_is_applied_on_every_server(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    asterisk_b: ChrootAsterisk,  # noqa: F811
    ami_b: AmiClient,  # noqa: F811
    pg_url: str,  # noqa: F811
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    queue = f"cqq{secrets.token_hex(3)}"
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    admin = await create_token(db, "cq-admin", "admin")
    await db.dispose()
    nodes = node_per_server(
        tmp_path, {"n1": (asterisk, "a"), "n2": (asterisk_b, "b")}, db_url=pg_url, stream=stream
    )
    servers = {"A": ami, "B": ami_b}

    async def everywhere(expected: str) -> None:
        for name, a in servers.items():
            await wait_for(lambda a=a: _is(strategy(a, queue), expected), timeout=20,
                           what=f"{queue} strategy {expected!r} on server {name}")  # fmt: skip

    try:
        await start_driving(*nodes.values())
        got = await api(nodes["n1"], admin, "PUT", f"/api/v1/acd/queues/{queue}",
                        {"strategy": "linear"})  # fmt: skip
        assert got["applied"] is True
        await everywhere("linear")
        await api(nodes["n2"], admin, "PUT", f"/api/v1/acd/queues/{queue}",
                  {"strategy": "leastrecent"})  # fmt: skip
        await everywhere("leastrecent")
        await api(nodes["n1"], admin, "DELETE", f"/api/v1/acd/queues/{queue}")
        await everywhere("")
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(40)}")
        raise
    finally:
        for n in nodes.values():
            with contextlib.suppress(Exception):
                await n.stop()
        for a, inst in ((ami, asterisk), (ami_b, asterisk_b)):
            await restore(inst, a)


async def _is(value: Any, expected: str) -> bool:
    return await value == expected
