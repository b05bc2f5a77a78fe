"""One node vs two (issue #18): pops delivered, ring -> pop, takeover time, lost records.

Measured from outside the daemons, on PostgreSQL and the machine's NATS JetStream:

- a real Asterisk (as the acceptance tests start it) with ``--desktops`` simulated agents
  in queue ``support`` (they ring ``--ring`` s, answer, talk ``--talk`` s), quiet unless
  ``--media`` (their audio is the harness's, not the product's: bench/sim_phones.py);
- **one node**: ``cti run`` driving that Asterisk, every desktop connected to it;
- **two nodes**: the same driver plus a second ``cti run`` for the same server (a standby
  serving HTTP and websockets), the desktops split between the two: the second node's
  pops cross the broker;
- the desktops in another process (this file with ``--client``), one websocket each;
- this process: its own AMI connection timestamping AgentCalled (the ring) and the calls,
  originated at ``--rate`` per second.

Then the driver is SIGKILLed during traffic and the time until the standby drives the
server (``/healthz`` role driver, AMI up) is measured; after the calls end, every call in
Asterisk's CDR must have exactly one call row (``lost records``, ``duplicate records``).

Printed (``name: value unit``): for each layout ``pops/s``, ``pop p50``, ``pop p99``,
``rings without a pop`` (with two nodes also ``pop p99 on the driver`` / ``on the
standby``), and the CPU seconds over the burst of each part (``cpu driver``, ``cpu
standby``, ``cpu asterisk``, ``cpu desktops``, ``cpu broker``, ``cpu bench``, ``cpu driver
main thread``), of the whole machine (``cpu machine``), what none of them used (``cpu
other work``: other sessions on a shared machine) against ``cpu available`` (the burst's
wall time x the CPUs); then ``takeover``, ``lost records``, ``duplicate records``.

    .venv/bin/python bench/cluster.py [--calls 200] [--desktops 500] [--rate 40] [--media]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NATS_URL = "nats://127.0.0.1:4222"


# --- the desktops (another process) -------------------------------------------------------


async def run_clients(spec_file: Path, out_file: Path) -> None:
    """Connect every agent's desktop to its node; record when each pop arrives; stop on
    stdin EOF and write what was seen."""
    import aiohttp

    spec: dict[str, list[str]] = json.loads(await asyncio.to_thread(spec_file.read_text))
    pops: list[tuple[float, str, str]] = []  # (t, agent, linkedid)
    ready = 0

    async def desktop(http: aiohttp.ClientSession, agent: str, url: str, token: str) -> None:
        nonlocal ready
        async with http.ws_connect(url, max_msg_size=1 << 20) as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": token}))
            async for msg in ws:
                now = time.time()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data.get("type") == "hello":
                    ready += 1
                    if ready == len(spec):
                        print("READY", flush=True)
                elif data.get("type") == "pop":
                    pops.append((now, agent, str(data.get("linkedid"))))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [asyncio.create_task(desktop(http, a, u, t)) for a, (u, t) in spec.items()]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(out_file.write_text, json.dumps({"pops": pops}))


# --- helpers --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Node:
    """``cti run`` as an operator runs it."""

    def __init__(self, work: Path, name: str, conf: str) -> None:
        self.name = name
        self.conf = work / f"{name}.toml"
        self.conf.write_text(conf)
        self.log = work / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cti.cli", "--config", str(self.conf), "run",
                stdout=fh, stderr=fh, cwd=str(ROOT),
            )  # fmt: skip

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


async def health(http: Any, port: int) -> dict[str, Any]:
    import aiohttp

    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            body: dict[str, Any] = await resp.json()
            return body
    except (aiohttp.ClientError, OSError, ValueError):
        return {}


# --- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    import aiohttp
    from sqlalchemy import select

    from bench.cpu import CpuWatch, asterisk_pid, pid_of, threads_cpu_s
    from bench.sim_phones import asterisk_kind
    from cti.ami.protocol import Message
    from cti.store.db import Database
    from cti.store.migrate import upgrade
    from cti.store.models import Call as CallRow
    from cti.store.tokens import create_token
    from tests.acceptance.harness import (
        ami_client,
        free_port,
        reset_asterisk,
        start_test_asterisk,
        stop_test_asterisk,
        wait_for,
    )
    from tests.acceptance.traffic import read_truth

    work = Path(tempfile.mkdtemp(prefix="cti-cluster-bench-"))
    pg_name = f"cti_bench_{secrets.token_hex(4)}"
    stream = f"CTI_BENCH_{uuid.uuid4().hex[:8]}"
    phones = "sending audio all call long" if args.media else "quiet"
    print(f"# starting Asterisk (calls={args.calls}, desktops={args.desktops}, "
          f"simulated phones {phones}) ...", flush=True)  # fmt: skip
    kind = asterisk_kind(args.media)
    inst = await asyncio.to_thread(lambda: start_test_asterisk("-bench", kind=kind))
    ami = ami_client(inst)
    nodes: list[Node] = []
    started_at = time.time()
    try:
        await ami.start()
        await ami.wait_connected(timeout=15)
        await reset_asterisk(inst, ami)
        await _pg(f'CREATE DATABASE "{pg_name}"')
        db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
        await asyncio.to_thread(upgrade, db_url)
        db = Database.from_url(db_url)
        tokens = {f"b{1000 + i}": "" for i in range(args.desktops)}
        for name in tokens:
            tokens[name] = await create_token(db, name, "agent")
        for name in tokens:
            await ami.send_action(
                "QueueAdd",
                {"Queue": "support", "Interface": f"Local/{name[1:]}@cti-sim-agents/n",
                 "MemberName": name},
            )  # fmt: skip
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": str(args.ring)})
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(args.talk)})
        spec = inst.spec
        ports = {"n1": free_port(), "n2": free_port()}

        def conf(node: str) -> str:
            return (
                f'[ami]\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
                f'secret = "{spec.ami_secret}"\naction_timeout = 10.0\nreconnect_max_s = 0.5\n'
                f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{inst.log_dir}"\n'
                f'etc_dir = "{inst.etc_dir}"\n'
                f'[database]\nurl = "{db_url}"\n'
                f"[http]\nport = {ports[node]}\n[agi]\nport = {spec.agi_port}\n"
                f'[cluster]\nbroker_url = "{NATS_URL}"\nnode = "{node}"\nserver = "a"\n'
                f'stream = "{stream}"\n[log]\nformat = "json"\n'
            )

        n1, n2 = Node(work, "n1", conf("n1")), Node(work, "n2", conf("n2"))
        nodes += [n1, n2]
        rang: dict[tuple[str, str], float] = {}

        def on_ami(msg: Message) -> None:
            if msg.event == "AgentCalled":
                rang.setdefault((msg.get("Linkedid", ""), msg.get("MemberName", "")), time.time())

        ami.add_event_handler(on_ami)

        async with aiohttp.ClientSession() as http:

            async def drives(port: int) -> bool:
                h = await health(http, port)
                return h.get("role") == "driver" and h.get("ami") == "connected"

            await n1.start()
            await wait_for(lambda: drives(ports["n1"]), timeout=60, what="n1 to drive")

            async def burst(layout: dict[str, str], label: str) -> None:
                spec_file, out_file = work / f"{label}.json", work / f"{label}-seen.json"
                await asyncio.to_thread(
                    spec_file.write_text,
                    json.dumps({a: [layout[a], t] for a, t in tokens.items()}),
                )
                clients = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--client", str(spec_file), str(out_file),
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                assert clients.stdout is not None and clients.stdin is not None
                line = (await asyncio.wait_for(clients.stdout.readline(), 120)).decode()
                if line.strip() != "READY":
                    raise RuntimeError(f"desktops failed: {line!r}")
                # who uses the 2 cores during the burst: the nodes, Asterisk, the desktops'
                # process, the broker (the machine's: other sessions' use included), this one
                driver = n1.proc.pid if n1.proc is not None else None
                standby = n2.proc.pid if n2.proc is not None else None
                watch = CpuWatch({
                    "driver": driver, "standby": standby, "asterisk": asterisk_pid(inst),
                    "desktops": clients.pid, "broker": pid_of("nats-server"),
                    "bench": os.getpid(),
                })  # fmt: skip
                main0 = threads_cpu_s(driver).get("main", 0.0) if driver else 0.0
                watch.start()
                originated: list[str] = []
                gap = 1.0 / args.rate
                t0 = next_at = time.monotonic()
                for i in range(args.calls):
                    next_at += gap
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    tag = label.replace(" ", "")
                    linkedid = f"{spec.system_name}-{tag}{i}-{secrets.token_hex(3)}"
                    originated.append(linkedid)
                    await ami.send_action(
                        "Originate",
                        {"Channel": "Local/4008001234@cti-inbound",
                         "Context": "cti-sim-caller", "Exten": "s", "Priority": "1",
                         "CallerID": f"139{i:08d}",
                         "Variable": [f"CTI_SIM_HOLD={args.ring + args.talk + 20}"],
                         "Async": "true", "ChannelId": linkedid,
                         "OtherChannelId": linkedid + "-2"},
                    )  # fmt: skip
                ours = set(originated)

                async def all_rang() -> bool:
                    return len({lid for lid, _ in rang if lid in ours}) >= len(ours)

                with contextlib.suppress(AssertionError):
                    await wait_for(all_rang, timeout=args.ring + 30, what="rings", every=0.05)
                await asyncio.sleep(5.0)  # the last pops reach the desktops
                used, machine = watch.stop()
                main = threads_cpu_s(driver).get("main", 0.0) - main0 if driver else 0.0
                cpu_wall = time.monotonic() - t0
                clients.stdin.close()
                await asyncio.wait_for(clients.wait(), 60)
                seen = json.loads(await asyncio.to_thread(out_file.read_text))
                pop_at: dict[tuple[str, str], float] = {}
                for t, agent, lid in seen["pops"]:
                    if lid in ours:
                        pop_at.setdefault((lid, agent), t)
                ms = [(t - rang[k]) * 1000 for k, t in pop_at.items() if k in rang]
                missing = sum(1 for k in rang if k[0] in ours and k not in pop_at)
                window = max((t for t in pop_at.values()), default=0) - min(
                    (rang[k] for k in pop_at if k in rang), default=0
                )
                span = time.monotonic() - t0
                print(f"# {label}: {len(ours)} calls at {args.rate:g}/s in {span:.1f} s, "
                      f"{len(pop_at)} pops", flush=True)  # fmt: skip
                print(f"{label} pops/s: {len(pop_at) / window if window > 0 else 0:.1f} /s")
                print(f"{label} pop p50: {pct(ms, 0.5):.1f} ms")
                print(f"{label} pop p99: {pct(ms, 0.99):.1f} ms")
                print(f"{label} rings without a pop: {missing} calls")
                urls = set(layout.values())
                if len(urls) > 1:  # the desktops on the driver, and on the other node
                    for url in sorted(urls, key=lambda u: not u.endswith("#driver")):
                        name = url.rsplit("#", 1)[1]
                        part = [(t - rang[k]) * 1000 for k, t in pop_at.items()
                                if k in rang and layout[k[1]] == url]  # fmt: skip
                        print(f"{label} pop p99 on the {name}: {pct(part, 0.99):.1f} ms")
                # CPU seconds over the burst and the 5 s after it (the rest is other work)
                for part_name, sec in used.items():
                    print(f"{label} cpu {part_name}: {sec:.1f} s")
                print(f"{label} cpu driver main thread: {main:.1f} s")
                print(f"{label} cpu machine: {machine:.1f} s")
                # the machine's CPU none of the parts above used: other sessions' work
                print(f"{label} cpu other work: {machine - sum(used.values()):.1f} s")
                print(f"{label} cpu available: {cpu_wall * (os.cpu_count() or 1):.1f} s")

            one = f"ws://127.0.0.1:{ports['n1']}/ws#driver"
            two = f"ws://127.0.0.1:{ports['n2']}/ws#standby"
            await burst(dict.fromkeys(tokens, one), "one node")
            await n2.start()
            await wait_for(
                lambda: _is(health(http, ports["n2"]), "standby"), timeout=60, what="n2 up"
            )
            split = {a: (one if i % 2 == 0 else two) for i, a in enumerate(tokens)}
            await burst(split, "two nodes")

            # the takeover: kill the driver while calls come in
            gap = 1.0 / max(1.0, args.rate / 4)
            for i in range(args.takeover_calls):
                await ami.send_action(
                    "Originate",
                    {"Channel": "Local/4008001234@cti-inbound", "Context": "cti-sim-caller",
                     "Exten": "s", "Priority": "1", "CallerID": f"138{i:08d}",
                     "Variable": [f"CTI_SIM_HOLD={2 + i % 4}"], "Async": "true"},
                )  # fmt: skip
                if i == args.takeover_calls // 2:
                    await n1.kill()
                    t_kill = time.monotonic()
                    await wait_for(lambda: drives(ports["n2"]), timeout=30, what="takeover",
                                   every=0.02)  # fmt: skip
                    print(f"takeover: {time.monotonic() - t_kill:.2f} s")
                await asyncio.sleep(gap)

        # every call in the CDR has exactly one row
        async def quiet() -> bool:
            out = await asyncio.to_thread(inst.cli, "core show channels count")
            return re.search(r"^0 active channels", out, re.M) is not None

        await wait_for(quiet, timeout=args.ring + args.talk + 90, what="calls to end", every=0.5)
        truth = await asyncio.to_thread(read_truth, inst.cdr_csv, inst.queue_log, started_at - 1)

        async def recorded() -> list[str]:
            async with db.session() as s:
                found = list((await s.scalars(select(CallRow.linkedid))).all())
            return found if set(truth) <= set(found) else []

        # a call is written up to ~10 s after it ends (talk time awaited, CDR line awaited)
        with contextlib.suppress(AssertionError):
            await wait_for(recorded, timeout=30, what="the rows", every=0.5)
        await asyncio.sleep(2)  # anything that would write twice has had its chance
        async with db.session() as s:
            rows = (await s.scalars(select(CallRow.linkedid))).all()
        await db.dispose()
        counts: dict[str, int] = {}
        for lid in rows:
            counts[lid] = counts.get(lid, 0) + 1
        lost = sum(1 for lid in truth if counts.get(lid, 0) == 0)
        dup = sum(1 for lid in truth if counts.get(lid, 0) > 1)
        print(f"# {len(truth)} calls in the CDR, {len(rows)} call rows")
        for lid in sorted(lid for lid in truth if counts.get(lid, 0) == 0)[:10]:
            t = truth[lid]
            print(f"# lost {lid}: {t.started_at:.2f}-{t.ended_at:.2f} {t.lastapps}")
        print(f"lost records: {lost}")
        print(f"duplicate records: {dup}")
    finally:
        for node in nodes:
            await node.stop()
        await ami.close()
        await asyncio.to_thread(stop_test_asterisk, inst)
        with contextlib.suppress(Exception):
            await _pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            import nats

            nc = await nats.connect(NATS_URL, connect_timeout=5)
            await nc.jetstream().delete_stream(stream)
            await nc.close()
        if args.keep:
            print(f"# kept {work}")
        else:
            await asyncio.to_thread(shutil.rmtree, work, True)


async def _is(health_call: Any, role: str) -> bool:
    h: dict[str, Any] = await health_call
    return h.get("role") == role


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        asyncio.run(run_clients(Path(sys.argv[2]), Path(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per layout")
    parser.add_argument("--desktops", type=int, default=500, help="connected desktops (agents)")
    parser.add_argument("--rate", type=float, default=40, help="calls per second")
    parser.add_argument("--ring", type=float, default=1, help="seconds a phone rings")
    parser.add_argument("--talk", type=float, default=5, help="seconds of talk")
    parser.add_argument("--takeover-calls", type=int, default=40, help="calls around the kill")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (node logs)")
    parser.add_argument(
        "--media", action="store_true",
        help="simulated phones send silence all call long (transmit_silence = yes): "
        "Asterisk's media then takes most of a 2-core machine (bench/sim_phones.py)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.desktops < args.calls:
        parser.error("need at least as many desktops as calls (one agent answers per call)")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
