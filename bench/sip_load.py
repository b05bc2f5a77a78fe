"""SIP load: real SIP callers through the IVR into a queue answered by real SIP phones,
recording on (issue #14 benchmark).

- a real Asterisk (started as the acceptance tests start it) and the daemon as its own
  ``cti run`` process with every installed feature, on a fresh SQLite file;
- ``--agents`` ACD agents, each with a SIP phone provisioned through the API; the phones
  register with their provisioned credentials (SIPp, digest auth, one after the other)
  from one UDP port where one SIPp UAS then answers for all of them (rings 0.5 s, answers,
  talks: a 440 Hz tone over RTP, until the caller's BYE); the agents log in (their queue
  member is PJSIP/<phone>);
- SIPp callers (``-sn uac``) dialling the inbound number: the IVR (FastAGI, the daemon)
  hands them to queue ``support`` (no menus), where a phone answers; each call talks
  ``--talk`` s; ``--concurrent`` calls at a time, ``--calls`` in all, at ``--rate``/s.
  Every answered call is recorded (MixMonitor, policy always).

Printed (``name: value unit``): calls placed / answered (SIPp) / failed, call rows and
answered rows in the store, CDR linkedids (must equal the rows), recordings vs answered
rows, the daemon's and Asterisk's CPU over the load (% of one core), and as the baseline
of the same run the daemon's CPU while idle with every phone registered (the calls cannot
run without the daemon: the IVR is its FastAGI).

    .venv/bin/python bench/sip_load.py [--calls 400] [--concurrent 200] [--agents 200]
        [--rate 20] [--talk 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIPP = ROOT / "tests" / "acceptance" / "sipp"


def proc_cpu_s(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and all its descendants (Asterisk under unshare)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += proc_cpu_s(pid)
        todo += children.get(pid, [])
    return total


def _ulaw(sample: int) -> int:
    """G.711 mu-law of one 16-bit sample."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_tone(hz: float, seconds: float) -> bytes:
    """Raw 8 kHz mu-law audio of a sine tone (SIPp's rtp_stream plays it)."""
    return bytes(
        _ulaw(int(8000 * math.sin(2 * math.pi * hz * i / 8000))) for i in range(int(8000 * seconds))
    )


def sipp_stats(path: Path) -> dict[str, int]:
    """The last line of a SIPp -trace_stat file: cumulative counters."""
    with path.open() as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    head, last = rows[0], rows[-1]
    out = {}
    for key in ("TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)"):
        out[key] = int(last[head.index(key)])
    return out


def start_asterisk(rtp_ports: int) -> Any:
    """The acceptance tests' instance, with room for this many RTP ports (each call has
    two legs, each an RTP and an RTCP port)."""
    from cti.asterisk.instance import ChrootAsterisk, InstanceSpec
    from cti.asterisk.rootfs import ensure_root
    from tests.acceptance.harness import DIALPLANS, free_port

    rtp = 30000 + secrets.randbelow(20) * 1000
    spec = InstanceSpec(
        name=f"test-{os.getpid()}", ami_secret=secrets.token_hex(16), ami_port=free_port(),
        sip_port=free_port(socket.SOCK_DGRAM), http_port=free_port(), rtp_start=rtp,
        rtp_end=rtp + rtp_ports, agi_port=free_port(),
    )  # fmt: skip
    inst = ChrootAsterisk(ensure_root(lambda msg: print(f"# {msg}", flush=True)), spec, DIALPLANS)
    inst.start(tie_to_parent=True)
    inst.wait_fully_booted(30)
    return inst


