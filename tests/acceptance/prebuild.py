"""The container images of a session's container tests, built while the tests before them run.

On a fresh machine (CI) or after any change to the checkout, the first container test
(test_compose, then test_containers) builds the images (cti.cluster.images): the root with
Python, PostgreSQL and NATS, the daemon image with this checkout. That build spent minutes
of the session's wall time in that test's setup while the machine was otherwise idle. When
such a test is collected, the same build (``python -m cti.cluster.images``, after the
Asterisk root the session needs: taken under the root's own lock) starts at collection, at
the lowest CPU and I/O priority so the tests running meanwhile keep the machine as they
had it; the tests' ``images`` fixture waits for it and then calls the builders as before,
which find the images made (an image missing or stale, or a failed background build: the
fixture builds it and reports the error itself, as without this).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.checkout import checkout_env

#: the test files whose ``images`` fixture uses the images
USERS = ("test_compose.py", "test_containers.py")

_BUILD = (
    "from cti.asterisk import rootfs; rootfs.ensure_root(); "
    "from cti.cluster import images; images.asterisk_image(); images.daemon_image()"
)

_proc: subprocess.Popen[bytes] | None = None
_log: Path | None = None


def start(items: Iterable[pytest.Item]) -> None:
    """Start the background build if a collected test uses the images (once a session)."""
    global _proc, _log
    if _proc is not None or not any(Path(str(i.fspath)).name in USERS for i in items):
        return
    if shutil.which("podman") is None:
        return  # the tests themselves say podman is missing
    low = [*(["nice", "-n", "19"] if shutil.which("nice") else []),
           *(["ionice", "-c", "3"] if shutil.which("ionice") else [])]  # fmt: skip
    fd, name = tempfile.mkstemp(prefix="cti-prebuild-", suffix=".log")
    _log = Path(name)
    with open(fd, "wb") as out:
        _proc = subprocess.Popen(
            [*low, sys.executable, "-c", _BUILD], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env=checkout_env(), start_new_session=True,
        )  # fmt: skip


def wait() -> None:
    """Until the background build (if one was started) has ended; its output is printed
    (pytest shows it with the test's output if the test fails)."""
    global _proc
    if _proc is None:
        return
    rc = _proc.wait()
    _proc = None
    if _log is not None:
        print(f"[images] background build exited {rc}:\n{_log.read_text(errors='replace')[-3000:]}")
        _log.unlink(missing_ok=True)


def stop() -> None:
    """At the end of the session: a build still running (the session interrupted) is
    ended, with what it started (its own process group)."""
    global _proc
    if _proc is not None and _proc.poll() is None:  # the build and its podman/mmdebstrap
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_proc.pid, signal.SIGTERM)
        try:
            _proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(_proc.pid, signal.SIGKILL)
            _proc.wait()
    _proc = None
    if _log is not None:
        _log.unlink(missing_ok=True)
