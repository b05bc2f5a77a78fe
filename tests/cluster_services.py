"""What the cluster tests share: the machine's NATS server (JetStream on disk), where it
is, and stopping/starting it as the machine's own start command does (a broker restart);
and the set-up they do alike (a queue with its agents and tokens, nodes started until they
drive, a desk phone provisioned on every server, queue members, API calls).

Only the server listening on port 4222 is stopped (found by its socket), and the one started
again is tracked by a pidfile of its own: ``start-stop-daemon --exec`` alone matches every
``nats-server`` on the machine, a container's included (its /proc/<pid>/exe reads the same
path), so with another NATS running it stopped that one too, and ``--oknodo`` then started
nothing: port 4222 stayed closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from acd import store as acd_store
from acd.queues_conf import QueueParams
from cti.ami.client import AmiClient
from cti.store.db import Database
from cti.store.tokens import create_token
from tests.acceptance.harness import wait_for
from tests.acceptance.traffic import DaemonProcess

NATS_URL = os.environ.get("CTI_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
NATS_PIDFILE = "/run/cti-test-nats.pid"
NATS_START = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--make-pidfile",
    "--pidfile", NATS_PIDFILE, "--exec", NATS_BIN, "--",
    "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server",
    "-l", "/var/log/nats-server.log",
]  # fmt: skip


def _port_open(port: int = 4222) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def require_nats() -> None:
    if _port_open():
        return
    if os.path.exists(NATS_BIN):
        start_nats()
        return
    pytest.fail(f"NATS is not reachable at {NATS_URL} and {NATS_BIN} is missing", pytrace=False)


def _listener_pids(port: int = 4222) -> set[int]:
    """The processes listening on 127.0.0.1:``port`` (``ss`` names them)."""
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], check=True, capture_output=True, text=True
    ).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def stop_nats() -> None:
    for pid in _listener_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _port_open():
        if time.monotonic() > deadline:
            pytest.fail("NATS on port 4222 did not stop within 10 s", pytrace=False)
        time.sleep(0.05)


def start_nats() -> None:
    subprocess.run(NATS_START, check=True, capture_output=True)
    deadline = time.monotonic() + 15
    while not _port_open():
        if time.monotonic() > deadline:
            pytest.fail("NATS did not come back within 15 s", pytrace=False)
        time.sleep(0.05)


# --- what the cluster tests set up alike ------------------------------------------------------
# (the nodes are tests.acceptance.traffic.DaemonProcess; the store a cti Database)


async def queue_with_agents(
    db: Database, queue: str, agents: Sequence[str | tuple[str, str]]
) -> dict[str, str]:
    """The queue (ringall, 10 s service level) and its agents, each with an agent token
    (returned by name). An agent given as (name, extension) is a simulated agent
    (``Local/<extension>@cti-sim-agents/n``) logged in available; a name alone has no
    device yet (its desk phone is provisioned later: :func:`desk_phone`)."""
    await acd_store.put_queue(db, QueueParams(queue, strategy="ringall", service_level_s=10))
    now = datetime.now(UTC)
    tokens: dict[str, str] = {}
    for agent in agents:
        name, ext = (agent, "") if isinstance(agent, str) else agent
        await acd_store.put_agent(db, name, name, [("local", ext)] if ext else [], {queue: 0})
        if ext:
            await acd_store.record_status(
                db, name, "available", "", f"Local/{ext}@cti-sim-agents/n", now, "test"
            )
        tokens[name] = await create_token(db, name, "agent")
    return tokens


async def health(node: DaemonProcess) -> dict[str, Any]:
    """The node's /healthz body ({} while it does not answer)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{node.base}/healthz") as resp:
            body: dict[str, Any] = await resp.json()
            return body
    except (aiohttp.ClientError, OSError, ValueError):
        return {}


async def driving(node: DaemonProcess) -> bool:
    h = await health(node)
    return h.get("role") == "driver" and h.get("ami") == "connected"


async def start_driving(*nodes: DaemonProcess, timeout: float = 30) -> None:
    """Start the nodes (at once) and wait until each drives its server."""
    await asyncio.gather(*(n.start() for n in nodes))
    for n in nodes:
        await wait_for(lambda n=n: driving(n), timeout=timeout, what=f"{n.config.stem} to drive")


async def api(node: DaemonProcess, token: str, method: str, path: str, body: Any = None) -> Any:
    """A JSON API call to ``node`` that must succeed (200/201): its answer."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, node.base + path, json=body, headers=headers) as r,
    ):
        got = await r.json()
        assert r.status in (200, 201), (method, path, r.status, got)
        return got


async def members(ami: AmiClient, queue: str) -> set[str]:
    """The queue's member interfaces on the server behind ``ami``."""
    _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
    return {i.get("StateInterface") or i.get("Location", "") for i in items
            if i.get("Event") == "QueueMember"}  # fmt: skip


async def endpoint_exists(ami: AmiClient, name: str) -> bool:
    _, items = await ami.send_list_action("PJSIPShowEndpoints")
    return any(i.get("ObjectName") == name for i in items)


async def desk_phone(
    node: DaemonProcess, admin: str, agent: str, servers: Iterable[AmiClient]
) -> tuple[str, str]:
    """A SIP desk phone for ``agent`` added through ``node``'s API, once it is provisioned
    on every server: (its name, its password)."""
    created = await api(node, admin, "POST", "/api/v1/phones",
                        {"agent": agent, "kind": "sip", "label": "desk"})  # fmt: skip
    phone, password = created["phone"]["name"], created["credentials"]["password"]
    for a in servers:
        await wait_for(lambda a=a: endpoint_exists(a, phone), timeout=15,
                       what="the phone provisioned on every server")  # fmt: skip
    return str(phone), str(password)


async def remove_members(ami: AmiClient, *queues: str) -> None:
    """The queues' members on that server removed (a test's clean-up; errors ignored)."""
    with contextlib.suppress(Exception):
        for queue in queues:
            for iface in await members(ami, queue):
                await ami.send_action("QueueRemove", {"Queue": queue, "Interface": iface})
