"""The daemon's log is written off the event loop (cti.logs): a logging call never waits
on stderr, records come out whole and in order, and the stop writes what is queued."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import pytest

from cti import logs
from cti.logs import setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_logging_call_does_not_wait_for_a_stderr_nobody_reads(restore_root: None) -> None:
    """stderr a pipe whose reader has stalled (journald busy): 200 kB of log lines, more
    than the pipe holds, are logged at once; once the reader reads, every line is there,
    whole and in order."""
    r, w = os.pipe()
    stream = os.fdopen(w, "w", encoding="utf-8")
    writer = setup_logging("INFO", "json", stream)
    log = logging.getLogger("cti.test")
    line = "x" * 1000
    started = time.monotonic()
    done = threading.Event()

    def burst() -> None:
        for i in range(200):
            log.info("call completed", extra={"n": i, "pad": line})
        done.set()

    threading.Thread(target=burst, daemon=True).start()
    assert done.wait(5), "a logging call waited for the stalled reader"
    assert time.monotonic() - started < 5
    got = b""
    with os.fdopen(r, "rb") as pipe:
        reader = threading.Thread(target=writer.stop)
        reader.start()  # the stop writes what is queued while we read
        while b"\n" not in got or got.count(b"\n") < 200:
            chunk = pipe.read1(1 << 16)
            if not chunk:
                break
            got += chunk
        reader.join(5)
    stream.close()
    records = [json.loads(x) for x in got.decode().splitlines()]
    assert [r["n"] for r in records] == list(range(200))
    assert records[0]["msg"] == "call completed" and records[0]["pad"] == line


def test_the_message_and_the_traceback_are_taken_at_the_call(restore_root: None) -> None:
    r, w = os.pipe()
    stream = os.fdopen(w, "w", encoding="utf-8")
    writer = setup_logging("INFO", "json", stream)
    log = logging.getLogger("cti.test")
    state = ["ringing"]
    log.info("state %s", state)
    state[0] = "hung up"  # changed after the call: the line says what it was
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("lookup failed")
    writer.stop()
    stream.close()
    with os.fdopen(r, "rb") as pipe:
        records = [json.loads(x) for x in pipe.read().decode().splitlines()]
    assert records[0]["msg"] == "state ['ringing']"
    assert records[1]["msg"] == "lookup failed"
    assert "ValueError: boom" in records[1]["exc"]


def test_records_beyond_the_queue_are_dropped_and_counted(
    restore_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "QUEUE_MAX", 5)
    r, w = os.pipe()
    stream = os.fdopen(w, "w", encoding="utf-8")
    blocked = threading.Event()
    real_emit = logging.StreamHandler.emit

    def slow_emit(self: logging.StreamHandler[TextIO], record: logging.LogRecord) -> None:
        blocked.wait(5)  # the writer is stuck until the test lets it go
        real_emit(self, record)

    monkeypatch.setattr(logging.StreamHandler, "emit", slow_emit)
    writer = setup_logging("INFO", "json", stream)
    log = logging.getLogger("cti.test")
    for i in range(50):
        log.info("line %d", i)
    blocked.set()
    deadline = time.monotonic() + 5
    while not writer.handler.queue.empty() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    log.info("after")
    writer.stop()
    stream.close()
    with os.fdopen(r, "rb") as pipe:
        records = [json.loads(x) for x in pipe.read().decode().splitlines()]
    assert 5 <= len(records) < 51
    assert records[-1]["msg"] == "after"
    assert records[-1]["log_records_dropped"] == 51 - len(records)
