"""The machine's NATS server (JetStream on disk) for the cluster tests: where it is, and
stopping/starting it as the machine's own start command does (a broker restart)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

NATS_URL = os.environ.get("CTI_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
NATS_START = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", NATS_BIN, "--",
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


def stop_nats() -> None:
    subprocess.run(
        ["start-stop-daemon", "--stop", "--oknodo", "--retry", "5", "--exec", NATS_BIN],
        check=True, capture_output=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while _port_open() and time.monotonic() < deadline:
        time.sleep(0.05)


def start_nats() -> None:
    subprocess.run(NATS_START, check=True, capture_output=True)
    deadline = time.monotonic() + 15
    while not _port_open():
        if time.monotonic() > deadline:
            pytest.fail("NATS did not come back within 15 s", pytrace=False)
        time.sleep(0.05)
