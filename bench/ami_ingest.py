"""AMI ingest: our parser + screen + live call model vs panoramisk's bare parse + dispatch.

Replays real queue-call AMI traffic recorded from our Asterisk 22 (tests/fixtures/ami),
repeated with distinct Linkedids so the model tracks that many calls, in 4 KiB chunks as a
socket delivers them. Both pipelines run in this process on the same bytes; the figure to
read is the ratio (ours / panoramisk), target >= 1.0.

    .venv/bin/python bench/ami_ingest.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cti.ami.protocol import AmiParser
from cti.ami.screen import AmiScreen
from cti.bus import EventBus
from cti.calls.model import CallModel

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ami"
CHUNK = 4096
SYSTEM_NAME = "cti-fixture-rec"  # the recorded instance's systemname
ACTION_PREFIX = "cti-bench-"  # the client's ActionIDs (the screen lets ours through)


def build_stream(calls: int) -> tuple[bytes, int]:
    """Banner + ``calls`` copies of the recorded calls' messages with unique ids."""
    parts = [b"Asterisk Call Manager/11.0.0\r\n"]
    bodies = []
    for name in ("queue_answered.raw", "queue_abandoned.raw"):
        raw = (FIXTURES / name).read_bytes()
        body = raw.split(b"\r\n", 1)[1]  # drop the banner
        # the recorder sent some actions without ActionID; the client never does
        kept = [
            m for m in body.split(b"\r\n\r\n")
            if m and (not m.startswith(b"Response:") or b"ActionID:" in m)
        ]  # fmt: skip
        bodies.append(b"".join(m + b"\r\n\r\n" for m in kept))
    pattern = re.compile(rb"cti-fixture-rec-(\d+)\.(\d+)")
    for i in range(calls):
        body = bodies[i % len(bodies)]
        parts.append(pattern.sub(lambda m, i=i: b"b%d-%s.%s" % (i, m.group(1), m.group(2)), body))
    data = b"".join(parts).replace(b"ActionID: ", b"ActionID: " + ACTION_PREFIX.encode())
    messages = data.count(b"\r\n\r\n")
    return data, messages


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def run_ours(pieces: list[bytes]) -> int:
    parser = AmiParser()
    screen = AmiScreen(ACTION_PREFIX)
    screen.set_system_name(SYSTEM_NAME, at_boundary=True)
    model = CallModel()
    bus = EventBus()
    now = datetime.now(UTC)
    n = 0
    for piece in pieces:
        parser.receive_data(piece)
        for item in screen.feed(parser.events_received(), at_boundary=parser.at_boundary):
            if item.event:
                n += 1
                for event in model.handle(item, now):
                    bus.publish(event)
    for event in model.expire(datetime(2100, 1, 1, tzinfo=UTC)):
        bus.publish(event)
    return n


def run_panoramisk(pieces: list[bytes]) -> int:
    from panoramisk.ami_protocol import AMIProtocol
    from panoramisk.manager import Manager

    loop = asyncio.new_event_loop()
    try:
        manager = Manager(loop=loop)
        seen = 0

        def callback(_manager: object, _event: object) -> None:
            nonlocal seen
            seen += 1

        manager.register_event("*", callback)
        proto = AMIProtocol()
        proto.connection_made(transport=None)  # type: ignore[arg-type]
        proto.factory = manager
        proto.encoding = "utf-8"  # its default, ascii+ignore, drops every non-ASCII name
        for piece in pieces:
            proto.data_received(piece)
        return seen
    finally:
        loop.close()


def measure(
    fn: Callable[[list[bytes]], int], pieces: list[bytes], rounds: int
) -> tuple[float, int]:
    times = []
    n = 0
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        n = fn(pieces)
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data, messages = build_stream(args.calls)
    pieces = chunks(data)
    print(
        f"stream: {args.calls} calls, {messages} messages, {len(data) / 1e6:.1f} MB, "
        f"{len(pieces)} chunks of {CHUNK} B"
    )
    t_pan, n_pan = measure(run_panoramisk, pieces, args.rounds)
    t_ours, n_ours = measure(run_ours, pieces, args.rounds)
    print(f"panoramisk 1.4 parse + dispatch : {n_pan / t_pan:10.0f} events/s ({n_pan} events)")
    print(f"cti parser+screen+model+bus     : {n_ours / t_ours:10.0f} events/s ({n_ours} events)")
    print(f"ratio (cti / panoramisk)        : {t_pan / t_ours:10.2f}  (target >= 1.0)")


if __name__ == "__main__":
    main()