async def run(args: argparse.Namespace) -> None:
    import aiohttp
    from sqlalchemy import func, select

    from cti.store.db import Database
    from cti.store.migrate import upgrade
    from cti.store.models import Call
    from cti.store.tokens import create_token
    from recordings.models import Recording
    from tests.acceptance.harness import (
        ami_client,
        free_port,
        reset_asterisk,
        stop_test_asterisk,
        wait_for,
    )
    from tests.acceptance.sip_phones import sipp_register

    work = Path(tempfile.mkdtemp(prefix="cti-sip-bench-"))
    print(f"# starting Asterisk (agents={args.agents}, concurrent={args.concurrent}) ...",
          flush=True)  # fmt: skip
    inst = await asyncio.to_thread(start_asterisk, 8 * args.concurrent + 200)
    procs: list[asyncio.subprocess.Process] = []
    daemon: asyncio.subprocess.Process | None = None
    ami = ami_client(inst)
    try:
        await ami.start()
        await ami.wait_connected(timeout=15)
        await reset_asterisk(inst, ami)
        db_url = f"sqlite+aiosqlite:///{work / 'cti.db'}"
        await asyncio.to_thread(upgrade, db_url)
        db = Database.from_url(db_url)
        admin = await create_token(db, "bench-admin", "admin")

        spec, http_port = inst.spec, free_port()
        conf, log_file = work / "cti.toml", work / "cti.log"
        conf.write_text(
            f'[ami]\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
            f'secret = "{spec.ami_secret}"\naction_timeout = 10.0\n'
            f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{inst.log_dir}"\n'
            f'etc_dir = "{inst.etc_dir}"\n'
            f'[database]\nurl = "{db_url}"\n'
            f"[http]\nport = {http_port}\n[agi]\nport = {spec.agi_port}\n"
            '[log]\nformat = "json"\n'
            f'[ivr]\nmenus = "{work / "menus.toml"}"\n'
        )
        with log_file.open("wb") as log_fh:
            daemon = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cti.cli", "--config", str(conf), "run",
                stdout=log_fh, stderr=log_fh, cwd=str(ROOT),
            )  # fmt: skip
        base = f"http://127.0.0.1:{http_port}"
        headers = {"Authorization": f"Bearer {admin}"}

        async def daemon_up() -> bool:
            if daemon is not None and daemon.returncode is not None:
                raise RuntimeError(f"cti run exited: {log_file.read_text()[-2000:]}")
            return "AMI connected" in log_file.read_text("utf-8", "replace")

        await wait_for(daemon_up, timeout=60, what="cti run to start", every=0.2)
        print(f"# provisioning {args.agents} agents with SIP phones ...", flush=True)
        users: list[tuple[str, str, str]] = []  # agent, phone, password
        async with aiohttp.ClientSession(headers=headers) as http:
            for i in range(args.agents):
                agent = f"s{1000 + i}"
                async with http.put(base + f"/api/v1/acd/agents/{agent}",
                                    json={"skills": {"support": 0}}) as r:  # fmt: skip
                    if r.status != 200:
                        raise RuntimeError(f"agent: {r.status} {await r.text()}")
                async with http.post(base + "/api/v1/phones",
                                     json={"agent": agent, "kind": "sip"}) as r:  # fmt: skip
                    body = await r.json()
                    if r.status != 201:
                        raise RuntimeError(f"phone: {r.status} {body}")
                users.append((agent, body["phone"]["name"], body["credentials"]["password"]))

            phone_port = free_port(socket.SOCK_DGRAM)
            (work / "tone.ulaw").write_bytes(ulaw_tone(440, 2.0))  # what the phones say
            for _, phone, password in users:  # one REGISTER each, all from phone_port
                ok, _, out = await sipp_register(inst, phone, password, cwd=work, port=phone_port)
                if not ok:
                    raise RuntimeError(f"registration of {phone} failed:\n{out[-2000:]}")
            uas = await asyncio.create_subprocess_exec(
                "sipp", "-sf", str(SIPP / "uas_phone_talks.xml"), "-i", "127.0.0.1",
                "-p", str(phone_port), "-mp", str(free_port(socket.SOCK_DGRAM)),
                "-nostdin", "-timeout", str(args.talk * 4 + 600),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=work,
            )  # fmt: skip
            procs.append(uas)

            async def all_registered() -> bool:
                async with http.get(base + "/api/v1/phones") as r:
                    phones = (await r.json())["phones"]
                return sum(p["registered"] for p in phones) == len(users)

            await wait_for(all_registered, timeout=60, what="every phone registered", every=0.5)
            for agent, _, _ in users:
                async with http.post(base + f"/api/v1/acd/agents/{agent}/status",
                                     json={"status": "available"}) as r:  # fmt: skip
                    if r.status != 200:
                        raise RuntimeError(f"login: {r.status} {await r.text()}")
        print(f"# {len(users)} phones registered and logged in", flush=True)

        assert daemon is not None
        pid_ast = inst._pid() or 0
        idle0, t0 = proc_cpu_s(daemon.pid), time.monotonic()
        await asyncio.sleep(5)
        idle_pct = 100 * (proc_cpu_s(daemon.pid) - idle0) / (time.monotonic() - t0)

        stat_file = work / "uac_stats.csv"
        print(f"# placing {args.calls} calls ({args.concurrent} at a time, {args.rate}/s, "
              f"{args.talk} s each) ...", flush=True)  # fmt: skip
        d0, a0, t0 = proc_cpu_s(daemon.pid), tree_cpu_s(pid_ast), time.monotonic()
        uac = await asyncio.create_subprocess_exec(
            "sipp", "-sn", "uac", "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
            "-mp", str(free_port(socket.SOCK_DGRAM)), "-s", "4008001234",
            "-d", str(args.talk * 1000), "-m", str(args.calls), "-l", str(args.concurrent),
            "-r", str(args.rate), "-nostdin", "-timeout", str(args.talk * 4 + 600),
            "-trace_stat", "-stf", str(stat_file), "-fd", "1", f"127.0.0.1:{spec.sip_port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=work,
        )  # fmt: skip
        procs.append(uac)
        await uac.wait()
        elapsed = time.monotonic() - t0
        d_pct = 100 * (proc_cpu_s(daemon.pid) - d0) / elapsed
        a_pct = 100 * (tree_cpu_s(pid_ast) - a0) / elapsed
        stats = sipp_stats(stat_file)

        async def rows() -> tuple[int, int]:
            async with db.session() as s:
                total = (await s.execute(select(func.count()).select_from(Call))).scalar_one()
                answered = (
                    await s.execute(select(func.count()).where(Call.disposition == "answered"))
                ).scalar_one()
            return total, answered

        async def settled() -> bool:
            total, _ = await rows()
            return total >= stats["TotalCallCreated"]

        with contextlib.suppress(AssertionError):
            await wait_for(settled, timeout=60, what="the call rows", every=1)
        total, answered = await rows()
        with inst.cdr_csv.open(newline="") as fh:
            cdr_ids = {row[0] for row in csv.reader(fh) if row}

        async def recordings() -> int:
            async with db.session() as s:
                return (
                    await s.execute(
                        select(func.count(func.distinct(Recording.linkedid))).where(
                            Recording.status.in_(("ready", "processing", "recording"))
                        )
                    )
                ).scalar_one()

        with contextlib.suppress(AssertionError):

            async def all_recorded() -> bool:
                return await recordings() >= answered

            await wait_for(all_recorded, timeout=60, what="recordings", every=1)
        recorded = await recordings()
        await db.dispose()

        print(f"calls placed: {stats['TotalCallCreated']} calls")
        # completed: answered, talked and hung up, as SIPp counts them
        print(f"calls completed: {stats['SuccessfulCall(C)']} calls")
        print(f"calls failed: {stats['FailedCall(C)']} calls")
        print(f"call rows: {total} rows")
        print(f"call rows answered: {answered} rows")
        print(f"cdr linkedids: {len(cdr_ids)} calls")
        print(f"rows minus cdr: {total - len(cdr_ids)} calls")
        print(f"recordings: {recorded} calls")
        print(f"answered rows without recording: {answered - recorded} calls")
        print(f"daemon cpu idle (baseline): {idle_pct:.1f} %")
        print(f"daemon cpu under load: {d_pct:.1f} %")
        print(f"asterisk cpu under load: {a_pct:.1f} %")
        print(f"load duration: {elapsed:.1f} s")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if daemon is not None and daemon.returncode is None:
            daemon.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(daemon.wait(), 20)
        await ami.close()
        await asyncio.to_thread(stop_test_asterisk, inst)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# kept {work}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--concurrent", type=int, default=200)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--talk", type=int, default=30, help="seconds each answered call talks")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
