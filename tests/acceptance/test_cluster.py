"""Issue #18's acceptance: two Asterisk servers, three ``cti run`` nodes on PostgreSQL and
the machine's NATS JetStream.

- node 1 drives server A, node 2 drives server B, node 3 is a standby for server A
  (the lease: tests/integration/test_cluster_lease.py);
- an agent whose desktop is connected to node 2 gets the pop of a call on server A, and
  one connected to node 1 the pop of a call on server B (events cross nodes on the broker);
  the first agent's desktop connecting again, to node 3, resyncs the same call's card;
- the live wallboard of node 3 (it drives neither server) and of node 2 shows every
  server's callers waiting (summed, and per server) and agents' states: a caller waiting
  on A and one on B, an agent talking on B; all gone from it when the calls end;
- calls on both servers; during the traffic node 1 is SIGKILLed while node 3 is frozen
  (SIGSTOP) for 3 s: calls in progress at the kill end while nobody drives A; node 3,
  resumed, takes server A over (measured) and recovers them from A's CDR and queue_log;
- afterwards every CDR row of both servers has exactly one call row, each as the records
  say, and the daily statistics equal an independent queue_log computation over both
  servers' queue_logs;
- every call abandoned on either server texts its caller exactly once (the missed-call
  SMS, through the local Aliyun gateway), though several nodes saw it, server A changed
  driver and its driver was killed (the SMS are queued in the store: messaging's outbox);
- the broker (the machine's NATS) is restarted while calls ring on server A: every ring of
  the agent whose desktop is on node 2 still pops there once the broker is back;
- a progressive campaign (2 free agents: 2 lines) with both drivers able to pace it: the
  calls in flight on both servers together never exceed 2; the pacing node is SIGKILLed
  and the other driver paces the rest, still within 2, every lead finished; the calls
  ringing at the kill are taken over, not dialled again: one call at the carrier per lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg
import nats
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from acd import store as acd_store
from acd.queues_conf import FILE_NAME, QueueParams
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from messaging.models import Template
from outbound.store import OutboundStore
from tests.acceptance.harness import (
    ami_client,
    free_port,
    start_sipp_uas,
    start_test_asterisk,
    stop_test_asterisk,
    wait_for,
)
from tests.acceptance.sms_gateway import KEY_ID, SECRET, Gateway, sms_gateway
from tests.acceptance.test_call_truth import independent_daily, row_problems
from tests.acceptance.test_outbound_dialer import write_hello_pcap
from tests.acceptance.traffic import DaemonProcess, Truth, read_truth
from tests.checkout import checkout_env
from tests.cluster_services import (
    NATS_URL,
    driving,
    health,
    queue_with_agents,
    require_nats,
    start_nats,
    stop_nats,
)
from tests.conftest import PG_ADMIN_URL

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

AGENTS = (("cl-ag1", "3201"), ("cl-ag2", "3202"))


@pytest.fixture(scope="module")
def asterisk_b() -> Iterator[ChrootAsterisk]:
    inst = start_test_asterisk("-b")
    yield inst
    stop_test_asterisk(inst)


@pytest.fixture
async def ami_b(asterisk_b: ChrootAsterisk) -> AsyncIterator[AmiClient]:
    client = ami_client(asterisk_b)
    await client.start()
    await client.wait_connected(timeout=20)
    yield client
    await client.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    name = f"cti_cluster_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    yield url.render_as_string(hide_password=False)
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with sms_gateway() as gw:
        yield gw


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    require_nats()
    name = f"CTI_CLUSTER_{uuid.uuid4().hex[:10]}"
    yield name
    nc = await nats.connect(NATS_URL, connect_timeout=5)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream(name)
    await nc.close()


def write_node_config(
    path: Path, inst: ChrootAsterisk, *, db_url: str, http_port: int, node: str, server: str,
    stream: str, sms_url: str,
) -> None:  # fmt: skip
    spec = inst.spec
    path.write_text(
        f'[ami]\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
        f'secret = "{spec.ami_secret}"\nping_interval = 1.0\naction_timeout = 3.0\n'
        "reconnect_max_s = 0.5\n"
        f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{inst.log_dir}"\n'
        f'etc_dir = "{inst.etc_dir}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f"[http]\nport = {http_port}\n[agi]\nport = {spec.agi_port}\n"
        f'[cluster]\nbroker_url = "{NATS_URL}"\nnode = "{node}"\nserver = "{server}"\n'
        f'stream = "{stream}"\n'
        "[stats]\ntail_interval_s = 1\n"
        # the missed-call SMS through the local gateway (tests/acceptance/sms_gateway.py)
        "[messaging]\nsending_stale_s = 5\n"  # an SMS the killed node was sending: 5 s
        '[messaging.sms]\nprovider = "aliyun"\n'
        f'[messaging.sms.aliyun]\nendpoint = "{sms_url}"\naccess_key_id = "{KEY_ID}"\n'
        f'access_key_secret = "{SECRET}"\nsign_name = "测试客服"\n'
        "[messaging.missed_call]\nenabled = true\nper_number_cooldown_s = 0\n"
    )


def node_per_server(
    tmp_path: Path, servers: dict[str, tuple[ChrootAsterisk, str]], *, db_url: str, stream: str
) -> dict[str, DaemonProcess]:
    """One daemon node per entry (node name -> its Asterisk and server name), each on a free
    HTTP port, running this checkout's cti; no SMS (the gateway is a closed port)."""
    env = checkout_env()
    nodes: dict[str, DaemonProcess] = {}
    for name, (inst, server) in servers.items():
        port = free_port()
        cfg = tmp_path / f"{name}.toml"
        write_node_config(cfg, inst, db_url=db_url, http_port=port, node=name, server=server,
                          stream=stream, sms_url="http://127.0.0.1:9/")  # fmt: skip
        nodes[name] = DaemonProcess(cfg, tmp_path / f"{name}.log", env, port)
    return nodes


