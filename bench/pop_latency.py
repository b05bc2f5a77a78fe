"""Ring -> pop under a burst, measured from outside the daemon (issue #19).

Everything is measured as a user would, with a clock the daemon does not own:

- a real Asterisk (started the way the acceptance tests start it, tests/acceptance/
  harness.py) with ``--desktops`` simulated agents in queue ``support``
  (Local/<ext>@cti-sim-agents: they ring ``--ring`` s, answer, talk ``--talk`` s),
  quiet unless ``--media`` (their audio is the harness's, not the product's: see
  bench/sim_phones.py);
- the daemon as its own ``cti run`` process with every installed feature, on a fresh
  SQLite file (or ``--store postgres``: a temporary PostgreSQL database), logging JSON to a file;
- the desktops in another process (this file with ``--client``): one websocket per agent
  to the daemon, and one to the bare relay; the supervisors (``--supervisors``) in a
  process of their own, so that reading the wallboard's frames never delays the clock
  of the desktops;
- the bare relay, the practical floor, in a third process (``--relay``): its own AMI
  connection forwarding each AgentCalled to that agent's websocket, nothing else;
- this process: its own AMI connection timestamping AgentCalled (the ring), AgentConnect
  (the answer), the caller's BridgeEnter and MixMonitorStart (the recording), and the
  calls originated at ``--rate`` per second. Every caller is a known customer, so every
  pop should carry a card.

Printed, one figure per line (``name: value unit``):

- ``pop p50/p99/max``: AgentCalled seen here -> the pop received by that agent's desktop;
- ``relay p99``: AgentCalled seen here -> the relay's frame received by the same desktop;
- ``ratio p99``: pop p99 / relay p99 (target <= 3);
- ``pop after relay p50/p99``: for each ring, the pop's arrival on that desktop minus the
  relay's frame's for the same ring (negative: the pop came first): the daemon's own
  delay over the floor, call by call (a stall of the desktops' process delays both
  alike, unless it falls between them; the bench's own AMI clock is not in it);
- ``cards missing``: pops whose customer card did not reach that desktop, in the pop or
  in a ``call.update``, before the call ended there (AgentComplete): the bench listens
  until every answered call has ended;
- ``cards in the pop``: pops that carried the card themselves (the rest got it as an update);
- ``card p99``: AgentCalled -> the card on the desktop (in the pop or the update);
- ``recordings missing``: answered calls (AgentConnect) without a MixMonitorStart;
- ``recording start p99``: AgentConnect -> the recording writes audio (target <= 200 ms):
  the later of MixMonitorStart and the caller's BridgeEnter, since the dialplan starts
  MixMonitor with ``b`` before the answer (decision 0027) and that writes from the
  bridge on; a MixMonitor the daemon sends after the answer counts from its start;
- ``bridge p99``: AgentConnect -> the caller's BridgeEnter, Asterisk's own step (no
  daemon work is on it): the conversation starts there, so ``recording start p99`` cannot
  be below it;
- ``recording after bridge p99``: the recording's start after the caller's BridgeEnter
  (0 when MixMonitor was running before the bridge): conversation the recording missed;
- ``errors``: ERROR lines in the daemon's log during the run;
- ``daemon cpu``: the daemon process's CPU over the burst, % of one core;
- ``daemon main loop cpu a call``: the CPU of the daemon's main thread (its event loop,
  where the pops are made) over the burst, per call; ``daemon other threads cpu a call``
  the rest (lookups, background writers on PostgreSQL, transcoding, aiosqlite);
- ``daemon main loop run queue a call``: how long the main thread waited, runnable, for a
  CPU over the burst (the kernel's schedstat), per call: what the pops waited for besides
  their own loop;
- ``pops``: pops received (the count ``cards in the pop`` is out of);
- ``wallboard frames a second``: with ``--supervisors``, the frames each supervisor's
  desktop received a second during the burst, against ``wallboard frames due a second``,
  the most the daemon pushes (one a ``wallboard_interval_s``: 4 by default);
- ``cpu <part>``: CPU seconds each part used over the burst (Asterisk, the daemon, the
  desktops, the relay, this process), ``cpu machine`` the whole machine's, against
  ``cpu available`` (the burst's wall time x the CPUs): on a shared machine the figures
  move with what else runs.

and as a comment the load average.

    .venv/bin/python bench/pop_latency.py [--calls 200] [--desktops 500] [--rate 40]
        [--ring 1] [--talk 10] [--store sqlite|postgres] [--media] [--nice N]
        [--history N] [--supervisors K]

``--history N`` stores N settled queue entries for today before the daemon starts (a
centre's afternoon: the wallboard's "today" is over the whole day) and ``--supervisors K``
connects K supervisors' desktops, which get the wallboard's frames during the burst.

The daemon runs at its configured niceness (``[daemon] nice``, -5 by default: cti.priority,
as ``cti run`` starts when it may and the systemd unit's ``Nice=``); the relay runs at the
same niceness, so the floor is measured with the same priority (``--nice 0``: both at the
default priority).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- the desktops (another process) -------------------------------------------------------


async def run_clients(daemon_url: str, relay_url: str, tokens_file: Path, out_file: Path) -> None:
    """Connect every agent's desktop (daemon) and relay socket, record when each pop, card
    and relay frame arrives, stop on stdin EOF and write what was seen to ``out_file``."""
    import aiohttp

    given = json.loads(await asyncio.to_thread(tokens_file.read_text))
    tokens: dict[str, str] = given["agents"]
    supervisors: dict[str, str] = given["supervisors"]
    pops: list[tuple[float, str, str, int]] = []  # (t, agent, linkedid, has card)
    frames: list[float] = []  # wallboard frames the supervisors received
    cards: list[tuple[float, str, str]] = []
    relayed: list[tuple[float, str, str]] = []
    ready = 0
    need = 2 * len(tokens) + len(supervisors)

    def one_ready() -> None:
        nonlocal ready
        ready += 1
        if ready == need:
            print("READY", flush=True)

    async def desktop(http: aiohttp.ClientSession, agent: str, token: str) -> None:
        async with http.ws_connect(daemon_url, max_msg_size=1 << 20) as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": token}))
            async for msg in ws:
                now = time.time()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                kind = data.get("type")
                if kind == "hello":
                    one_ready()
                elif kind == "pop":
                    card = 1 if data.get("customer") else 0
                    pops.append((now, agent, str(data.get("linkedid")), card))
                    if card:
                        cards.append((now, agent, str(data.get("linkedid"))))
                elif kind == "call.update" and data.get("customer"):
                    cards.append((now, agent, str(data.get("linkedid"))))

    async def supervisor(http: aiohttp.ClientSession, token: str) -> None:
        async with http.ws_connect(daemon_url, max_msg_size=1 << 24) as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": token}))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kind = json.loads(msg.data).get("type")
                if kind == "hello":
                    one_ready()
                elif kind == "wallboard":
                    frames.append(time.time())

    async def relay(http: aiohttp.ClientSession, agent: str) -> None:
        async with http.ws_connect(relay_url) as ws:
            await ws.send_str(agent)
            async for msg in ws:
                now = time.time()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                if msg.data == "ok":
                    one_ready()
                else:
                    relayed.append((now, agent, msg.data))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [asyncio.create_task(desktop(http, a, t)) for a, t in tokens.items()]
        tasks += [asyncio.create_task(relay(http, a)) for a in tokens]
        tasks += [asyncio.create_task(supervisor(http, t)) for t in supervisors.values()]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out = {"pops": pops, "cards": cards, "relayed": relayed, "frames": frames}
    await asyncio.to_thread(out_file.write_text, json.dumps(out))


async def _history(db: Any, entries: int) -> None:
    """``entries`` settled queue entries of today (before now, after the local midnight),
    as the statistics store holds them after a day's queue_log ingests."""
    from sqlalchemy import insert

    from cti.config import SiteConfig
    from stats.formulas import local_hour
    from stats.models import EntryRow

    tz = ZoneInfo(SiteConfig().timezone)  # the bench's daemon keeps the default
    now = datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(tz).date(), dtime(0), tz).astimezone(UTC)
    span = max(60.0, (now - midnight).total_seconds() - 60)
    rows = []
    for i in range(entries):
        at = now - timedelta(seconds=60 + span * (i + 1) / (entries + 1))
        answered = i % 10 != 0
        hour_start, day, hour = local_hour(at, tz)
        rows.append(
            {"callid": f"hist-{i}", "linkedid": f"hist-{i}", "queue": "support",
             "entered_at": at, "hour_start": hour_start,
             "local_day": day.isoformat(), "local_hour": hour,
             "outcome": "answered" if answered else "abandoned", "wait_s": float(i % 40),
             "talk_s": float(60 + i % 240) if answered else None, "completed": answered,
             "agent": f"b{1000 + i % 500}" if answered else "",
             "wrapup_s": 5.0 if answered else None,
             "caller_num": f"138{i:08d}"}
        )  # fmt: skip
    for start in range(0, entries, 2000):
        async with db.session() as s:
            await s.execute(insert(EntryRow), rows[start : start + 2000])
            await s.commit()


