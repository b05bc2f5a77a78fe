"""The real Asterisk the acceptance tests run against (design.md §7), and helpers to drive it.

One instance per test session in the cached root, on free ports, tied to the pytest process
(PR_SET_PDEATHSIG) so a killed run leaves nothing behind; reset between tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import AsteriskError, ChrootAsterisk, InstanceSpec
from cti.asterisk.rootfs import ensure_root
from tests.checkout import PROJECT

DIALPLANS = PROJECT / "dialplans"
T = TypeVar("T")

#: ``db_url`` runs a test on SQLite and on PostgreSQL; a test marked with this runs on
#: SQLite only. For tests whose proof is Asterisk's or the page's behaviour, not the store's:
#: the store code they touch runs on PostgreSQL in another test of the module (named in the
#: module) or in tests/integration. Never on a test of the store itself.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


#: Where :func:`free_port` chooses: below the RTP ranges the test instances take (20000 and
#: up) and below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999).
FREE_PORTS = range(10000, 20000)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing holds now, for a server that binds it later.

    Not one the kernel hands out for ``bind(0)``: those come from the ephemeral range, the
    one every outgoing connection's local end comes from too, and with the suite's many
    connections one of them took a port between its choice here and Asterisk's bind (B's
    AMI did not listen, its client timed out after 20 s). Outside that range only another
    chooser can take it, and the two check by binding."""
    for _ in range(1000):
        port = FREE_PORTS.start + secrets.randbelow(len(FREE_PORTS))
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {FREE_PORTS}")


def free_media_ports() -> int:
    """A UDP port free with the three after it: SIPp's -mp is its audio RTP port and it
    binds the next ones too (RTCP, video); one of them taken aborts its call ('Unable to
    bind video RTP socket ... Address already in use')."""
    for _ in range(100):
        base = free_port(socket.SOCK_DGRAM)
        if base + 3 > 65535:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + 4):
                    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise AssertionError("no four free UDP ports in a row for SIPp's media")


def _remove_stale_instances(root: Path) -> None:
    """Instance dirs of earlier test runs whose process is gone: the session that made it
    (``test-<its pid>``: a session restarting its Asterisk has no Asterisk process for a
    moment, and a session creating one has no state file yet) and its Asterisk."""
    for base in (root / "srv" / "cti").glob("test-*"):
        owner = re.match(r"test-(\d+)", base.name)
        if owner is not None and Path(f"/proc/{owner[1]}").exists():
            continue
        state = base / "cti-runner.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = int(json.loads(state.read_text())["pid"])
            if Path(f"/proc/{pid}").exists():
                continue
        shutil.rmtree(base, ignore_errors=True)


def start_test_asterisk(
    suffix: str = "", *, kind: type[ChrootAsterisk] = ChrootAsterisk
) -> ChrootAsterisk:
    """The session's instance, or with ``suffix`` another named one (a second server).
    ``kind``: a ChrootAsterisk subclass (a benchmark's own settings)."""
    root = ensure_root(lambda msg: print(f"[asterisk] {msg}", flush=True))
    _remove_stale_instances(root)
    rtp = 20000 + secrets.randbelow(400) * 100
    spec = InstanceSpec(
        name=f"test-{os.getpid()}{suffix}",
        ami_secret=secrets.token_hex(16),
        ami_port=free_port(),
        sip_port=free_port(socket.SOCK_DGRAM),
        http_port=free_port(),
        rtp_start=rtp,
        rtp_end=rtp + 99,
        agi_port=free_port(),
    )
    inst = kind(root, spec, DIALPLANS)
    inst.start(tie_to_parent=True)
    inst.wait_fully_booted(30)
    _require_listening(spec.ami_port, f"{spec.name}'s AMI")
    return inst


