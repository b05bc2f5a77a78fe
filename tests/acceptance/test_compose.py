"""deploy/compose.yaml, run as shipped (issue #18: the container path exercised, not only
written): ``podman-compose up`` of the whole stack, PostgreSQL, NATS JetStream, the
one-shot migration, two Asterisk servers and three daemon nodes, from the images this
repository builds (none pulled), on ports of its own (the machine's PostgreSQL and NATS
are not used). n2 drives server b; of n1 and n3 (both for a) one drives, the other stands
by; a call on a pops on a desktop connected to n2. Then ``podman-compose down -v``."""

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
from cti.store.tokens import create_token
from tests.acceptance import prebuild
from tests.acceptance.harness import DIALPLANS, ami_client, free_port, wait_for
from tests.acceptance.test_cluster import Desktop, call, health, set_globals
from tests.acceptance.traffic import DaemonProcess

# a requirement, not an option: podman-compose from PyPI (the dev extra; Debian 12's 1.0.3
# adds a bridge network to every container, which podman refuses beside network_mode host)
_VENV_BIN = Path(sys.executable).parent / "podman-compose"
PODMAN_COMPOSE = str(_VENV_BIN) if _VENV_BIN.exists() else shutil.which("podman-compose")
if PODMAN_COMPOSE is None:
    raise RuntimeError("podman-compose is not installed (pip install -e .[dev] installs it)")

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning")]

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


@pytest.fixture(scope="module")
def images() -> None:
    """Built once per machine (minutes the first time), then reused while unchanged;
    compose names them by their ``latest`` tags. Started in the background at collection
    (tests/acceptance/prebuild.py): waited for here."""
    prebuild.wait()
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


def node_toml(inst: ChrootAsterisk, node: str, http_port: int) -> str:
    spec, inner = inst.spec, inst.inner
    return (
        f'[ami]\nport = {spec.ami_port}\nsecret = "{spec.ami_secret}"\nping_interval = 1.0\n'
        "reconnect_max_s = 0.5\n"
        f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{inner}/log"\n'
        f'etc_dir = "{inner}/etc"\n'
        f"[http]\nport = {http_port}\n[agi]\nport = {spec.agi_port}\n"
        f'[cluster]\nnode = "{node}"\nserver = "{spec.name}"\n'
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


async def test_podman_compose_up_runs_the_stack_and_a_call_pops(images: None, stack: Path) -> None:
    a, b = instance(stack / "a", "a"), instance(stack / "b", "b")
    nodes_dir = stack / "nodes"
    nodes_dir.mkdir()
    ports: dict[str, int] = {}
    for node, inst in (("n1", a), ("n2", b), ("n3", a)):
        ports[node] = free_port()
        (nodes_dir / f"{node}.toml").write_text(node_toml(inst, node, ports[node]))
    project = f"ctitest{secrets.token_hex(3)}"
    password, pg_port = secrets.token_hex(12), free_port()
    env = {
        **os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CTI_ASTERISK_A": str(a.base), "CTI_ASTERISK_B": str(b.base),
        "CTI_NODES": str(nodes_dir), "CTI_PG_PASSWORD": password,
        "CTI_PG_PORT": str(pg_port), "CTI_NATS_PORT": str(free_port()),
    }  # fmt: skip
    # the nodes as the test sees them (HTTP on loopback: host networking)
    seen = {n: DaemonProcess(nodes_dir / f"{n}.toml", stack / "x.log", env, p)
            for n, p in ports.items()}  # fmt: skip
    desktop: Desktop | None = None
    try:
        # the store first (postgres, and the migration to its end): the test's agent and
        # queue are in it before the nodes start
        up = await asyncio.to_thread(compose, project, env, "up", "-d", "postgres", "migrate")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        migrated = await asyncio.to_thread(
            subprocess.run, ["podman", "wait", f"{project}_migrate_1"], capture_output=True,
            text=True, env=env, timeout=180, check=False,
        )  # fmt: skip
        assert migrated.stdout.strip() == "0", migrated.stdout + migrated.stderr
        token = await seed(f"postgresql+asyncpg://cti:{password}@127.0.0.1:{pg_port}/cti")
        # the rest (the first step's containers kept as they are)
        up = await asyncio.to_thread(compose, project, env, "up", "-d", "--no-recreate")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]

        async def roles() -> bool:
            got = [(await health(seen[n])).get("role") for n in ("n1", "n2", "n3")]
            return sorted(r or "" for r in got) == ["driver", "driver", "standby"]

        await wait_for(roles, timeout=120, what="two drivers and a standby", every=0.5)
        # n1 and n3 race for a: whichever drives it, n2 drives b
        assert (await health(seen["n2"]))["role"] == "driver"
        await check_healthchecks(project, env)
        ami = ami_client(a)
        await ami.start()
        try:
            await ami.wait_connected(timeout=20)
            await set_globals(ami, QUEUE)

            async def member() -> bool:
                _, items = await ami.send_list_action("QueueStatus", {"Queue": QUEUE})
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
        # server b's Asterisk goes: its driver n2 has no AMI link, its check says unhealthy
        stopped = await asyncio.to_thread(podman, env, "stop", "-t", "2",
                                          f"{project}_asterisk-b_1")  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr

        async def n2_unhealthy() -> bool:
            return not await health_ok(env, project, "n2")

        await wait_for(n2_unhealthy, timeout=30, what="n2's check to fail (AMI link down)")
        # the state turns unhealthy after `retries` (3) failed checks in a row, not before
        assert health_status(env, project, "n2") == "healthy"
        for _ in range(2):
            assert not await health_ok(env, project, "n2")
        assert health_status(env, project, "n2") == "unhealthy"
        assert await health_ok(env, project, "n1") or await health_ok(env, project, "n3")
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
        await asyncio.to_thread(compose, project, env, "down", "-v", "-t", "5")


