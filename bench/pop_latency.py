"""Ring -> pop latency: N concurrent calls, M connected desktops, real Asterisk.

The real Asterisk is started the way the acceptance tests start it (tests/acceptance/
harness.py: the cached root, unshare + chroot, free ports). The daemon (CRM + desktop
features) runs in this process; the M desktops are websocket clients in another process
(this file with ``--client``). M agents are queue members of ``support`` on simulated
phones (Local/<ext>@cti-sim-agents, MemberName = the agent's token name); every caller is
a known customer, so every pop carries a card looked up in the CRM store. N calls are
originated at once into the inbound context and each rings one agent.

Printed per pop (first pop of a call at an agent):
- from the AMI event's arrival: AgentCalled read off the AMI socket in this process
  (a handler placed before the daemon's) -> the desktop process received the pop;
- from origination: the Originate sent -> the pop received (includes Asterisk's dialplan
  and queue time, so it is mostly Asterisk's figure);
and the CPU used by this process (the daemon, plus the bench's own originate loop) and by
Asterisk during the run. Target: p99 <= 50 ms from the AMI event.

    .venv/bin/python bench/pop_latency.py [--calls 200] [--desktops 500] [--ring 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- the desktops (another process) -------------------------------------------------------


async def run_clients(url: str, tokens_file: Path, out_file: Path) -> None:
    """Connect every token's desktop, record when each pop arrives, stop on stdin EOF."""
    import aiohttp

    tokens: dict[str, str] = json.loads(await asyncio.to_thread(tokens_file.read_text))
    received: list[tuple[float, str, str, int]] = []
    carded: list[tuple[float, str, str]] = []  # when the customer card was on the desktop
    ready = 0

    async def desktop(http: aiohttp.ClientSession, agent: str, token: str) -> None:
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
                    if ready == len(tokens):
                        print("READY", flush=True)
                elif data.get("type") == "pop":
                    card = 1 if data.get("customer") else 0
                    received.append((now, agent, str(data.get("linkedid")), card))
                    if card:
                        carded.append((now, agent, str(data.get("linkedid"))))
                elif data.get("type") == "call.update" and data.get("customer"):
                    carded.append((now, agent, str(data.get("linkedid"))))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [asyncio.create_task(desktop(http, a, t)) for a, t in tokens.items()]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(out_file.write_text, json.dumps([received, carded]))


# --- CPU of a process tree ------------------------------------------------------------------