async def set_globals(ami: AmiClient, queue: str) -> None:
    """Simulated agents answer after 1 s and talk 3 s; the IVR's fallback is the queue."""
    for name, value in (("CTI_DEFAULT_QUEUE", queue), ("CTI_SIM_RING", "1"),
                        ("CTI_SIM_TALK", "3")):  # fmt: skip
        await ami.send_action("Setvar", {"Variable": name, "Value": value})


async def restore(inst: ChrootAsterisk, ami: AmiClient) -> None:
    with contextlib.suppress(Exception):
        await ami.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": "support"})
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "8"})
        await ami.send_action("Setvar", {"Variable": "CTI_CARRIER_URI", "Value": ""})
        (inst.etc_dir / FILE_NAME).unlink(missing_ok=True)
        await ami.send_action("QueueReload", {"Parameters": "yes"})
        await asyncio.to_thread(inst.cli, "channel request hangup all")


async def members_present(ami: AmiClient, queue: str, n: int) -> None:
    async def present() -> bool:
        _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
        return sum(1 for i in items if i.get("Event") == "QueueMember") >= n

    await wait_for(present, timeout=30, what=f"{n} agents in {queue}")


class Desktop:
    """An agent's websocket to one node; keeps every pop it receives."""

    def __init__(self, base: str, token: str) -> None:
        self.url = base.replace("http://", "ws://") + "/ws"
        self.token = token
        self.pops: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(self.url) as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": self.token}))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "hello":
                    self.ready.set()
                elif data.get("type") == "pop":
                    self.pops.append(data)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    def popped(self, prefix: str) -> list[str]:
        return [p["linkedid"] for p in self.pops if str(p.get("linkedid", "")).startswith(prefix)]


class Board(Desktop):
    """A supervisor's websocket to one node; keeps the newest wallboard frame."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__(base, token)
        self.frame: dict[str, Any] = {}

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(self.url) as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": self.token}))
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("type") == "wallboard":
                        self.frame = data
                        self.ready.set()

    def queue(self, name: str) -> dict[str, Any]:
        for q in self.frame.get("queues", []):
            if q["queue"] == name:
                return dict(q)
        return {"waiting": 0, "agents": [], "servers": {}}

    def talking(self, queue: str) -> list[tuple[str, str]]:
        """(agent, server) of the queue's agents on a call."""
        return [(a["name"], a.get("server", "")) for a in self.queue(queue)["agents"]
                if a["state"] in ("on_call", "on_hold")]  # fmt: skip


