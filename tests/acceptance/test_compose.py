"""deploy/compose.yaml, run as shipped (issue #18: the container path exercised, not only
written): ``podman-compose up`` of its two Asterisk servers and three daemon nodes, from
the images this repository builds (none pulled), on the machine's PostgreSQL and NATS.
n2 drives server b; of n1 and n3 (both for a) one drives, the other stands by; a call on
a pops on a desktop connected to n2. Then ``podman-compose down``."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from acd import store as acd_store
from acd.queues_conf import QueueParams
from cti.asterisk.instance import ChrootAsterisk, InstanceSpec
from cti.cluster.images import CONTAINERS_CONF, asterisk_image, daemon_image
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from tests.acceptance.harness import DIALPLANS, ami_client, free_port, wait_for
from tests.acceptance.test_cluster import (  # noqa: F401  (fixtures)
    Desktop,
    call,
    health,
    pg_url,
    set_globals,
    stream,
)
from tests.acceptance.traffic import DaemonProcess
from tests.cluster_services import NATS_URL

# a requirement, not an option: podman-compose from PyPI (the dev extra; Debian 12's 1.0.3
# adds a bridge network to every container, which podman refuses beside network_mode host)
_VENV_BIN = Path(sys.executable).parent / "podman-compose"
PODMAN_COMPOSE = str(_VENV_BIN) if _VENV_BIN.exists() else shutil.which("podman-compose")
if PODMAN_COMPOSE is None:
    raise RuntimeError("podman-compose is not installed (pip install -e .[dev] installs it)")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


@pytest.fixture(scope="module")
def images() -> None:
    """Built once per machine (minutes the first time), then reused while unchanged;
    compose names them by their ``latest`` tags."""
    asterisk_image(print)
    daemon_image(print)


def instance(root: Path, name: str) -> ChrootAsterisk:
    rtp = 22000 + secrets.randbelow(40) * 100
    spec = InstanceSpec(
        name=name, ami_secret=secrets.token_hex(16), ami_port=free_port(),
        sip_port=free_port(socket.SOCK_DGRAM), http_port=free_port(), rtp_start=rtp,
        rtp_end=rtp + 99, agi_port=free_port(),
    )  # fmt: skip
    inst = ChrootAsterisk(root, spec, DIALPLANS)
    inst.write_config()
    return inst


def node_toml(inst: ChrootAsterisk, node: str, http_port: int, stream_name: str) -> str:
    spec, inner = inst.spec, inst.inner
    return (
        f'[ami]\nport = {spec.ami_port}\nsecret = "{spec.ami_secret}"\nping_interval = 1.0\n'
        "reconnect_max_s = 0.5\n"
        f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{inner}/log"\n'
        f'etc_dir = "{inner}/etc"\n'
        f"[http]\nport = {http_port}\n[agi]\nport = {spec.agi_port}\n"
        f'[cluster]\nnode = "{node}"\nserver = "{spec.name}"\nstream = "{stream_name}"\n'
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    shutil.rmtree(tmp_path / "a", ignore_errors=True)  # files written by root in containers


def compose(project: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PODMAN_COMPOSE, "-p", project, "-f", str(COMPOSE), *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


async def test_podman_compose_up_runs_the_stack_and_a_call_pops(
    images: None,
    pg_url: str,  # noqa: F811
    stream: str,  # noqa: F811
    stack: Path,
) -> None:
    a, b = instance(stack / "a", "a"), instance(stack / "b", "b")
    nodes_dir = stack / "nodes"
    nodes_dir.mkdir()
    ports: dict[str, int] = {}
    for node, inst in (("n1", a), ("n2", b), ("n3", a)):
        ports[node] = free_port()
        (nodes_dir / f"{node}.toml").write_text(node_toml(inst, node, ports[node], stream))
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    queue = f"cmq{secrets.token_hex(3)}"
    await acd_store.put_queue(db, QueueParams(queue, strategy="ringall", service_level_s=10))
    await acd_store.put_agent(db, "cm-ag1", "cm-ag1", [("local", "3401")], {queue: 0})
    await acd_store.record_status(
        db, "cm-ag1", "available", "", "Local/3401@cti-sim-agents/n", datetime.now(UTC), "test"
    )
    token = await create_token(db, "cm-ag1", "agent")
    await db.dispose()
    project = f"ctitest{secrets.token_hex(3)}"
    env = {
        **os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CTI_ASTERISK_A": str(a.base), "CTI_ASTERISK_B": str(b.base),
        "CTI_NODES": str(nodes_dir), "CTI_DATABASE_URL": pg_url, "CTI_BROKER_URL": NATS_URL,
    }  # fmt: skip
    # the nodes as the test sees them (HTTP on loopback: host networking)
    seen = {n: DaemonProcess(nodes_dir / f"{n}.toml", stack / "x.log", env, p)
            for n, p in ports.items()}  # fmt: skip
    desktop: Desktop | None = None
    try:
        up = await asyncio.to_thread(compose, project, env, "up", "-d")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]

        async def roles() -> bool:
            got = [(await health(seen[n])).get("role") for n in ("n1", "n2", "n3")]
            return sorted(r or "" for r in got) == ["driver", "driver", "standby"]

        await wait_for(roles, timeout=120, what="two drivers and a standby", every=0.5)
        # n1 and n3 race for a: whichever drives it, n2 drives b
        assert (await health(seen["n2"]))["role"] == "driver"
        ami = ami_client(a)
        await ami.start()
        try:
            await ami.wait_connected(timeout=20)
            await set_globals(ami, queue)

            async def member() -> bool:
                _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
                return any(i.get("Event") == "QueueMember" for i in items)

            await wait_for(member, timeout=30, what="the agent in the queue on a")
            desktop = Desktop(seen["n2"].base, token)
            desktop.start()
            await asyncio.wait_for(desktop.ready.wait(), 10)
            await call(ami, hold_s=3)
            system = ami.system_name
            assert system
            await wait_for(
                lambda: _true(bool(desktop and desktop.popped(system + "-"))), timeout=30,
                what="the pop of a call on server a on n2 (server b's node)",
            )  # fmt: skip
        finally:
            await ami.close()
    except BaseException:
        logs = await asyncio.to_thread(
            subprocess.run, ["podman", "logs", "--tail", "30", f"{project}_n2_1"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        print("--- n2 log:\n" + logs.stdout + logs.stderr)
        raise
    finally:
        if desktop is not None:
            await desktop.close()
        await asyncio.to_thread(compose, project, env, "down", "-t", "5")


async def _true(value: bool) -> bool:
    return value
