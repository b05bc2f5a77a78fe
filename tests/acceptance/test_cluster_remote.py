"""A daemon node drives an Asterisk on another host (issue #18): AMI and FastAGI cross a
network, nothing on loopback.

Asterisk runs in a network namespace of its own (a veth pair: this host is 10.199.19.1,
Asterisk 10.199.19.2), so its 127.0.0.1 is not the node's. Its manager.conf is generated
from the configuration: AMI bound to the veth address, logins permitted from the node's
address only, a generated secret; Asterisk's generated CTI_AGI names an address where no
node listens (an outdated VIP): the node, on connecting, makes it its own ``agi.advertise``
(the node that drives a server is the one that serves its FastAGI). The node (``cti run``,
SQLite) listens for FastAGI on its veth address and accepts only Asterisk's.

One call enters the IVR (the FastAGI route ``ivr`` sends it to the agent's queue; the
dialplan's fallback queue has no one, so only the IVR's answer reaches the agent) and pops
on the agent's desktop. The IVR's greeting is text-to-speech the node renders into a
directory of its own and Asterisk fetches from the node's HTTP over the veth
(``[ivr] media_url`` left at its default, auto: the node listens on 0.0.0.0 and names its
address on the route to Asterisk, decision 0032): the node shares no directory with
Asterisk, and Asterisk has the greeting before the call (the node's warm-up). A
login to AMI from an address outside the permit list fails, and AMI does not answer on
Asterisk's loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from acd import store as acd_store
from acd.queues_conf import QueueParams
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk, InstanceSpec
from cti.asterisk.rootfs import ensure_root
from cti.asterisk.runner import DIALPLANS
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from tests.acceptance.harness import free_port, wait_for
from tests.acceptance.test_cluster import Desktop
from tests.acceptance.test_cluster_partition import Namespace
from tests.acceptance.traffic import DaemonProcess
from tests.checkout import checkout_env

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

HOST_IP, AST_IP = "10.199.19.1", "10.199.19.2"  # node's end, Asterisk's end
STALE_AGI = "10.199.19.9"  # outside the /30: no route, nothing listens there
DNIS = "4008001234"

MENUS = """\
[defaults]
menu = "to_queue"

[prompts]
hello = {{ text = "One moment please.", voice = "en" }}

[menus.to_queue]
greeting = "hello"
timeout = 1
retries = 0
fallback = {{ action = "queue", target = "{queue}" }}
"""

# run inside Asterisk's namespace: AMI from an address not permitted, and on its loopback
PROBE = """
import socket, sys
port, secret = int(sys.argv[1]), sys.argv[2]
def login(host):
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError as exc:
        return type(exc).__name__
    s.settimeout(5)
    s.sendall(f"Action: Login\\r\\nUsername: cti\\r\\nSecret: {secret}\\r\\n\\r\\n".encode())
    got = b""
    try:
        while b"\\r\\n\\r\\n" not in got.split(b"\\r\\n", 1)[-1]:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return "accepted" if b"Response: Success" in got else "refused"
print(login(sys.argv[3]), login("127.0.0.1"))
"""


class NetnsAsterisk(ChrootAsterisk):
    """The chroot runner's Asterisk, started inside a network namespace."""

    def __init__(self, root: Path, spec: InstanceSpec, netns: str) -> None:
        super().__init__(root, spec, DIALPLANS)
        self.netns = netns

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().command()]


@pytest.fixture
def netns() -> Iterator[Namespace]:
    ns = Namespace(HOST_IP, AST_IP)
    try:
        ns.up()
    except subprocess.CalledProcessError as exc:
        ns.down()
        pytest.fail(f"cannot make a network namespace here: {exc.stderr.decode()[-200:]}")
    yield ns
    ns.down()


@pytest.fixture
def remote_asterisk(netns: Namespace) -> Iterator[NetnsAsterisk]:
    root = ensure_root(lambda msg: print(f"[asterisk] {msg}", flush=True))
    rtp = 20000 + secrets.randbelow(400) * 100
    spec = InstanceSpec(
        name=f"test-{os.getpid()}-remote", ami_secret=secrets.token_hex(16),
        ami_port=free_port(), ami_bind=AST_IP, ami_permit=(f"{HOST_IP}/32",),
        sip_port=free_port(socket.SOCK_DGRAM), http_port=free_port(),
        rtp_start=rtp, rtp_end=rtp + 99, agi_host=STALE_AGI, agi_port=free_port(),
    )  # fmt: skip
    inst = NetnsAsterisk(root, spec, netns.name)
    try:
        inst.start(tie_to_parent=True)
        inst.wait_fully_booted(30)
        yield inst
    finally:
        inst.stop()
        shutil.rmtree(inst.base, ignore_errors=True)