async def call(ami: AmiClient, hold_s: float) -> None:
    """A simulated inbound call through the IVR (no menu: the fallback queue)."""
    number = f"1390{secrets.randbelow(10**7):07d}"
    await ami.send_action(
        "Originate",
        {
            "Channel": "Local/4008001234@cti-inbound", "Context": "cti-sim-caller",
            "Exten": "s", "Priority": "1", "CallerID": number,
            "Variable": [f"CTI_SIM_HOLD={hold_s}"], "Async": "true",
        },
    )  # fmt: skip


async def test_two_servers_three_nodes_pops_cross_and_a_killed_node_is_taken_over(
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    asterisk_b: ChrootAsterisk,
    ami_b: AmiClient,
    pg_url: str,
    stream: str,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    queue = f"clq{secrets.token_hex(3)}"
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    tokens = await queue_with_agents(db, queue, AGENTS)
    supervisor = await create_token(db, "cl-supervisor", "supervisor")
    async with db.session() as s, s.begin():
        s.add(Template(name="missed_call", channel="sms", provider_template="SMS_200",
                       body="我们错过了您的来电,稍后回电。"))  # fmt: skip
    waitq = queue + "w"  # a queue no agent is in: its callers wait
    await acd_store.put_queue(db, QueueParams(waitq, strategy="ringall", service_level_s=10))

    nodes: dict[str, DaemonProcess] = {}
    for node, inst, server in (("n1", asterisk, "a"), ("n2", asterisk_b, "b"),
                               ("n3", asterisk, "a")):  # fmt: skip
        port = free_port()
        cfg = tmp_path / f"{node}.toml"
        write_node_config(cfg, inst, db_url=pg_url, http_port=port, node=node, server=server,
                          stream=stream, sms_url=gateway.url)  # fmt: skip
        env = checkout_env()
        nodes[node] = DaemonProcess(cfg, tmp_path / f"{node}.log", env, port)
    desktops: list[Desktop] = []
    try:
        await set_globals(ami, queue)
        await set_globals(ami_b, queue)
        await nodes["n1"].start()
        await wait_for(lambda: driving(nodes["n1"]), timeout=30, what="n1 to drive server A")
        await nodes["n2"].start()
        await nodes["n3"].start()
        await wait_for(lambda: driving(nodes["n2"]), timeout=30, what="n2 to drive server B")
        assert (await health(nodes["n3"]))["role"] == "standby"
        await members_present(ami, queue, 2)
        await members_present(ami_b, queue, 2)
        sys_a, sys_b = ami.system_name, ami_b.system_name
        assert sys_a and sys_b and sys_a != sys_b

        # desktops on the other server's node: ag1 on n2 (server B), ag2 on n1 (server A)
        d1 = Desktop(nodes["n2"].base, tokens["cl-ag1"])
        d2 = Desktop(nodes["n1"].base, tokens["cl-ag2"])
        desktops += [d1, d2]
        for d in desktops:
            d.start()
            await asyncio.wait_for(d.ready.wait(), 10)
        started = datetime.now(UTC)
        await call(ami, hold_s=6)
        await call(ami_b, hold_s=6)

        async def crossed() -> bool:
            return bool(d1.popped(sys_a + "-")) and bool(d2.popped(sys_b + "-"))

        await wait_for(crossed, timeout=20, what="pops across nodes (A -> n2, B -> n1)")
        # the agent's desktop reconnects to another node (n3, a standby): it resyncs the
        # same call's card (every node follows every node's calls)
        first_a = d1.popped(sys_a + "-")[0]
        d3 = Desktop(nodes["n3"].base, tokens["cl-ag1"])
        desktops.append(d3)
        d3.start()
        await asyncio.wait_for(d3.ready.wait(), 10)
        await wait_for(
            lambda: _true(first_a in d3.popped(sys_a + "-")), timeout=10,
            what="the call's card resynced on the desktop reconnected to n3",
        )  # fmt: skip
        assert any(p.get("resync") for p in d3.pops if p["linkedid"] == first_a)
        await check_live_wallboard(ami, ami_b, nodes, supervisor, queue, waitq, desktops)

        # traffic on both servers; n1 (driver of A) is SIGKILLed in the middle
        takeover_s = 0.0
        killed_at = resumed_at = 0.0
        for i in range(14):
            await call(ami, hold_s=4 + i % 5)
            await call(ami_b, hold_s=4 + i % 5)
            if i == 5:
                # n3 frozen first: for NO_DRIVER_S nobody drives A, calls in progress at
                # the kill end unseen, and n3 must recover them from A's CDR and queue_log
                n3 = nodes["n3"].proc
                assert n3 is not None
                n3.send_signal(signal.SIGSTOP)
                killed_at = time.time()
                await nodes["n1"].kill()
                await asyncio.sleep(NO_DRIVER_S)
                resumed_at = time.time()
                n3.send_signal(signal.SIGCONT)
                t0 = time.monotonic()
                await wait_for(lambda: driving(nodes["n3"]), timeout=15, what="n3 to take A",
                               every=0.05)  # fmt: skip
                takeover_s = time.monotonic() - t0
            await asyncio.sleep(1.0)
        print(f"takeover of server A by n3 (from its SIGCONT): {takeover_s:.2f} s")
        assert takeover_s <= 5.0

        async def quiet() -> bool:
            for inst in (asterisk, asterisk_b):
                out = await asyncio.to_thread(inst.cli, "core show channels count")
                if re.search(r"^0 active channels", out, re.M) is None:
                    return False
            return True

        await wait_for(quiet, timeout=90, what="every call to end", every=0.5)
        await check_rows(db, (asterisk, asterisk_b), started, killed_at)
        truth_a = read_truth(asterisk.cdr_csv, asterisk.queue_log, started.timestamp() - 1)
        unseen = [t for t in truth_a.values()
                  if t.started_at < killed_at < t.ended_at < resumed_at]  # fmt: skip
        print(f"{len(unseen)} call(s) of A in progress at the kill ended while nobody drove A")
        assert unseen, "no call ended while nobody drove A: the case was not exercised"
        await check_stats(nodes["n2"], supervisor, (asterisk, asterisk_b), queue, started)
        await check_missed_call_sms(db, gateway, sys_a, killed_at)
        # the broker restarts while calls ring on A (now driven by n3): every ring of
        # cl-ag1 still pops on its desktop connected to n2, once the broker is back
        rings: list[str] = []

        def on_ring(msg: Message) -> None:
            if msg.event == "AgentCalled" and msg.get("MemberName") == "cl-ag1":
                rings.append(msg.get("Linkedid", ""))

        ami.add_event_handler(on_ring)
        try:
            await asyncio.to_thread(stop_nats)
            for _ in range(3):
                await call(ami, hold_s=5)
                await asyncio.sleep(1.5)
            await wait_for(lambda: _true(bool(rings)), timeout=20, what="cl-ag1 to ring")
            await asyncio.to_thread(start_nats)
        finally:
            ami.remove_event_handler(on_ring)
        await wait_for(
            lambda: _true(set(rings) <= set(d1.popped(sys_a + "-"))), timeout=30,
            what="the pops of the calls that rang while the broker was down, on n2",
        )  # fmt: skip
        print(f"broker restart: {len(set(rings))} ring(s) during the outage, all popped on n2")
        await check_campaign_pacing(
            (ami, ami_b), {"a": nodes["n3"], "b": nodes["n2"]}, db, supervisor, queue, tmp_path
        )
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(60)}")
        raise
    finally:
        for d in desktops:
            await d.close()
        for node in nodes.values():
            await node.stop()
        await restore(asterisk, ami)
        await restore(asterisk_b, ami_b)
        await db.dispose()