def _require_listening(port: int, what: str) -> None:
    """Asterisk boots fully without a listener it could not bind: say so here, not as a
    client's timeout later."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError as exc:
        raise RuntimeError(f"{what} does not listen on port {port}: {exc}") from exc


def stop_test_asterisk(inst: ChrootAsterisk) -> None:
    inst.stop()
    shutil.rmtree(inst.base, ignore_errors=True)


def restart_test_asterisk(inst: ChrootAsterisk, *, kill: bool = False) -> None:
    """Stop (or SIGKILL) and start the same instance again, same ports and files."""
    if kill:
        inst.kill()
    else:
        inst.stop()
    inst.start(tie_to_parent=True)
    inst.wait_fully_booted(30)


def ami_client(inst: ChrootAsterisk, port: int | None = None) -> AmiClient:
    return AmiClient(
        "127.0.0.1", port or inst.spec.ami_port, inst.spec.ami_user, inst.spec.ami_secret,
        ping_interval=2.0, action_timeout=5.0, backoff_initial=0.1, backoff_max=0.5,
    )  # fmt: skip


#: How long each step of :func:`end_channels` waits for the channels to end before the next,
#: stronger one (a channel normally ends within a second of its hang-up, under load too).
HANGUP_STEP_S = 5.0


async def reset_asterisk(inst: ChrootAsterisk, ami: AmiClient) -> str | None:
    """Between tests: no channels (:func:`end_channels`: what it returns, returned), no
    dynamic members, default globals (no recording policy), fresh stats."""
    fault = await end_channels(inst, ami)
    if fault is not None:
        return fault  # restarted: no member, the dialplan's globals, no stats
    _, items = await ami.send_list_action("QueueStatus")
    for item in items:
        if item.get("Event") == "QueueMember" and item.get("Membership") == "dynamic":
            await ami.send_action(
                "QueueRemove", {"Queue": item["Queue"], "Interface": item["StateInterface"]}
            )
    for var, value in (("CTI_SIM_RING", "2"), ("CTI_SIM_TALK", "8")):
        await ami.send_action("Setvar", {"Variable": var, "Value": value})
    # no recording armed by the dialplan for a policy an earlier daemon published (0027)
    queues = sorted({i.get("Queue", "") for i in items if i.get("Event") == "QueueParams"})
    for var in ("CTI_REC_DEFAULT", *(f"CTI_REC_{q}" for q in queues if q)):
        await ami.send_action("Setvar", {"Variable": var, "Value": ""})
    await asyncio.to_thread(inst.cli, "queue reset stats")
    return None


async def end_channels(inst: ChrootAsterisk, ami: AmiClient) -> str | None:
    """End every channel of the session's instance, each step stronger than the last, so
    that whatever a test left, the next one starts on a working Asterisk with no channel:

    1. ``channel request hangup all``, then up to :data:`HANGUP_STEP_S` for them to end;
    2. an AMI ``Hangup`` of each channel left (Local channels too: each half by name) and
       ``BridgeDestroy`` of every bridge, then as long again;
    3. the instance killed and started again (same ports and files), when channels are
       still left (one in a FastAGI whose server holds the connection without answering
       outlives every hang-up: Asterisk waits on that socket, not on the channel) or when
       Asterisk does not answer (stopped, hung).

    Returns None when no restart was needed (or the instance was simply not running: a
    test stopped it, it is started again); else what was wrong (the channels left, each
    with its application and data, or Asterisk's silence), for the caller to report."""
    if not inst.is_running():
        await asyncio.to_thread(restart_test_asterisk, inst)
        await ami.wait_connected(timeout=30)
        return None
    try:
        await ami.wait_connected(timeout=15)
        if not await live_channels(ami):
            return None
        await asyncio.to_thread(inst.cli, "channel request hangup all")
        if not (left := await _channels_after(ami, HANGUP_STEP_S)):
            return None
        for channel in left:
            with contextlib.suppress(AmiActionError):  # ended meanwhile
                await ami.send_action("Hangup", {"Channel": channel["Channel"], "Cause": "16"})
        _, bridges = await ami.send_list_action("BridgeList")
        for bridge in bridges:
            if uid := bridge.get("BridgeUniqueid"):
                with contextlib.suppress(AmiActionError):
                    await ami.send_action("BridgeDestroy", {"BridgeUniqueid": uid})
        if not (left := await _channels_after(ami, HANGUP_STEP_S)):
            return None
        fault = f"{len(left)} channel(s) no hang-up ended:\n" + "\n".join(
            "  {Channel} in {Application}({ApplicationData}), {ChannelStateDesc}, "
            "{Context},{Exten},{Priority}, up {Duration}".format_map(_Fields(c))
            for c in left
        )
    except (AsteriskError, subprocess.TimeoutExpired, TimeoutError, ConnectionError) as exc:
        fault = f"Asterisk did not answer ({type(exc).__name__}: {exc})"
    await asyncio.to_thread(restart_test_asterisk, inst, kill=True)
    await ami.wait_connected(timeout=30)
    return f"{fault}\n{inst.spec.name} was killed and started again"


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


async def live_channels(ami: AmiClient) -> list[Message]:
    """The channels of the instance now (AMI ``CoreShowChannels``: one item each)."""
    _, items = await ami.send_list_action("CoreShowChannels")
    return [item for item in items if item.get("Event") == "CoreShowChannel"]


async def _channels_after(ami: AmiClient, seconds: float) -> list[Message]:
    """The channels still there after up to ``seconds`` (none: at once)."""
    deadline = time.monotonic() + seconds
    while True:
        left = await live_channels(ami)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


async def no_channels(inst: ChrootAsterisk) -> bool:
    """No channel left in ``inst`` ("10 active channels" is not "0 active channels")."""
    out = await asyncio.to_thread(inst.cli, "core show channels count")
    return re.search(r"^\s*0 active channels?\b", out, re.M) is not None


async def add_sim_agent(ami: AmiClient, ext: str, queue: str = "support") -> str:
    iface = f"Local/{ext}@cti-sim-agents/n"
    await ami.send_action(
        "QueueAdd", {"Queue": queue, "Interface": iface, "MemberName": f"agent{ext}"}
    )
    return iface


async def originate_call(
    ami: AmiClient,
    *,
    caller: str = "13800138000",
    caller_name: str = "",
    dnis: str = "4008001234",
    hold_s: float = 10,
    dtmf: str = "",
) -> str:
    """A simulated inbound call; returns its Linkedid (we choose the channel id)."""
    linkedid = f"t-{secrets.token_hex(6)}"
    variables = [f"CTI_SIM_HOLD={hold_s}"]
    if dtmf:
        variables.append(f"CTI_SIM_DTMF={dtmf}")
    await ami.send_action(
        "Originate",
        {
            "Channel": f"Local/{dnis}@cti-inbound",
            "Context": "cti-sim-caller", "Exten": "s", "Priority": "1",
            "CallerID": f'"{caller_name}" <{caller}>' if caller_name else caller,
            "Variable": variables, "Async": "true",
            "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
        },
    )  # fmt: skip
    return linkedid


async def wait_for(
    predicate: Callable[[], Awaitable[T]], *, timeout: float, what: str, every: float = 0.1
) -> T:
    """Poll ``predicate`` until it returns something truthy (the value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


#: The password of the people the page tests create (the daemon's own argon2 settings).
PAGE_PASSWORD = "page test password 1"


def page_errors(page: Any, expected: Callable[[Any], bool] | None = None) -> list[str]:
    """The list a browser page's errors land in: script errors, console errors (a failed
    resource is counted by its URL instead) and HTTP answers >= 400, except the browser's
    own favicon.ico and the answers ``expected`` accepts."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400
            and not r.url.endswith("/favicon.ico")
            and not (expected is not None and expected(r))
            else None
        ),
    )
    return errors