def write_config(
    path: Path, inst: NetnsAsterisk, db_url: str, http_port: int, menus: Path, prompts: Path
) -> None:
    spec = inst.spec
    path.write_text(
        f'[ami]\nhost = "{AST_IP}"\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
        f'secret = "{spec.ami_secret}"\nping_interval = 1.0\naction_timeout = 3.0\n'
        "reconnect_max_s = 0.5\n"
        f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{inst.log_dir}"\n'
        f'etc_dir = "{inst.etc_dir}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[http]\nhost = "0.0.0.0"\nport = {http_port}\n'
        f'[agi]\nhost = "{HOST_IP}"\nport = {spec.agi_port}\nadvertise = "{HOST_IP}"\n'
        f'allow = ["{AST_IP}/32"]\n'
        f'[ivr]\nmenus = "{menus}"\nprompt_dir = "{prompts}"\n'  # media_url: auto
        "[stats]\ntail_interval_s = 1\n"
    )


async def test_a_node_on_another_host_drives_asterisk_and_a_call_through_the_ivr_pops(
    netns: Namespace, remote_asterisk: NetnsAsterisk, tmp_path: Path
) -> None:
    inst, spec = remote_asterisk, remote_asterisk.spec
    probe = await asyncio.to_thread(
        subprocess.run,
        ["ip", "netns", "exec", netns.name, sys.executable, "-c", PROBE, str(spec.ami_port),
         spec.ami_secret, AST_IP],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    # the right secret from Asterisk's own address (not permitted): refused; loopback: no AMI
    assert probe.stdout.split() == ["refused", "ConnectionRefusedError"], probe.stdout

    queue = f"rmq{secrets.token_hex(3)}"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await asyncio.to_thread(upgrade, db_url)
    db = Database.from_url(db_url)
    await acd_store.put_queue(db, QueueParams(queue, strategy="ringall", service_level_s=10))
    await acd_store.put_agent(db, "rm-ag1", "rm-ag1", [("local", "3301")], {queue: 0})
    await acd_store.record_status(
        db, "rm-ag1", "available", "", "Local/3301@cti-sim-agents/n", datetime.now(UTC), "test"
    )
    token = await create_token(db, "rm-ag1", "agent")
    await db.dispose()
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS.format(queue=queue))
    port = free_port()
    prompts = tmp_path / "node-prompts"  # the node's own: Asterisk's namespace cannot see it
    write_config(tmp_path / "node.toml", inst, db_url, port, menus, prompts)
    env = checkout_env()
    node = DaemonProcess(tmp_path / "node.toml", tmp_path / "node.log", env, port)
    # the test's own AMI link comes from the node's address, as the node's does
    ami = AmiClient(AST_IP, spec.ami_port, spec.ami_user, spec.ami_secret, ping_interval=2.0,
                    action_timeout=5.0, backoff_initial=0.1, backoff_max=0.5)  # fmt: skip
    desktop = Desktop(node.base, token)
    try:
        await ami.start()
        await ami.wait_connected(timeout=20)
        for name, value in (("CTI_DEFAULT_QUEUE", "rm-nobody"), ("CTI_SIM_RING", "1"),
                            ("CTI_SIM_TALK", "2")):  # fmt: skip
            await ami.send_action("Setvar", {"Variable": name, "Value": value})
        await node.start()  # /healthz 200: AMI connected over the veth

        async def agi_is_the_node() -> bool:
            got = await ami.send_action("Getvar", {"Variable": "CTI_AGI"})
            return got.get("Value") == f"agi://{HOST_IP}:{spec.agi_port}"

        await wait_for(agi_is_the_node, timeout=10, what="CTI_AGI set to the node's address")

        async def member() -> bool:
            _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
            return any(i.get("Event") == "QueueMember" for i in items)

        await wait_for(member, timeout=30, what="the agent in the queue on the remote Asterisk")
        desktop.start()
        await asyncio.wait_for(desktop.ready.wait(), 10)
        await ami.send_action(
            "Originate",
            {
                "Channel": f"Local/{DNIS}@cti-inbound", "Context": "cti-sim-caller",
                "Exten": "s", "Priority": "1", "CallerID": "13900001111",
                "Variable": ["CTI_SIM_HOLD=4"], "Async": "true",
            },
        )  # fmt: skip
        system = ami.system_name
        assert system

        async def popped() -> bool:
            return bool(desktop.popped(system + "-"))

        await wait_for(popped, timeout=30, what="the pop of the call on the remote Asterisk")
        pop = next(p for p in desktop.pops if str(p.get("linkedid", "")).startswith(system))
        assert pop.get("queue") == queue, pop  # routed by the IVR over FastAGI
        # the greeting came from the node's HTTP: Asterisk fetched it over the veth
        async with aiohttp.ClientSession() as http, http.get(f"{node.base}/metrics") as r:
            metrics = await r.text()
        # ... ahead of the caller, with the survey's prompts: the node had Asterisk fetch
        # each once at its connect (media cache refresh), the call fetched nothing more
        served = re.search(r'cti_media_requests_total\{outcome="served"\} (\d+)', metrics)
        refreshed = re.search(
            r'cti_media_cache_commands_total\{outcome="refreshed"\} (\d+)', metrics
        )
        assert served and refreshed, metrics[-3000:]
        assert int(served[1]) == int(refreshed[1]) >= 1, (served[0], refreshed[0])
        assert {p.suffix for p in prompts.iterdir()} == {".wav"}  # rendered there only
    except BaseException:
        print(f"--- node log tail:\n{node.tail(60)}")
        raise
    finally:
        await desktop.close()
        await node.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(inst.cli, "channel request hangup all")
        await ami.close()