#: how long nobody drives server A after its driver is killed (the standby is frozen)
NO_DRIVER_S = 3.0
CARRIER = Path(__file__).parent / "sipp" / "uas_campaign_carrier.xml"
ALWAYS = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


async def check_campaign_pacing(
    amis: tuple[AmiClient, AmiClient], drivers: dict[str, DaemonProcess], db: Database,
    token: str, queue: str, tmp_path: Path,
) -> None:  # fmt: skip
    """Both drivers may pace the campaign; one does at a time, within its lines (2 free
    agents, progressive: 2 calls in flight), counted on both servers' channels; the pacer
    is SIGKILLed, the other paces the rest (the old pacer's calls still ringing count and
    are taken over: never dialled again)."""
    port = free_port()
    write_hello_pcap(tmp_path / "hello.pcap")  # the carrier scenario loads it at start
    sipp = await start_sipp_uas(CARRIER, port, cwd=tmp_path)
    for client in amis:
        await client.send_action("Setvar", {"Variable": "CTI_CARRIER_URI",
                                            "Value": f"127.0.0.1:{port}"})  # fmt: skip
    api = drivers["b"].base + "/api/v1/outbound"
    headers = {"Authorization": f"Bearer {token}"}

    async def call_api(method: str, path: str, **kw: Any) -> Any:
        async with aiohttp.ClientSession(headers=headers) as http, http.request(
            method, api + path, **kw
        ) as resp:  # fmt: skip
            body = await resp.json()
            assert resp.status in (200, 201), body
            return body

    numbers = [f"1380013{i:03d}3" for i in range(4)]  # last digit 3: rings until cancelled
    campaign = await call_api("POST", "/campaigns", json={
        "name": "clusterpace", "queue": queue, "mode": "progressive", "ring_s": 5,
        "window": {"days": ALWAYS}, "retry": {"no_answer": {"delay_min": 0, "max_attempts": 1}},
    })  # fmt: skip
    lst = await call_api("POST", f"/campaigns/{campaign['id']}/lists", json={"name": "l"})
    await call_api("POST", f"/lists/{lst['id']}/import?phone=phone",
                   data=("phone\n" + "\n".join(numbers) + "\n").encode())  # fmt: skip
    store = OutboundStore(db, "CN", lambda: None)
    peak = {"before": 0, "after": 0}
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    killed = ""

    async def in_flight() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for server, client in zip(("a", "b"), amis, strict=True):
            _, chans = await client.send_list_action("CoreShowChannels")
            out[server] = {c.get("Linkedid", "") for c in chans
                           if c.get("Linkedid", "").startswith("cti-camp-")}  # fmt: skip
        return out

    try:
        await call_api("POST", f"/campaigns/{campaign['id']}/start")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = await in_flight()
            total = sum(len(v) for v in now.values())
            peak["after" if killed else "before"] = max(peak["after" if killed else "before"],
                                                        total)  # fmt: skip
            for server, ids in now.items():
                seen[server] |= ids
            if not killed and total >= 2:  # the pacer's first lines are ringing: kill it
                killed = next(s for s, ids in now.items() if ids)
                await drivers[killed].kill()
            leads = await store.leads(campaign_id=campaign["id"])
            if killed and all(ld["status"] not in ("new", "retry", "dialing") for ld in leads):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"campaign not finished (calls in flight at most {peak}, "
                                 f"killed {killed!r}): {leads}")  # fmt: skip
    finally:
        early = sipp.returncode is not None  # SIPp ended before the campaign did
        if not early:
            sipp.kill()
        output = (await sipp.communicate())[0] or b""
    assert not early, output.decode(errors="replace")[-2000:]
    other = "a" if killed == "b" else "b"
    invites = carrier_invites((tmp_path / "sipp_messages.log").read_text(errors="replace"))
    print(f"campaign pacing: at most {peak['before']} call(s) in flight with two possible "
          f"pacers, {peak['after']} after the pacer ({killed}) was killed; "
          f"{sum(len(c) for c in invites.values())} INVITEs for {len(numbers)} leads")  # fmt: skip
    assert peak["before"] == 2 and peak["after"] <= 2, peak
    assert seen[other], "the other driver never paced the campaign after the kill"
    # the killed pacer's calls ringing at the kill are taken over by the new pacer, never
    # dialled again: one call (Call-ID) at the carrier per lead (max_attempts 1)
    assert len(invites) == len(numbers), invites
    assert all(len(calls) == 1 for calls in invites.values()), invites
    leads = await store.leads(campaign_id=campaign["id"])
    assert all(ld["attempts"] == 1 for ld in leads), leads