async def sign_in_page(page: Any, login: str, password: str = PAGE_PASSWORD) -> None:
    """Sign in on a daemon page (CTI.page's form) with a login and password."""
    await page.fill("#login", login)
    await page.fill("#password", password)
    await page.click("#signin-form button[type=submit]")


def settings_without_asterisk(db_url: str, tmp_path: Path) -> Any:
    """The daemon's settings with every feature but no Asterisk (AMI points at a closed
    port: what needs Asterisk answers 503), its directories under ``tmp_path``."""
    from cti.config import (
        AgiConfig,
        AmiConfig,
        AsteriskConfig,
        DatabaseConfig,
        HttpConfig,
        Settings,
    )

    for sub in ("etc", "monitor"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return Settings(
        ami=AmiConfig(port=free_port(), secret="x", reconnect_max_s=5.0),
        database=DatabaseConfig(url=db_url),
        http=HttpConfig(port=0),
        agi=AgiConfig(port=0),
        asterisk=AsteriskConfig(log_dir=tmp_path, etc_dir=tmp_path / "etc"),
        recordings={"root": str(tmp_path / "monitor")},
        ivr={"menus": str(tmp_path / "menus.toml"), "prompt_dir": str(tmp_path / "prompts")},
    )  # fmt: skip


async def start_sipp(
    inst: ChrootAsterisk, scenario: Path, *args: str, cwd: Path, timeout_s: int = 60
) -> asyncio.subprocess.Process:
    """SIPp (the real caller) running ``scenario`` against the instance's SIP port,
    dialling 4008001234; ``args`` are SIPp's own (``-m``, ``-inf``, ``-set``...)."""
    assert shutil.which("sipp"), "sip-tester (sipp) is required"
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1",
        "-p", str(free_port(socket.SOCK_DGRAM)), "-mi", "127.0.0.1",
        "-mp", str(free_media_ports()), "-s", "4008001234", "-nostdin",
        "-timeout", str(timeout_s), *args, f"127.0.0.1:{inst.spec.sip_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip


async def start_sipp_uas(
    scenario: Path, port: int, *args: str, cwd: Path, timeout_s: int = 120
) -> asyncio.subprocess.Process:
    """SIPp as a server (a carrier or a desk phone) on 127.0.0.1:``port`` running
    ``scenario``; every message it sees is traced to ``cwd``/sipp_messages.log."""
    assert shutil.which("sipp"), "sip-tester (sipp) is required"
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(free_media_ports()), "-nostdin",
        "-timeout", str(timeout_s), "-trace_msg",
        "-message_file", str(cwd / "sipp_messages.log"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip
