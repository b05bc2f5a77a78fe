"""No split brain when the driving node is cut off the network (issue #18).

Node A runs in a network namespace of its own (its own address, a veth pair to this host)
and holds the lease on a server through a PostgreSQL of the test's own that listens on the
host's end of the veth; node B, on this host, stands by. The namespace's link goes down:
A must stop driving (it cannot confirm its lease) before PostgreSQL frees the lease for B
(its TCP keepalives find A's connection dead); B then drives. The link comes back: A is a
standby and never drives while B does. The leases are the product's
(:class:`cti.cluster.lease.ServerLease`), the network and PostgreSQL are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cti.cluster.lease import ServerLease
from tests.acceptance.traffic import OwnPostgres, _pg_bin
from tests.checkout import checkout_env

pytestmark = pytest.mark.postgres

HOST_IP, NODE_IP = "10.199.18.1", "10.199.18.2"  # the test's own veth pair
PROJECT = Path(__file__).resolve().parents[2]

# a requirement, not an option: the suite runs as root with iproute2 (scripts/bootstrap.sh);
# anywhere else this test fails rather than passing unseen
if os.geteuid() != 0 or shutil.which("ip") is None:
    raise RuntimeError("the partition test needs root and iproute2 (scripts/bootstrap.sh)")

NODE_A = """
import asyncio, json, sys, time
from cti.cluster.lease import ServerLease

async def main() -> None:
    def say(what: str) -> None:
        print(json.dumps({"what": what, "t": time.time()}), flush=True)

    async def drive() -> None:
        say("drive")

    async def stop() -> None:
        say("stop")

    lease = ServerLease(sys.argv[1], sys.argv[2], node="a", on_acquired=drive, on_lost=stop,
                        check_s=0.5, timeout_s=2.0)
    say("ready")
    await lease.run()

asyncio.run(main())
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


class Namespace:
    """A network namespace joined to this host by a veth pair: ``host_ip`` on this host's
    end, ``node_ip`` inside (a /30)."""

    def __init__(self, host_ip: str = HOST_IP, node_ip: str = NODE_IP) -> None:
        tag = secrets.token_hex(2)
        self.name, self.host_if, self.node_if = f"ctia{tag}", f"cth{tag}", f"ctn{tag}"
        self.host_ip, self.node_ip = host_ip, node_ip

    def up(self) -> None:
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.node_if)
        sh("ip", "link", "set", self.node_if, "netns", self.name)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        ns = ("ip", "netns", "exec", self.name)
        sh(*ns, "ip", "addr", "add", f"{self.node_ip}/30", "dev", self.node_if)
        sh(*ns, "ip", "link", "set", self.node_if, "up")
        sh(*ns, "ip", "link", "set", "lo", "up")

    def link(self, up: bool) -> None:
        sh("ip", "netns", "exec", self.name, "ip", "link", "set", self.node_if,
           "up" if up else "down")  # fmt: skip

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    ns = Namespace()
    try:
        ns.up()
    except subprocess.CalledProcessError as exc:
        ns.down()
        pytest.fail(f"cannot make a network namespace here: {exc.stderr.decode()[-200:]}")
    yield ns
    ns.down()


@pytest.fixture
def postgres(netns: Namespace) -> Iterator[OwnPostgres]:
    """The test's own PostgreSQL on loopback and on the host's end of the veth."""
    pg = OwnPostgres()
    try:
        pg.init()
        with (pg.data / "pg_hba.conf").open("a") as fh:
            fh.write(f"host all all {NODE_IP}/32 trust\n")
        opts = f"-p {pg.port} -k {pg.base} -h 127.0.0.1,{HOST_IP} -c fsync=off"
        pg._run(_pg_bin("pg_ctl"), "-D", str(pg.data), "-o", opts, "-l",
                str(pg.base / "pg.log"), "-w", "start")  # fmt: skip
        yield pg
    finally:
        with contextlib.suppress(AssertionError):
            pg.stop()
        shutil.rmtree(pg.base, ignore_errors=True)


async def test_a_driver_cut_off_stops_before_another_node_drives(
    netns: Namespace, postgres: OwnPostgres
) -> None:
    server = f"part-{secrets.token_hex(3)}"
    dsn_a = f"postgresql://postgres@{HOST_IP}:{postgres.port}/postgres"
    dsn_b = f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    node_a = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns.name, sys.executable, "-c", NODE_A, dsn_a, server,
        stdout=asyncio.subprocess.PIPE, cwd=str(PROJECT),
        env=checkout_env(),
    )  # fmt: skip
    a_said: list[tuple[str, float]] = []

    async def read_a() -> None:
        assert node_a.stdout is not None
        async for line in node_a.stdout:
            said = json.loads(line)
            a_said.append((said["what"], said["t"]))

    reader = asyncio.create_task(read_a())
    b_said: list[tuple[str, float]] = []

    async def drive_b() -> None:
        b_said.append(("drive", time.time()))

    async def stop_b() -> None:
        b_said.append(("stop", time.time()))

    lease_b = ServerLease(dsn_b, server, node="b", on_acquired=drive_b, on_lost=stop_b,
                          check_s=0.5, timeout_s=2.0)  # fmt: skip
    task_b: asyncio.Task[None] | None = None
    try:

        async def until(cond: object, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not cond():  # type: ignore[operator]
                assert time.monotonic() < deadline, (a_said, b_said)
                await asyncio.sleep(0.05)

        await until(lambda: "drive" in [w for w, _ in a_said], 20)
        task_b = asyncio.create_task(lease_b.run())
        await asyncio.sleep(2.0)
        assert b_said == []  # A drives, B stands by

        cut_at = time.time()
        netns.link(False)
        await until(lambda: b_said, 30)
        a_stop = next(t for w, t in a_said if w == "stop")
        b_drive = b_said[0][1]
        print(
            f"cut at 0: A stopped at {a_stop - cut_at:.2f} s, B drove at {b_drive - cut_at:.2f} s"
        )
        assert a_stop < b_drive, "two drivers at once"

        netns.link(True)
        await asyncio.sleep(lease_b.release_after_s + 4)
        drives_a = [t for w, t in a_said if w == "drive"]
        assert len(drives_a) == 1, "A drove again while B held the server"
        assert b_said == [("drive", b_drive)]  # B still drives
    finally:
        if task_b is not None:
            task_b.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task_b
        node_a.kill()
        await node_a.wait()
        reader.cancel()