def carrier_invites(log: str) -> dict[str, set[str]]:
    """The calls (Call-IDs) the carrier received per dialled number (SIPp's message log:
    a retransmitted INVITE has the same Call-ID)."""
    calls: dict[str, set[str]] = {}
    number = ""
    for line in log.splitlines():
        if line.startswith("INVITE sip:"):
            number = line[len("INVITE sip:") :].split("@", 1)[0]
        elif number and line.lower().startswith("call-id:"):
            calls.setdefault(number, set()).add(line.split(":", 1)[1].strip())
            number = ""
    return calls


async def check_missed_call_sms(
    db: Database, gateway: Gateway, sys_a: str, killed_at: float
) -> None:
    """Every call abandoned on either server texts its caller exactly once, though three
    nodes saw the calls, A changed driver and A's first driver was SIGKILLed (what it had
    claimed is queued in the store and sent by a live node: messaging's outbox)."""
    async with db.session() as s:
        rows = (await s.execute(select(CallRow.linkedid, CallRow.caller_num_raw,
                                       CallRow.ended_at).where(
            CallRow.disposition == "abandoned"))).all()  # fmt: skip
    callers = sorted(r.caller_num_raw for r in rows)
    must = callers
    assert must, "no abandoned call to text"
    before_kill = sum(1 for r in rows if r.linkedid.startswith(sys_a + "-")
                      and r.ended_at.timestamp() <= killed_at)  # fmt: skip

    def texted() -> list[str]:
        return sorted(f["PhoneNumbers"] for f in gateway.accepted)

    async def all_texted() -> bool:
        return set(must) <= set(texted())

    try:
        await wait_for(all_texted, timeout=30, what=f"{len(must)} missed-call SMS")
    except AssertionError:
        missing = [r for r in rows if r.caller_num_raw in set(must) - set(texted())]
        raise AssertionError(f"no SMS for {missing}") from None
    await asyncio.sleep(1.0)  # a second SMS for a call would have arrived by now
    got = texted()
    assert got == callers, f"texted: {got}, abandoned: {callers}"
    print(f"missed-call SMS: {len(callers)} abandoned calls ({before_kill} on A before its "
          f"driver was killed), each texted once")  # fmt: skip