def _tree_cpu_s(pid: int) -> float:
    """utime + stime (s) of ``pid`` and its descendants (Asterisk runs under unshare)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(c for c, pp in parents.items() if pp == p)
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    import aiohttp

    from crm_bridge.feature import CrmFeature
    from cti.ami.protocol import Message
    from cti.config import (
        AgiConfig,
        AmiConfig,
        AsteriskConfig,
        DatabaseConfig,
        HttpConfig,
        Settings,
    )
    from cti.daemon import Daemon
    from cti.features import Feature
    from cti.store.tokens import create_token
    from desktop.feature import DesktopFeature
    from tests.acceptance.harness import (
        ami_client,
        reset_asterisk,
        start_test_asterisk,
        stop_test_asterisk,
        wait_for,
    )

    if args.debug_loop:
        import logging

        logging.basicConfig(level=logging.WARNING)
        asyncio.get_running_loop().slow_callback_duration = 0.02
    work = Path(tempfile.mkdtemp(prefix="cti-pop-bench-"))
    print(f"starting Asterisk (calls={args.calls}, desktops={args.desktops}) ...", flush=True)
    inst = await asyncio.to_thread(start_test_asterisk)
    client_proc: asyncio.subprocess.Process | None = None
    daemon: Daemon | None = None
    ami = ami_client(inst)
    try:
        await ami.start()
        await ami.wait_connected(timeout=15)
        await reset_asterisk(inst, ami)
        db_url = args.db or f"sqlite+aiosqlite:///{work / 'cti.db'}"
        settings = Settings(
            ami=AmiConfig(
                port=inst.spec.ami_port, username=inst.spec.ami_user,
                secret=inst.spec.ami_secret, action_timeout=10.0,
            ),
            asterisk=AsteriskConfig(instance=inst.spec.name, log_dir=inst.log_dir),
            database=DatabaseConfig(url=db_url), http=HttpConfig(port=0),
            agi=AgiConfig(port=inst.spec.agi_port),
        )  # fmt: skip
        features: list[Feature] = (
            [DesktopFeature()] if args.no_crm else [CrmFeature(), DesktopFeature()]
        )
        daemon = Daemon(settings, features=features)
        await daemon.start()
        await daemon.ami.wait_connected(timeout=15)
        desktop_feature = daemon.features[-1]
        assert isinstance(desktop_feature, DesktopFeature) and desktop_feature.notifier

        # AgentCalled arrival, before the daemon's own handler sees it
        arrived: dict[tuple[str, str], float] = {}

        def on_ami(msg: Message) -> None:
            if msg.event == "AgentCalled":
                key = (msg.get("Linkedid", ""), msg.get("MemberName", ""))
                arrived.setdefault(key, time.time())

        daemon.ami.add_event_handler(on_ami, first=True)

        # agents (tokens + queue members) and customers
        print("creating agents, members and customers ...", flush=True)
        admin = await create_token(daemon.db, "bench-admin", "admin")
        tokens: dict[str, str] = {}
        for i in range(args.desktops):
            name = f"b{1000 + i}"
            tokens[name] = await create_token(daemon.db, name, "agent")
        for name in tokens:
            await ami.send_action(
                "QueueAdd",
                {"Queue": "support", "Interface": f"Local/{name[1:]}@cti-sim-agents/n",
                 "MemberName": name},
            )  # fmt: skip
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": str(args.ring)})
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(args.talk)})
        callers = [f"139{i:08d}" for i in range(args.calls)]
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with aiohttp.ClientSession() as http:
            for i, number in enumerate([] if args.no_crm else callers):
                async with http.post(
                    base + "/api/v1/customers",
                    json={"name": f"客户{i}", "company": "Bench", "tier": "vip",
                          "phones": [number], "force": True},
                    headers={"Authorization": f"Bearer {admin}"},
                ) as resp:  # fmt: skip
                    if resp.status != 201:
                        raise RuntimeError(f"customer: {resp.status} {await resp.text()}")

        # the desktops, in another process
        tokens_file, out_file = work / "tokens.json", work / "received.json"
        await asyncio.to_thread(tokens_file.write_text, json.dumps(tokens))
        client_proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", f"ws://127.0.0.1:{daemon.http_port}/ws",
            str(tokens_file), str(out_file),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert client_proc.stdout is not None
        line = (await client_proc.stdout.readline()).decode()
        if line.strip() != "READY":
            raise RuntimeError(f"desktop clients failed: {line!r}")
        print(f"{len(daemon.hub.connections)} desktops connected", flush=True)

        # when each pop frame is written to its socket (the hub's sender task ran)
        written: dict[tuple[str, str], float] = {}
        prefix = '{"type": "pop", "linkedid": "'

        def timed_send(agent: str, send: Any) -> Any:
            async def send_str(text: str, *a: Any, **kw: Any) -> None:
                await send(text, *a, **kw)
                if text.startswith(prefix):
                    linkedid = text[len(prefix) : text.index('"', len(prefix))]
                    written.setdefault((linkedid, agent), time.time())

            return send_str

        for conn in daemon.hub.connections:
            conn.ws.send_str = timed_send(conn.principal.name, conn.ws.send_str)  # type: ignore[method-assign]

        # event-loop lag of this process (a stalled loop delays every frame)
        lags: list[float] = []

        async def probe() -> None:
            while True:
                t0 = time.monotonic()
                await asyncio.sleep(0.005)
                lags.append((time.monotonic() - t0 - 0.005) * 1000)

        # the calls
        ast_pid = inst._pid()
        ast0 = await asyncio.to_thread(_tree_cpu_s, ast_pid) if ast_pid else 0.0
        cpu0, wall0 = time.process_time(), time.monotonic()
        prober = asyncio.create_task(probe())
        originated: dict[str, float] = {}
        notifier = desktop_feature.notifier
        sent0 = notifier.pops_sent
        handed: dict[tuple[str, str], float] = {}  # when the daemon handed the pop to the hub
        hub_pop = notifier.pop

        def timed_pop(agent: str, linkedid: str, at: Any, message: dict[str, Any]) -> None:
            handed.setdefault((linkedid, agent), time.time())
            hub_pop(agent, linkedid, at, message)

        notifier.pop = timed_pop  # type: ignore[method-assign]
        gap = 1.0 / args.rate if args.rate > 0 else 0.0
        next_at = time.monotonic()
        for number in callers:
            if gap:
                next_at += gap
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            linkedid = f"bench-{secrets.token_hex(6)}"
            originated[linkedid] = time.time()
            await ami.send_action(
                "Originate",
                {"Channel": "Local/4008001234@cti-inbound", "Context": "cti-sim-caller",
                 "Exten": "s", "Priority": "1", "CallerID": number,
                 "Variable": [f"CTI_SIM_HOLD={args.ring + args.talk + 30}"], "Async": "true",
                 "ChannelId": linkedid, "OtherChannelId": linkedid + "-2"},
            )  # fmt: skip

        async def all_popped() -> bool:
            return bool(notifier.pops_sent - sent0 >= int(args.calls))

        try:
            await wait_for(all_popped, timeout=60 + args.calls * 0.2, what="every pop", every=0.05)
        except AssertionError as exc:
            print(f"WARNING: {exc} ({notifier.pops_sent - sent0} of {args.calls})", flush=True)
        wall = time.monotonic() - wall0
        prober.cancel()
        cpu = time.process_time() - cpu0
        ast1 = await asyncio.to_thread(_tree_cpu_s, ast_pid) if ast_pid else float("nan")
        ast_cpu = ast1 - ast0
        await asyncio.sleep(1.0)  # let the last frames reach the clients
        assert client_proc.stdin is not None
        client_proc.stdin.close()
        await asyncio.wait_for(client_proc.wait(), 60)
        received, carded = json.loads(await asyncio.to_thread(out_file.read_text))
        pops = desktop_feature.pops
        assert pops is not None
        late = pops.lookups_late

        from_event: list[float] = []
        from_origin: list[float] = []
        seen: set[tuple[str, str]] = set()
        with_card = 0
        for t, agent, linkedid, card in received:
            key = (linkedid, agent)
            if key in seen or linkedid not in originated:
                continue
            seen.add(key)
            with_card += card
            if key in arrived:
                from_event.append((t - arrived[key]) * 1000)
            from_origin.append((t - originated[linkedid]) * 1000)

        cards = len(seen)
        in_daemon = [(handed[k] - arrived[k]) * 1000 for k in seen if k in handed and k in arrived]
        to_socket = [
            (written[k] - arrived[k]) * 1000 for k in seen if k in written and k in arrived
        ]
        card_from_event: list[float] = []
        card_seen: set[tuple[str, str]] = set()
        for t, agent, linkedid in carded:
            key = (linkedid, agent)
            if key in card_seen or key not in arrived:
                continue
            card_seen.add(key)
            card_from_event.append((t - arrived[key]) * 1000)
        print()
        rate = f"{args.rate:g}/s" if args.rate > 0 else "all at once"
        print(
            f"calls originated        {args.calls} ({rate}; "
            f"ring {args.ring:g} s, talk {args.talk:g} s)"
        )
        print(f"desktops connected      {args.desktops} (clients in another process)")
        print(
            f"pops received           {cards}; with the card in the pop {with_card}, "
            f"card sent in an update after the ring {late}"
        )
        print(
            f"ring->pop from AMI event  p50 {pct(from_event, 0.5):7.1f} ms   "
            f"p99 {pct(from_event, 0.99):7.1f} ms   max {max(from_event, default=0):7.1f} ms   "
            f"(n={len(from_event)})"
        )
        print(
            f"  of which in the daemon  p50 {pct(in_daemon, 0.5):7.1f} ms   "
            f"p99 {pct(in_daemon, 0.99):7.1f} ms   (AMI event read -> pop handed to the hub)"
        )
        print(
            f"  written to the socket   p50 {pct(to_socket, 0.5):7.1f} ms   "
            f"p99 {pct(to_socket, 0.99):7.1f} ms   (AMI event read -> frame written)"
        )
        print(
            f"  event-loop lag (5 ms probe) p50 {pct(lags, 0.5):5.1f} ms   "
            f"p99 {pct(lags, 0.99):7.1f} ms   max {max(lags, default=0):7.1f} ms"
        )
        print(
            f"ring->pop from originate  p50 {pct(from_origin, 0.5):7.1f} ms   "
            f"p99 {pct(from_origin, 0.99):7.1f} ms   max {max(from_origin, default=0):7.1f} ms"
        )
        print(
            f"ring->card from AMI event p50 {pct(card_from_event, 0.5):7.1f} ms   "
            f"p99 {pct(card_from_event, 0.99):7.1f} ms   "
            f"max {max(card_from_event, default=0):7.1f} ms   (n={len(card_from_event)})"
        )
        if from_event:
            print(f"mean from AMI event       {statistics.fmean(from_event):7.1f} ms")
        print(
            f"daemon process CPU       {cpu:.2f} s over {wall:.2f} s = {100 * cpu / wall:.0f} % "
            "of one core (includes the bench's originate loop)"
        )
        print(f"Asterisk CPU             {ast_cpu:.2f} s = {100 * ast_cpu / wall:.0f} % of a core")
        target = pct(from_event, 0.99) <= 50
        print(f"target p99 <= 50 ms from the AMI event: {'MET' if target else 'NOT MET'}")
    finally:
        if client_proc is not None and client_proc.returncode is None:
            client_proc.kill()
            await client_proc.wait()
        if daemon is not None:
            await daemon.stop()
        await ami.close()
        await asyncio.to_thread(stop_test_asterisk, inst)
        await asyncio.to_thread(shutil.rmtree, work, True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, tokens_file, out_file = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        asyncio.run(run_clients(url, tokens_file, out_file))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="concurrent calls (N)")
    parser.add_argument("--desktops", type=int, default=500, help="connected desktops (M)")
    parser.add_argument("--ring", type=float, default=4, help="seconds a phone rings")
    parser.add_argument("--talk", type=float, default=15, help="seconds of talk")
    parser.add_argument(
        "--rate", type=float, default=40, help="calls originated per second (0: all at once)"
    )
    parser.add_argument("--db", default="", help="database URL (default: a temp SQLite)")
    parser.add_argument(
        "--no-crm", action="store_true", help="baseline: no CRM feature (pops without cards)"
    )
    parser.add_argument(
        "--debug-loop", action="store_true", help="log callbacks that hold the loop > 20 ms"
    )
    args = parser.parse_args()
    if args.desktops < args.calls:
        parser.error("need at least as many desktops as calls (one agent rings per call)")
    asyncio.run(run(args), debug=args.debug_loop)


if __name__ == "__main__":
    main()