# --- the bare relay (a third process) -------------------------------------------------------


async def run_relay(ami_port: int, user: str, secret: str, http_port: int, nice: int) -> None:
    """AMI AgentCalled -> the agent's websocket (the text is the Linkedid), nothing else;
    at the daemon's niceness."""
    from aiohttp import web

    from cti.priority import set_nice

    set_nice(nice)

    from cti.ami.client import AmiClient
    from cti.ami.protocol import Message

    sockets: dict[str, web.WebSocketResponse] = {}
    pending: set[asyncio.Task[None]] = set()

    def on_ami(msg: Message) -> None:
        if msg.event != "AgentCalled":
            return
        ws = sockets.get(msg.get("MemberName", ""))
        if ws is not None:
            task = asyncio.create_task(ws.send_str(msg.get("Linkedid", "")))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive()
        agent = str(first.data)
        sockets[agent] = ws
        await ws.send_str("ok")
        async for _ in ws:
            pass
        sockets.pop(agent, None)
        return ws

    ami = AmiClient("127.0.0.1", ami_port, user, secret, events="agent")
    ami.add_event_handler(on_ami)
    await ami.start()
    await ami.wait_connected(timeout=15)
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await runner.cleanup()
    await ami.close()


# --- helpers --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def gc_pauses_ms(log_file: Path, since_offset: int) -> list[tuple[float, str]]:
    """The garbage collection pauses over cti.gcpause.SLOW_MS the daemon logged: (ms, the
    generation collected)."""
    out = []
    with log_file.open("rb") as fh:
        fh.seek(since_offset)
        for raw in fh:
            line = raw.decode("utf-8", "replace")
            if "garbage collection paused the event loop" not in line:
                continue
            with contextlib.suppress(ValueError, IndexError):
                ms = float(line.split("paused the event loop ")[1].split(" ms")[0])
                generation = line.split("(generation ")[1].split(")")[0]
                out.append((ms, generation))
    return out