async def check_live_wallboard(
    ami: AmiClient, ami_b: AmiClient, nodes: dict[str, DaemonProcess], token: str, queue: str,
    waitq: str, sockets: list[Desktop],
) -> None:  # fmt: skip
    """A caller waiting on A and one on B, then an agent talking on B: n3 (drives neither)
    and n2 (drives B) show them all, summed and per server; then none of them."""
    boards = {n: Board(nodes[n].base, token) for n in ("n3", "n2")}
    for b in boards.values():
        sockets.append(b)
        b.start()
        await asyncio.wait_for(b.ready.wait(), 10)
    t0 = time.monotonic()
    for client in (ami, ami_b):
        await client.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": waitq})
        await call(client, hold_s=10)

    def waiting_on_both(b: Board) -> bool:
        q = b.queue(waitq)
        per = {s: v["waiting"] for s, v in q.get("servers", {}).items()}
        return q["waiting"] == 2 and per == {"a": 1, "b": 1}

    try:
        await wait_for(
            lambda: _true(all(waiting_on_both(b) for b in boards.values())), timeout=15,
            what="a caller waiting on A and one on B, on the wallboards of n3 and n2",
        )  # fmt: skip
    except AssertionError:
        for n, b in boards.items():
            print(n, json.dumps(b.frame)[:3000])
        raise
    seen_waiting = time.monotonic() - t0
    await ami_b.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": queue})
    await ami_b.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "4"})
    await call(ami_b, hold_s=10)

    def both_shown(b: Board) -> bool:
        a_waiting = b.queue(waitq).get("servers", {}).get("a", {}).get("waiting")
        return a_waiting == 1 and any(s == "b" for _, s in b.talking(queue))

    await wait_for(
        lambda: _true(all(both_shown(b) for b in boards.values())), timeout=15,
        what="the caller waiting on A and an agent talking on B, on n3's and n2's wallboards",
    )  # fmt: skip
    frame = boards["n3"].queue(queue)
    assert frame["servers"]["b"]["states"].get("on_call", 0) >= 1, frame["servers"]

    def all_gone(b: Board) -> bool:
        return b.queue(waitq)["waiting"] == 0 and not b.talking(queue)

    await wait_for(
        lambda: _true(all(all_gone(b) for b in boards.values())), timeout=25,
        what="the waiting callers and the talking agent gone from the wallboards",
    )  # fmt: skip
    await ami.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": queue})
    await ami_b.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "3"})
    print(f"live wallboard across servers: both waiting callers shown on n3 and n2 "
          f"{seen_waiting:.1f} s after the calls were placed")  # fmt: skip


async def _true(value: bool) -> bool:
    return value


