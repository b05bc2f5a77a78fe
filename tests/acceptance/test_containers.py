"""Dockerized Asterisk, tested rather than assumed (issue #18, docs/deploy.md): Asterisk
and a daemon node run as podman containers built from the chroot runner's root
(``python -m cti.cluster.images``), with the project's containers.conf (runc, cgroupfs, no
default ulimits). The node reaches Asterisk's AMI, serves the IVR over FastAGI, is ready
for a load balancer, and a simulated call ends as one call row in the node's store."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from cti.asterisk.instance import ChrootAsterisk, InstanceSpec
from cti.cluster.images import asterisk_image, daemon_image, podman
from cti.store.db import Database
from cti.store.models import Call as CallRow
from tests.acceptance import prebuild
from tests.acceptance.harness import DIALPLANS, ami_client, free_port, wait_for

# a requirement, not an option: scripts/bootstrap.sh installs podman and runc; without
# them this test fails rather than passing unseen
if shutil.which("podman") is None:
    raise RuntimeError(
        "podman is not installed (scripts/bootstrap.sh installs it: apt-get install podman "
        "runc): the container path cannot be exercised"
    )

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def images() -> tuple[str, str]:
    """Built once per machine (minutes the first time), then reused while unchanged.
    Started in the background at collection (tests/acceptance/prebuild.py): waited for
    here."""
    prebuild.wait()
    return asterisk_image(print), daemon_image(print)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[ChrootAsterisk]:
    """An instance directory for the Asterisk container (not started as a chroot)."""
    rtp = 21000 + secrets.randbelow(40) * 100
    spec = InstanceSpec(
        name=f"ctr-{secrets.token_hex(3)}", ami_secret=secrets.token_hex(16),
        ami_port=free_port(), sip_port=free_port(socket.SOCK_DGRAM), rtp_start=rtp,
        rtp_end=rtp + 99, agi_port=free_port(),
    )  # fmt: skip
    inst = ChrootAsterisk(tmp_path / "ctr", spec, DIALPLANS)
    inst.write_config()
    yield inst
    shutil.rmtree(tmp_path / "ctr", ignore_errors=True)


async def test_asterisk_and_a_daemon_node_run_as_podman_containers(
    images: tuple[str, str], instance: ChrootAsterisk, tmp_path: Path
) -> None:
    ast_image, node_image = images
    # the image has the sounds the runner adds to its root (the Mandarin numbers)
    listed = await asyncio.to_thread(
        podman, "run", "--rm", "--network", "none", ast_image,
        "/bin/ls", "/usr/share/asterisk/sounds/zh/digits",
    )  # fmt: skip
    assert {"2.wav", "20.wav", "wan.wav"} <= set(listed.stdout.split()), listed.stdout
    spec, inner = instance.spec, instance.inner
    data = tmp_path / "data"
    data.mkdir()
    http_port = free_port()
    tag = secrets.token_hex(3)
    ast_name, node_name = f"cti-test-ast-{tag}", f"cti-test-node-{tag}"
    mount = f"{instance.base}:{inner}"
    try:
        await asyncio.to_thread(
            podman, "run", "-d", "--rm", "--name", ast_name, "--network", "host",
            "-v", mount, ast_image,
            "/usr/sbin/asterisk", "-f", "-n", "-C", f"{inner}/etc/asterisk.conf",
        )  # fmt: skip
        env = {
            "CTI_AMI__PORT": str(spec.ami_port), "CTI_AMI__USERNAME": spec.ami_user,
            "CTI_AMI__SECRET": spec.ami_secret, "CTI_AMI__RECONNECT_MAX_S": "0.5",
            "CTI_ASTERISK__INSTANCE": spec.name, "CTI_ASTERISK__LOG_DIR": f"{inner}/log",
            "CTI_ASTERISK__ETC_DIR": f"{inner}/etc", "CTI_HTTP__HOST": "127.0.0.1",
            "CTI_HTTP__PORT": str(http_port), "CTI_AGI__HOST": "127.0.0.1",
            "CTI_AGI__PORT": str(spec.agi_port),
        }  # fmt: skip
        flags = [f"--env={k}={v}" for k, v in env.items()]
        await asyncio.to_thread(
            podman, "run", "-d", "--name", node_name, "--network", "host",
            "-v", mount, "-v", f"{data}:/var/lib/cti", *flags, node_image, "run",
        )  # fmt: skip
        base = f"http://127.0.0.1:{http_port}"

        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{base}/healthz") as h, http.get(f"{base}/readyz") as r:
                        return h.status == 200 and r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(ready, timeout=90, what="the node container to reach Asterisk's AMI")
        ami = ami_client(instance)
        await ami.start()
        try:
            await ami.wait_connected(timeout=20)
            for name, value in (("CTI_SIM_RING", "1"), ("CTI_SIM_TALK", "2")):
                await ami.send_action("Setvar", {"Variable": name, "Value": value})
            await ami.send_action(
                "Originate",
                {
                    "Channel": "Local/4008001234@cti-inbound", "Context": "cti-sim-caller",
                    "Exten": "s", "Priority": "1", "CallerID": "13800138000",
                    "Variable": ["CTI_SIM_HOLD=3"], "Async": "true",
                },
            )  # fmt: skip
        finally:
            await ami.close()
        db = Database.from_url(f"sqlite+aiosqlite:///{data / 'cti.db'}")
        try:

            async def recorded() -> list[CallRow]:
                async with db.session() as s:
                    return list((await s.scalars(select(CallRow))).all())

            rows = await wait_for(recorded, timeout=60, what="the call's row", every=0.5)
        finally:
            await db.dispose()
        assert len(rows) == 1
        row = rows[0]
        assert row.linkedid.startswith(spec.system_name + "-")  # Asterisk's own ids
        assert row.caller_num_raw == "13800138000"
        assert row.dnis == "4008001234"  # through the IVR served by the node's FastAGI
    except BaseException:
        logs = await asyncio.to_thread(podman, "logs", "--tail", "60", node_name, check=False)
        print("--- node container log:\n" + logs.stdout + logs.stderr)
        raise
    finally:
        for name in (node_name, ast_name):
            await asyncio.to_thread(podman, "rm", "-f", "-t", "5", name, check=False)