def error_lines(log_file: Path, since_offset: int) -> list[str]:
    """ERROR/CRITICAL lines (JSON log) written after ``since_offset``."""
    out = []
    with log_file.open("rb") as fh:
        fh.seek(since_offset)
        for raw in fh:
            line = raw.decode("utf-8", "replace")
            try:
                level = json.loads(line).get("level")
            except ValueError:
                level = "error" if "Traceback" in line else ""
            if level in ("error", "critical"):
                out.append(line.strip())
    return out


async def _pg_database(create: bool, name: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from cti.store.db import to_async_url

    engine = create_async_engine(to_async_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            if create:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def _line(proc: asyncio.subprocess.Process, what: str, timeout: float = 120) -> None:
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
    if line.strip() != "READY":
        raise RuntimeError(f"{what} failed: {line!r}")


async def _metric(base: str, name: str) -> float:
    """One sample of the daemon's /metrics (0 if it has none)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def _drain(base: str, args: argparse.Namespace) -> tuple[int, float]:
    """After the burst: the calls end, their recordings are converted. The largest
    transcoding backlog seen, and the seconds from the last hang-up until it is 0."""
    import aiohttp

    async def backlog(http: aiohttp.ClientSession) -> int:
        async with http.get(base + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith("cti_recordings_transcode_backlog "):
                    return int(float(line.split()[1]))
        return 0

    most, last_hangup = 0, time.monotonic() + args.talk + 2
    async with aiohttp.ClientSession() as http:
        while True:
            now_backlog = await backlog(http)
            most = max(most, now_backlog)
            if now_backlog == 0 and time.monotonic() > last_hangup:
                return most, max(0.0, time.monotonic() - last_hangup)
            if time.monotonic() > last_hangup + 600:
                return most, float("inf")
            await asyncio.sleep(0.5)


# --- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    import aiohttp

    from bench.cpu import (
        asterisk_pid,
        machine_cpu_s,
        proc_cpu_s,
        runqueue_wait_s,
        threads_cpu_s,
    )
    from bench.sim_phones import asterisk_kind
    from cti.ami.protocol import Message
    from cti.store.db import Database
    from cti.store.migrate import upgrade
    from cti.store.tokens import create_token
    from stats.settings import StatsSettings
    from tests.acceptance.harness import (
        ami_client,
        free_port,
        reset_asterisk,
        start_test_asterisk,
        stop_test_asterisk,
        wait_for,
    )

    work = Path(tempfile.mkdtemp(prefix="cti-pop-bench-"))
    pg_name = f"cti_bench_{secrets.token_hex(4)}" if args.store == "postgres" else ""
    phones = "sending audio all call long" if args.media else "quiet"
    print(f"# starting Asterisk (calls={args.calls}, desktops={args.desktops}, "
          f"simulated phones {phones}) ...", flush=True)  # fmt: skip
    kind = asterisk_kind(args.media)
    inst = await asyncio.to_thread(lambda: start_test_asterisk(kind=kind))
    procs: list[asyncio.subprocess.Process] = []
    daemon: asyncio.subprocess.Process | None = None
    ami = ami_client(inst)
    try:
        await ami.start()
        await ami.wait_connected(timeout=15)
        await reset_asterisk(inst, ami)
        if pg_name:
            await _pg_database(True, pg_name)
            db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
        else:
            db_url = f"sqlite+aiosqlite:///{work / 'cti.db'}"
        await asyncio.to_thread(upgrade, db_url)
        db = Database.from_url(db_url)
        admin = await create_token(db, "bench-admin", "admin")
        tokens = {f"b{1000 + i}": "" for i in range(args.desktops)}
        for name in tokens:
            tokens[name] = await create_token(db, name, "agent")
        supervisors = {
            f"sup{i}": await create_token(db, f"sup{i}", "supervisor")
            for i in range(args.supervisors)
        }
        if args.history:
            await _history(db, args.history)
        await db.dispose()

        # the daemon, as an operator runs it
        spec, http_port = inst.spec, free_port()
        conf, log_file = work / "cti.toml", work / "cti.log"
        conf.write_text(
            f'[ami]\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
            f'secret = "{spec.ami_secret}"\naction_timeout = 10.0\n'
            f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{inst.log_dir}"\n'
            f'[database]\nurl = "{db_url}"\n'
            f"[http]\nport = {http_port}\n[agi]\nport = {spec.agi_port}\n"
            '[log]\nformat = "json"\n'
            f"[daemon]\nnice = {args.nice}\n"
            + (f'[recordings]\nformat = "{args.format}"\n' if args.format else "")
        )
        log_fh = log_file.open("wb")
        env = {**os.environ, "PYTHONASYNCIODEBUG": "1"} if args.debug_loop else None
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cti.cli", "--config", str(conf), "run",
            stdout=log_fh, stderr=log_fh, cwd=str(ROOT), env=env,
        )  # fmt: skip
        log_fh.close()
        base = f"http://127.0.0.1:{http_port}"

        async def daemon_up() -> bool:
            if daemon is not None and daemon.returncode is not None:
                raise RuntimeError(f"cti run exited: {log_file.read_text()[-2000:]}")
            text = await asyncio.to_thread(log_file.read_text, "utf-8", "replace")
            return "AMI connected" in text

        await wait_for(daemon_up, timeout=60, what="cti run to start", every=0.2)
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(base + "/healthz") as resp:
                        return resp.status == 200
                return False

            await wait_for(healthy, timeout=30, what="/healthz", every=0.2)
            print("# creating customers and queue members ...", flush=True)
            callers = [f"139{i:08d}" for i in range(args.calls)]
            for i, number in enumerate(callers):
                async with http.post(
                    base + "/api/v1/customers",
                    json={"name": f"客户{i}", "company": "Bench", "tier": "vip",
                          "phones": [number], "force": True},
                    headers={"Authorization": f"Bearer {admin}"},
                ) as resp:  # fmt: skip
                    if resp.status != 201:
                        raise RuntimeError(f"customer: {resp.status} {await resp.text()}")
        for name in tokens:
            await ami.send_action(
                "QueueAdd",
                {"Queue": "support", "Interface": f"Local/{name[1:]}@cti-sim-agents/n",
                 "MemberName": name},
            )  # fmt: skip
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": str(args.ring)})
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(args.talk)})

        # the bare relay and the desktops
        relay_port = free_port()
        relay = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--relay", str(spec.ami_port), spec.ami_user,
            spec.ami_secret, str(relay_port), str(args.nice),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(relay)
        await _line(relay, "the relay")
        # the agents' desktops in one process, the supervisors' in another (as in a centre,
        # where a wallboard's browser is not an agent's: reading its frames never delays
        # the desktops' clock)
        started: list[tuple[asyncio.subprocess.Process, Path]] = []
        groups = [("desktops", {"agents": tokens, "supervisors": {}})]
        if supervisors:
            groups.append(("supervisors", {"agents": {}, "supervisors": supervisors}))
        for who, given in groups:
            tokens_file, out_file = work / f"{who}.json", work / f"{who}-received.json"
            await asyncio.to_thread(tokens_file.write_text, json.dumps(given))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", f"ws://127.0.0.1:{http_port}/ws",
                f"ws://127.0.0.1:{relay_port}/ws", str(tokens_file), str(out_file),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs.append(proc)
            await _line(proc, f"the {who}")
            started.append((proc, out_file))
        clients = started[0][0]
        print(f"# {args.desktops} desktops connected to the daemon and to the relay, "
              f"{args.supervisors} supervisors to the daemon", flush=True)  # fmt: skip

        # our own clock: the ring, the answer, the recording
        rang: dict[tuple[str, str], float] = {}
        answered: dict[str, float] = {}
        recording: dict[str, float] = {}
        caller_of: dict[str, str] = {}  # the answered caller's channel
        bridged: dict[tuple[str, str], float] = {}  # (linkedid, channel) -> BridgeEnter
        ended: dict[tuple[str, str], float] = {}  # (linkedid, agent) -> AgentComplete
        connected: dict[str, str] = {}  # agent -> the Linkedid of the call it answered

        def on_ami(msg: Message) -> None:
            now = time.time()
            lid = msg.get("Linkedid", "")
            if msg.event == "AgentCalled":
                rang.setdefault((lid, msg.get("MemberName", "")), now)
            elif msg.event == "AgentConnect":
                answered.setdefault(lid, now)
                connected[msg.get("MemberName", "")] = lid
                caller_of.setdefault(lid, msg.get("Channel", ""))
            elif msg.event == "BridgeEnter":
                bridged.setdefault((lid, msg.get("Channel", "")), now)
            elif msg.event == "MixMonitorStart":
                recording.setdefault(lid, now)
            elif msg.event == "AgentComplete":  # the call ended on that agent's desktop
                # a channel that had hung up is left out of the event (the caller: only
                # Dest* fields; both: neither, cti.calls.model._AGENT_EVENTS)
                agent = msg.get("MemberName", "")
                lid = lid or msg.get("DestLinkedid", "") or connected.get(agent, "")
                ended.setdefault((lid, agent), now)

        def recording_start(lid: str) -> float:
            """When the call's recording writes audio: MixMonitor running and the caller
            bridged (a ``b`` MixMonitor armed before the answer waits for the bridge)."""
            return max(recording[lid], bridged.get((lid, caller_of.get(lid, "")), 0.0))

        ami.add_event_handler(on_ami)
        log_offset = log_file.stat().st_size
        assert daemon is not None
        parts = {
            "asterisk": asterisk_pid(inst), "daemon": daemon.pid, "desktops": clients.pid,
            "supervisors": started[1][0].pid if len(started) > 1 else None,
            "relay": relay.pid, "bench": os.getpid(),
        }  # fmt: skip
        cpu_at0 = {name: proc_cpu_s(pid) for name, pid in parts.items() if pid is not None}
        machine0 = machine_cpu_s()
        threads0 = threads_cpu_s(daemon.pid)
        waited0 = runqueue_wait_s(daemon.pid)
        cpu0, wall0, burst0 = proc_cpu_s(daemon.pid), time.monotonic(), time.time()
        ami_events0 = await _metric(base, "cti_ami_events_total")
        originated: list[str] = []
        gap = 1.0 / args.rate if args.rate > 0 else 0.0
        next_at = time.monotonic()
        for number in callers:
            if gap:
                next_at += gap
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            linkedid = f"bench-{secrets.token_hex(6)}"
            originated.append(linkedid)
            await ami.send_action(
                "Originate",
                {"Channel": "Local/4008001234@cti-inbound", "Context": "cti-sim-caller",
                 "Exten": "s", "Priority": "1", "CallerID": number,
                 "Variable": [f"CTI_SIM_HOLD={args.ring + args.talk + 30}"], "Async": "true",
                 "ChannelId": linkedid, "OtherChannelId": linkedid + "-2"},
            )  # fmt: skip

        async def all_recorded() -> bool:
            done = len(answered) >= len(originated)
            return done and all(lid in recording for lid in answered)

        with contextlib.suppress(AssertionError):
            await wait_for(all_recorded, timeout=args.ring + 30, what="answers", every=0.05)
        await asyncio.sleep(1.0)  # the last frames and late cards reach the desktops
        wall, burst1 = time.monotonic() - wall0, time.time()
        cpu = proc_cpu_s(daemon.pid) - cpu0
        threads = threads_cpu_s(daemon.pid)
        main_cpu = threads.get("main", 0.0) - threads0.get("main", 0.0)
        main_waited = runqueue_wait_s(daemon.pid) - waited0
        used = {
            name: proc_cpu_s(pid) - cpu_at0[name]
            for name, pid in parts.items()
            if pid is not None
        }  # fmt: skip
        machine = machine_cpu_s() - machine0

        async def all_ended() -> bool:  # a card that comes later is no use to the agent
            return all((lid, agent) in ended for lid, agent in rang if lid in answered)

        with contextlib.suppress(AssertionError):
            await wait_for(all_ended, timeout=args.talk + 30, what="hang-ups", every=0.1)
        ami_events = await _metric(base, "cti_ami_events_total") - ami_events0
        drained = await _drain(base, args) if args.drain else None
        errors = await asyncio.to_thread(error_lines, log_file, log_offset)
        gc_ms = await asyncio.to_thread(gc_pauses_ms, log_file, log_offset)
        seen: dict[str, list[Any]] = {"pops": [], "cards": [], "relayed": [], "frames": []}
        for proc, out_file in started:
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 60)
            got = json.loads(await asyncio.to_thread(out_file.read_text))
            for key, values in got.items():
                seen[key] += values

        ours = set(originated)
        pop_at: dict[tuple[str, str], tuple[float, int]] = {}
        for t, agent, lid, card in seen["pops"]:
            if lid in ours:
                pop_at.setdefault((lid, agent), (t, card))
        card_at: dict[tuple[str, str], float] = {}
        for t, agent, lid in seen["cards"]:
            if lid in ours:
                card_at.setdefault((lid, agent), t)
        relay_at: dict[tuple[str, str], float] = {}
        for t, agent, lid in seen["relayed"]:
            relay_at.setdefault((lid, agent), t)
        pop_ms = [(t - rang[k]) * 1000 for k, (t, _) in pop_at.items() if k in rang]
        relay_ms = [(t - rang[k]) * 1000 for k, t in relay_at.items() if k in rang]
        card_ms = [(t - rang[k]) * 1000 for k, t in card_at.items() if k in rang]
        rings_missing = sum(1 for k in rang if k[0] in ours and k not in pop_at)
        # a pop carries its card if the card reaches that desktop, in the pop or in a
        # call.update, before the call ends there (AgentComplete)
        cards_missing = sum(
            1 for k in pop_at if k not in card_at or card_at[k] > ended.get(k, float("inf"))
        )  # fmt: skip
        cards_in_pop = sum(card for _, card in pop_at.values())
        if args.keep:  # every ring, for tracing one call through the daemon's log
            calls = [
                {"linkedid": lid, "agent": agent, "ring": rang[(lid, agent)],
                 "pop": pop_at.get((lid, agent), (None, 0))[0],
                 "card_in_pop": pop_at.get((lid, agent), (None, 0))[1],
                 "card": card_at.get((lid, agent)), "relay": relay_at.get((lid, agent)),
                 "answered": answered.get(lid), "ended": ended.get((lid, agent)),
                 "recording": recording.get(lid),
                 "bridged": bridged.get((lid, caller_of.get(lid, "")))}
                for lid, agent in rang if lid in ours
            ]  # fmt: skip
            await asyncio.to_thread((work / "calls.json").write_text, json.dumps(calls))
        rec_ms = [
            max(0.0, recording_start(lid) - t) * 1000
            for lid, t in answered.items()
            if lid in recording
        ]
        rec_missing = sum(1 for lid in answered if lid not in recording)
        bridge_at = {
            lid: bridged[(lid, caller_of.get(lid, ""))]
            for lid in answered
            if (lid, caller_of.get(lid, "")) in bridged
        }  # fmt: skip
        bridge_ms = [max(0.0, t - answered[lid]) * 1000 for lid, t in bridge_at.items()]
        rec_late_ms = [
            max(0.0, recording_start(lid) - t) * 1000
            for lid, t in bridge_at.items()
            if lid in recording
        ]  # fmt: skip

        rate = f"{args.rate:g}/s" if args.rate > 0 else "all at once"
        db_kind = "PostgreSQL" if pg_name else "SQLite"
        print(f"# {len(originated)} calls at {rate} onto {args.desktops} desktops, {db_kind}; "
              f"ring {args.ring:g} s, talk {args.talk:g} s; {len(rang)} rings, "
              f"{len(pop_at)} pops, {rings_missing} rings without a pop, "
              f"{len(answered)} answered, burst {wall:.1f} s")  # fmt: skip
        relay_p99 = pct(relay_ms, 0.99)
        print(f"pop p50: {pct(pop_ms, 0.5):.1f} ms")
        print(f"pop p99: {pct(pop_ms, 0.99):.1f} ms")
        print(f"pop max: {max(pop_ms, default=float('nan')):.1f} ms")
        print(f"relay p99: {relay_p99:.1f} ms")
        print(f"ratio p99: {pct(pop_ms, 0.99) / relay_p99:.1f} x")
        # the same ring on the same desktop: what the daemon added to the floor, call by call
        after = [(t - relay_at[k]) * 1000 for k, (t, _) in pop_at.items() if k in relay_at]
        print(f"pop after relay p50: {pct(after, 0.5):.1f} ms")
        print(f"pop after relay p99: {pct(after, 0.99):.1f} ms")
        print(f"cards missing: {cards_missing}")
        print(f"pops: {len(pop_at)}")
        print(f"cards in the pop: {cards_in_pop}")
        print(f"card p99: {pct(card_ms, 0.99):.1f} ms")
        print(f"recordings missing: {rec_missing}")
        print(f"recording start p99: {pct(rec_ms, 0.99):.1f} ms")
        print(f"bridge p99: {pct(bridge_ms, 0.99):.1f} ms")
        print(f"recording after bridge p99: {pct(rec_late_ms, 0.99):.1f} ms")
        print(f"errors: {len(errors)}")
        if args.supervisors:  # frames each supervisor got a second during the burst
            during = sum(1 for t in seen["frames"] if burst0 <= t <= burst1)
            print(f"wallboard frames a second: {during / args.supervisors / wall:.1f} frames")
            # the baseline: what the daemon pushes at most (one frame a wallboard_interval_s)
            due = 1 / StatsSettings().wallboard_interval_s
            print(f"wallboard frames due a second: {due:.1f} frames")
        print(f"daemon cpu: {100 * cpu / wall:.0f} %")
        n_calls = max(1, len(originated))
        # the pops' own thread: what competes with them on the event loop
        print(f"daemon main loop cpu a call: {1000 * main_cpu / n_calls:.1f} ms")
        print(f"daemon other threads cpu a call: {1000 * (cpu - main_cpu) / n_calls:.1f} ms")
        print(f"daemon main loop run queue a call: {1000 * main_waited / n_calls:.1f} ms")
        print(f"ami events a call: {ami_events / n_calls:.1f} events")
        print(f"gc pauses over 50 ms: {len(gc_ms)} pauses")
        if gc_ms:
            print(f"gc pause max: {max(ms for ms, _ in gc_ms):.0f} ms")
            # 2: a full collection (cti.gcpause allows none automatically); 0-1: young ones
            print(f"# gc pauses (ms, generation): {gc_ms}")
        # the figures depend on what else runs: a daemon starved of CPU is late everywhere
        per_call = 1000 * cpu / max(1, len(originated))
        print(f"# daemon CPU {cpu:.1f} s over {wall:.1f} s ({per_call:.1f} ms a call); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
              f"daemon and relay at nice {args.nice}")  # fmt: skip
        # who used the machine during the burst (CPU seconds; the rest is other work)
        for name, sec in used.items():
            print(f"cpu {name}: {sec:.1f} s")
        print(f"cpu machine: {machine:.1f} s")
        print(f"cpu available: {wall * (os.cpu_count() or 1):.1f} s")  # the baseline
        if drained is not None:
            most, seconds = drained
            print(f"transcode backlog max: {most} files")
            print(f"transcode drain: {seconds:.1f} s")
        for line in errors[: args.show_errors]:
            print(f"# {line[:400]}")
    finally:
        for proc in procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        for proc in procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if daemon is not None and daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(daemon.wait(), 30)
            except TimeoutError:
                daemon.kill()
                await daemon.wait()
        await ami.close()
        await asyncio.to_thread(stop_test_asterisk, inst)
        if pg_name:
            await _pg_database(False, pg_name)
        if args.keep:
            print(f"# kept {work}")
        else:
            await asyncio.to_thread(shutil.rmtree, work, True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        daemon_url, relay_url, tokens_file, out_file = sys.argv[2:6]
        asyncio.run(run_clients(daemon_url, relay_url, Path(tokens_file), Path(out_file)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--relay":
        port, user, secret, http_port, nice = sys.argv[2:7]
        asyncio.run(run_relay(int(port), user, secret, int(http_port), int(nice)))
        return
    from cti.config import DaemonConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls originated")
    parser.add_argument("--desktops", type=int, default=500, help="connected desktops (agents)")
    parser.add_argument("--rate", type=float, default=40, help="calls per second (0: at once)")
    parser.add_argument("--ring", type=float, default=1, help="seconds a phone rings")
    parser.add_argument("--talk", type=float, default=10, help="seconds of talk")
    parser.add_argument(
        "--store", choices=("sqlite", "postgres"), default="sqlite",
        help="the daemon's database: a fresh SQLite file or a temporary PostgreSQL database",
    )  # fmt: skip
    parser.add_argument(
        "--postgres", dest="store", action="store_const", const="postgres",
        help="the same as --store postgres",
    )  # fmt: skip
    parser.add_argument(
        "--media", action="store_true",
        help="simulated phones send silence all call long (transmit_silence = yes, as the "
        "first figures of #19): Asterisk's media then takes most of a 2-core machine",
    )  # fmt: skip
    parser.add_argument(
        "--nice", type=int, default=DaemonConfig().nice,
        help="the daemon's [daemon] nice, and the relay's (default: the product's)",
    )  # fmt: skip
    parser.add_argument(
        "--history", type=int, default=0,
        help="queue entries already stored for today before the burst (a centre's afternoon: "
        "the wallboard's figures are over the whole day)",
    )  # fmt: skip
    parser.add_argument(
        "--supervisors", type=int, default=0,
        help="supervisors' desktops connected to the daemon (they get the wallboard's frames)",
    )  # fmt: skip
    parser.add_argument("--format", default="", help="[recordings] format (default: mp3)")
    parser.add_argument("--show-errors", type=int, default=5, help="error lines shown")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (daemon log)")
    parser.add_argument(
        "--drain", action="store_true",
        help="then wait for the calls to end and print the transcoding backlog and drain time",
    )  # fmt: skip
    parser.add_argument(
        "--debug-loop", action="store_true",
        help="asyncio debug mode in the daemon: callbacks over 100 ms are logged (slower)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.desktops < args.calls:
        parser.error("need at least as many desktops as calls (one agent answers per call)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
