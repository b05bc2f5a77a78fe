"""The machine's NATS server (JetStream on disk) for the cluster tests: where it is, and
stopping/starting it as the machine's own start command does (a broker restart).

Only the server listening on port 4222 is stopped (found by its socket), and the one started
again is tracked by a pidfile of its own: ``start-stop-daemon --exec`` alone matches every
``nats-server`` on the machine, a container's included (its /proc/<pid>/exe reads the same
path), so with another NATS running it stopped that one too, and ``--oknodo`` then started
nothing: port 4222 stayed closed."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

NATS_URL = os.environ.get("CTI_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
NATS_PIDFILE = "/run/cti-test-nats.pid"
NATS_START = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--make-pidfile",
    "--pidfile", NATS_PIDFILE, "--exec", NATS_BIN, "--",
    "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server",
    "-l", "/var/log/nats-server.log",
]  # fmt: skip


def _port_open(port: int = 4222) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def require_nats() -> None:
    if _port_open():
        return
    if os.path.exists(NATS_BIN):
        start_nats()
        return
    pytest.fail(f"NATS is not reachable at {NATS_URL} and {NATS_BIN} is missing", pytrace=False)


def _listener_pids(port: int = 4222) -> set[int]:
    """The processes listening on 127.0.0.1:``port`` (``ss`` names them)."""
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], check=True, capture_output=True, text=True
    ).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def stop_nats() -> None:
    for pid in _listener_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _port_open():
        if time.monotonic() > deadline:
            pytest.fail("NATS on port 4222 did not stop within 10 s", pytrace=False)
        time.sleep(0.05)


def start_nats() -> None:
    subprocess.run(NATS_START, check=True, capture_output=True)
    deadline = time.monotonic() + 15
    while not _port_open():
        if time.monotonic() > deadline:
            pytest.fail("NATS did not come back within 15 s", pytrace=False)
        time.sleep(0.05)