async def check_rows(
    db: Database, servers: tuple[ChrootAsterisk, ...], started: datetime, killed_at: float
) -> None:
    truth = {}
    for inst in servers:
        truth.update(read_truth(inst.cdr_csv, inst.queue_log, started.timestamp() - 1))
    assert len(truth) >= 20, f"only {len(truth)} calls in the CDRs"

    async def rows() -> dict[str, list[CallRow]]:
        async with db.session() as s:
            found = (await s.scalars(select(CallRow))).all()
        out: dict[str, list[CallRow]] = {}
        for r in found:
            out.setdefault(r.linkedid, []).append(r)
        return out

    async def all_written() -> bool:
        return set(truth) <= set(await rows())

    try:
        await wait_for(all_written, timeout=60, what="a row for every CDR call of both servers")
    except AssertionError:
        missing = sorted(set(truth) - set(await rows()))
        detail = [f"{m}: {truth[m].started_at:.2f}-{truth[m].ended_at:.2f} {truth[m].lastapps}"
                  for m in missing]  # fmt: skip
        raise AssertionError(f"{len(missing)} CDR call(s) without a row: {detail}") from None
    await asyncio.sleep(3)  # anything that would write twice has had its chance
    got = await rows()
    problems: list[str] = []
    for linkedid, t in sorted(truth.items()):
        if len(got.get(linkedid, [])) != 1:
            problems.append(f"{linkedid}: {len(got.get(linkedid, []))} rows")
            continue
        found = row_problems(_clocked(got[linkedid][0], t), t)
        if t.started_at < killed_at < t.ended_at:
            # in progress when its driver died: adopted by the new driver and completed
            # from the CDR, or (CDR line not there within the call model's wait, issue
            # #12's GAPPED_CDR_*) from what the model saw: its start may be the adoption's
            found = [p for p in found if "started_at" not in p]
        problems += [f"{p} (row from {got[linkedid][0].source})" for p in found]
    assert not problems, "\n".join(problems)
    sources: dict[str, int] = {}
    for linkedid in truth:
        src = got[linkedid][0].source
        sources[src] = sources.get(src, 0) + 1
    print(f"{len(truth)} calls on two servers, one row each:", sources)


#: the live path stamps a call when the node handles the AMI event; on this shared 2-core
#: machine a node may be seconds behind: times within this of the records pass here
#: (test_call_truth.py holds the single node to 1 s)
CLOCK_SLACK_S = 3.0


def _clocked(row: CallRow, t: Truth) -> SimpleNamespace:
    """The row's fields, with started_at/answered_at taken as the records' when they are
    within CLOCK_SLACK_S of them."""
    view = SimpleNamespace(**{c.key: getattr(row, c.key) for c in CallRow.__table__.columns})
    start = datetime.fromtimestamp(t.started_at, UTC)
    if abs((row.started_at - start).total_seconds()) <= CLOCK_SLACK_S:
        view.started_at = start
    connect = t.expected().get("answered_at")
    if row.answered_at is not None and connect is not None:
        at = datetime.fromtimestamp(connect, UTC)
        if abs((row.answered_at - at).total_seconds()) <= CLOCK_SLACK_S:
            view.answered_at = at
    return view


async def check_stats(
    node: DaemonProcess, token: str, servers: tuple[ChrootAsterisk, ...], queue: str,
    started: datetime,
) -> None:  # fmt: skip
    expected: dict[tuple[str, str], dict[str, float]] = {}
    for inst in servers:
        per_server = independent_daily(inst.queue_log, {queue}, started.timestamp() - 1, 0)
        for key, figures in per_server.items():
            into = expected.setdefault(key, dict.fromkeys(figures, 0.0))
            for name, value in figures.items():
                into[name] += value
    days = sorted({d for _, d in expected})
    url = f"{node.base}/api/v1/stats/daily?from={days[0]}&to={days[-1]}"
    headers = {"Authorization": f"Bearer {token}"}

    async def report() -> dict[tuple[str, str], dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            assert resp.status == 200
            body = await resp.json()
        got = {(r["queue"], r["day"]): r for r in body["rows"] if r["queue"] == queue}
        ok = all(
            got.get(k, {}).get("offered") == v["offered"]
            and got.get(k, {}).get("handled") == v["handled"]
            for k, v in expected.items()
        )
        return got if ok else {}

    got = await wait_for(report, timeout=30, what="the statistics of both servers")
    for key, exp in expected.items():
        for name in ("offered", "answered", "abandoned", "timed_out", "handled"):
            assert got[key][name] == exp[name], (key, name, got[key][name], exp[name])
    print("statistics of both servers equal their queue_logs:", dict(expected))