QUEUE = "cmq1"


def podman(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)  # fmt: skip


async def health_ok(env: dict[str, str], project: str, service: str) -> bool:
    """``podman healthcheck run``: the service's check once, now (exit 0: healthy)."""
    done = await asyncio.to_thread(podman, env, "healthcheck", "run", f"{project}_{service}_1")
    print(f"healthcheck {service}: exit {done.returncode} {done.stdout.strip()} "
          f"{done.stderr.strip()}")  # fmt: skip
    return done.returncode == 0


def health_status(env: dict[str, str], project: str, service: str) -> str:
    """The health state podman keeps for the container (what its checks found so far)."""
    got = podman(env, "inspect", "--format", "{{.State.Health.Status}}", f"{project}_{service}_1")
    return got.stdout.strip() or got.stderr.strip()


async def check_healthchecks(project: str, env: dict[str, str]) -> None:
    """The compose file's health checks, run for real. Podman 4.3 runs a container's
    check only when asked (``podman healthcheck run``; its timer is a systemd unit, none
    here): a check never asked stays ``starting``. Asked, each ready service says
    healthy: PostgreSQL (pg_isready), NATS (its INFO greeting), the three nodes (``cti
    health``: their /healthz, a driver's AMI link up or a standby)."""
    for service in ("postgres", "nats", "n1", "n2", "n3"):
        print(f"{service}: {health_status(env, project, service)!r} before any check ran")
    for service in ("postgres", "nats", "n1", "n2", "n3"):
        await wait_for(lambda s=service: health_ok(env, project, s), timeout=30,
                       what=f"{service}'s healthcheck to pass", every=1)  # fmt: skip
        assert health_status(env, project, service) == "healthy", service


async def seed(url: str) -> str:
    """The queue and its available (simulated) agent; the agent's token."""
    db = Database.from_url(url)
    try:
        await acd_store.put_queue(db, QueueParams(QUEUE, strategy="ringall", service_level_s=10))
        await acd_store.put_agent(db, "cm-ag1", "cm-ag1", [("local", "3401")], {QUEUE: 0})
        await acd_store.record_status(
            db, "cm-ag1", "available", "", "Local/3401@cti-sim-agents/n", datetime.now(UTC),
            "test",
        )  # fmt: skip
        return await create_token(db, "cm-ag1", "agent")
    finally:
        await db.dispose()


async def _true(value: bool) -> bool:
    return value
