"""`cti run` killed with SIGKILL while webhook deliveries wait for a receiver that is down
loses none of them: the next start posts every one (crm_bridge.webhooks' journal), on
SQLite and PostgreSQL. The receiver is a real HTTP server on 127.0.0.1; the deliveries
are made the way an admin's work makes them (lead reassignments over the REST API). In a
cluster (PostgreSQL, NATS), a node SIGKILLed for good has its deliveries posted by a live
node, once (cti.cluster.orphans)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp import web
from sqlalchemy import func, select

from crm_bridge.webhooks import WORKER, verify
from cti.cluster.orphans import ADOPT_AFTER_S
from cti.store.db import Database
from cti.store.models import PendingItem
from cti.store.tokens import create_token
from tests.acceptance.harness import free_port
from tests.checkout import checkout_env
from tests.cluster_services import NATS_URL, require_nats
from tests.local_http import serving

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

SECRET = "crash-crash-crash-crash"
N = 12  # lead.assigned deliveries made before the kill
#: bounds for a loaded machine (a Python process's start can take many seconds)
STARTUP_S = 60.0
DELIVERED_S = 60.0


@dataclass
class Receiver:
    """Answers 503 while ``up`` is False; once up, 200 and what it got is kept."""

    up: bool = False
    refused: int = 0
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.up:
            self.refused += 1
            return web.Response(status=503)
        self.got.append((dict(request.headers), body))
        return web.Response(status=200)

    def delivery_ids(self) -> set[str]:
        return {headers["X-CTI-Delivery"] for headers, _ in self.got}


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rx.hook)
    async with serving(app) as base:
        yield rx, f"{base}/hook"


def write_conf(
    tmp_path: Path, db_url: str, http_port: int, hook_url: str, cluster: str = ""
) -> Path:
    """The daemon with every feature and no Asterisk (AMI at a closed port), one webhook
    receiver for lead.assigned that keeps a delivery in hand a long time (retries far
    apart), so that deliveries queue while it is down; ``cluster``: its ``[cluster]``
    section's lines."""
    for sub in ("etc", "monitor", "prompts"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "cti.toml"
    conf.write_text(
        f'[ami]\nport = {free_port()}\nsecret = "x"\nreconnect_max_s = 5.0\n'
        f'[asterisk]\nlog_dir = "{tmp_path}"\netc_dir = "{tmp_path / "etc"}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f"[http]\nport = {http_port}\n[agi]\nport = 0\n"
        f'[recordings]\nroot = "{tmp_path / "monitor"}"\n'
        f'[ivr]\nmenus = "{tmp_path / "menus.toml"}"\nprompt_dir = "{tmp_path / "prompts"}"\n'
        "[crm]\nwebhook_attempts = 10\nwebhook_backoff_s = 5.0\nwebhook_timeout_s = 2.0\n"
        f'[[crm.webhooks]]\nurl = "{hook_url}"\nsecret = "{SECRET}"\n'
        'events = ["lead.assigned"]\n' + (f"[cluster]\n{cluster}" if cluster else "")
    )
    return conf


async def start_cti(conf: Path, base: str) -> asyncio.subprocess.Process:
    """``cti run``, once its HTTP server answers."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti.cli", "--config", str(conf), "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env=checkout_env(),
    )  # fmt: skip
    deadline = time.monotonic() + STARTUP_S
    async with aiohttp.ClientSession() as http:
        while True:
            assert proc.returncode is None, "the daemon exited at start"
            try:
                async with http.get(f"{base}/livez") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                await proc.wait()
                raise AssertionError("the daemon did not answer in time")
            await asyncio.sleep(0.1)


async def journaled(db_url: str, keep: str = WORKER) -> int:
    db = Database.from_url(db_url)
    try:
        async with db.session() as s:
            query = select(func.count()).select_from(PendingItem)
            return int(await s.scalar(query.where(PendingItem.worker == keep)) or 0)
    finally:
        await db.dispose()


async def assign_lead(base: str, token: str, n: int) -> int:
    """A customer and a lead over the REST API, then ``n`` reassignments of it (one
    lead.assigned delivery each); the lead's id."""
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, headers=auth) as api:
        async with api.post("/api/v1/customers", json={"name": "Crash Test"}) as resp:
            assert resp.status == 201, await resp.text()
            customer = await resp.json()
        lead_in = {"customer_id": customer["id"], "title": "seats", "owner": "agent1"}
        async with api.post("/api/v1/leads", json=lead_in) as resp:
            assert resp.status == 201, await resp.text()
            lead = await resp.json()
        for i in range(n):
            owner = {"owner": "agent2" if i % 2 == 0 else "agent1"}
            async with api.post(f"/api/v1/leads/{lead['id']}/assign", json=owner) as resp:
                assert resp.status == 200, await resp.text()
    return int(lead["id"])


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def test_a_killed_daemon_posts_every_queued_delivery_at_its_next_start(
    db_url: str, migrated_db: None, tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    rx, hook_url = receiver
    db = Database.from_url(db_url)
    try:
        token = await create_token(db, "sup", "supervisor")
    finally:
        await db.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    conf = write_conf(tmp_path, db_url, port, hook_url)

    proc = await start_cti(conf, base)
    try:
        lead = await assign_lead(base, token, N)

        async def all_in_the_store() -> bool:  # the journal has them (and the receiver
            return rx.refused > 0 and await journaled(db_url) == N  # refused some)

        await until(all_in_the_store, 30, f"{N} deliveries journaled")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rx.got == []  # nothing was delivered before the kill

    rx.up = True
    proc = await start_cti(conf, base)
    try:

        async def every_one_delivered() -> bool:
            return len(rx.delivery_ids()) >= N

        await until(every_one_delivered, DELIVERED_S, f"{N} deliveries at the receiver")
        proc.send_signal(signal.SIGTERM)  # a graceful stop: nothing left to keep
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert len(rx.delivery_ids()) == N  # every delivery, de-duplicated by X-CTI-Delivery
    owners = []
    for headers, body in rx.got:
        assert verify(SECRET, headers["X-CTI-Timestamp"], body, headers["X-CTI-Signature"])
        payload = json.loads(body)
        assert payload["event"] == "lead.assigned" and payload["id"] == headers["X-CTI-Delivery"]
        owners.append((payload["data"]["id"], payload["data"]["owner"]))
    assert {o for _, o in owners} == {"agent1", "agent2"} and {i for i, _ in owners} == {lead}
    assert await journaled(db_url) == 0  # delivered: out of the store


@pytest.mark.parametrize(  # the nodes of a cluster share PostgreSQL (decision 0028)
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_node_killed_for_good_has_its_deliveries_posted_by_a_live_node_once(
    db_url: str, migrated_db: None, tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    """Two `cti run` nodes of a cluster (PostgreSQL, NATS); node a's deliveries wait for
    the receiver, a is SIGKILLed and stays dead: node b posts every one of them once
    a's journal has been free for the grace period (cti.cluster.orphans); a started again
    afterwards posts none of them a second time."""
    require_nats()
    rx, hook_url = receiver
    db = Database.from_url(db_url)
    try:
        token = await create_token(db, "sup", "supervisor")
    finally:
        await db.dispose()
    stream = f"CTI_ADOPT_{uuid.uuid4().hex[:10]}"
    nodes: dict[str, tuple[Path, str]] = {}
    for name in ("a", "b"):
        port = free_port()
        cluster = f'broker_url = "{NATS_URL}"\nnode = "{name}"\nstream = "{stream}"\n'
        conf = write_conf(tmp_path / name, db_url, port, hook_url, cluster)
        nodes[name] = (conf, f"http://127.0.0.1:{port}")
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        procs["a"], procs["b"] = await asyncio.gather(
            start_cti(*nodes["a"]), start_cti(*nodes["b"])
        )
        await assign_lead(nodes["a"][1], token, N)  # over a's API: a's deliveries

        async def all_in_as_journal() -> bool:
            return rx.refused > 0 and await journaled(db_url, f"{WORKER}@a") == N

        await until(all_in_as_journal, 30, f"{N} deliveries journaled by a")
        procs["a"].send_signal(signal.SIGKILL)
        await procs["a"].wait()
        killed = time.monotonic()
        rx.up = True

        async def every_one_delivered() -> bool:
            return len(rx.delivery_ids()) >= N

        await until(every_one_delivered, DELIVERED_S, f"{N} deliveries of a posted by b")
        assert time.monotonic() - killed >= ADOPT_AFTER_S  # not while a might be alive
        assert await journaled(db_url, f"{WORKER}@a") == 0

        procs["a"] = await start_cti(*nodes["a"])  # a comes back: nothing of its own
        for proc in procs.values():  # graceful stops: nothing left to keep
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        for proc in procs.values():
            await kill(proc)
        nc = await nats.connect(NATS_URL, connect_timeout=5)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
        await nc.close()
    assert len(rx.got) == N and len(rx.delivery_ids()) == N  # each posted once, by b
    for headers, body in rx.got:
        assert verify(SECRET, headers["X-CTI-Timestamp"], body, headers["X-CTI-Signature"])
    db = Database.from_url(db_url)
    try:
        async with db.session() as s:
            assert await s.scalar(select(func.count()).select_from(PendingItem)) == 0
    finally:
        await db.dispose()
