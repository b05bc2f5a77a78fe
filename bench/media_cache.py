"""A prompt's first-ever play over HTTP (decision 0032): the caller's silence before its
audio, with and without the node's warm-up of Asterisk's media cache (ivr.media_cache).

Against a real Asterisk (as the acceptance tests start it) and the node's real media
server (ivr.media) on this host. Each round plays a WAV of exactly ``AUDIO_S`` under a
name Asterisk never saw, on the answered side of a Local channel (Originate ... Playback):

- ``cold`` (the same-run baseline, what every first play did before): Asterisk fetches
  the URL on the channel's thread when Playback opens it;
- ``warmed``: the node's MediaCache was told the URL (as a menu load or a queue push
  tells it) and had Asterisk refresh it first; the play finds it cached.

Time to first audio = (channel Up -> its Hangup, by AMI event Timestamps) - AUDIO_S: the
fetch plus the constant cost of starting Playback and hanging up. ``--delay`` adds that
many seconds to each answer of the media server (a node that is slow or far away;
res_http_media_cache gives up after 5 s). Printed ``name: value unit``, medians of
``--rounds`` rounds.

    .venv/bin/python bench/media_cache.py [--rounds 7] [--delays 0,0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import secrets
import statistics
import struct
import sys
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.*

from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from ivr.media import MediaServer, MediaSigner, media_key
from ivr.media_cache import MediaCache
from tests.acceptance.harness import ami_client, free_port, start_test_asterisk, stop_test_asterisk

AUDIO_S = 1.0
RATE = 8000


def tone_wav(seconds: float) -> bytes:
    """``seconds`` of a 440 Hz tone, 8 kHz mono 16-bit (format_wav's, no transcoding)."""
    n = int(RATE * seconds)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / RATE))) for i in range(n)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames)
    return out.getvalue()


class Node:
    """The node's media server on a port of its own, answering ``delay`` s late."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.signer = MediaSigner(media_key(secrets.token_hex(8)), f"http://127.0.0.1:{self.port}")
        self.server = MediaServer(self.signer, directory)
        self.directory = directory
        self.delay = 0.0
        self.audio = tone_wav(AUDIO_S)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        @web.middleware
        async def late(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            await asyncio.sleep(self.delay)
            return await handler(request)

        app = web.Application(middlewares=[late])
        self.server.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def new_prompt(self) -> str:
        """A URL Asterisk never saw (a fresh name, the same audio)."""
        name = secrets.token_hex(20)
        (self.directory / f"{name}.wav").write_bytes(self.audio)
        return self.signer.url(name)


class Player:
    """Plays a URL on an answered Local channel and times it by AMI events."""

    def __init__(self, ami: AmiClient) -> None:
        self.ami = ami
        self._waiting: dict[str, tuple[dict[str, float], asyncio.Future[float]]] = {}
        ami.add_event_handler(self._on_event, events=("Newstate", "Hangup"))

    def _on_event(self, msg: Message) -> None:
        entry = self._waiting.get(msg.get("Uniqueid", ""))
        if entry is None:
            return
        times, done = entry
        stamp = float(msg.get("Timestamp", "0") or 0)
        if msg.event == "Newstate" and msg.get("ChannelState") == "6":
            times["up"] = stamp
        elif msg.event == "Hangup" and "up" in times and not done.done():
            done.set_result(stamp - times["up"])

    async def play(self, url: str) -> float:
        uid = f"bench-{secrets.token_hex(6)}"
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[uid] = ({}, done)
        try:
            await self.ami.send_action(
                "Originate",
                {
                    "Channel": "Local/1000@cti-sim-agents", "Application": "Playback",
                    "Data": url, "Variable": ["CTI_SIM_RING=0", "CTI_SIM_TALK=10"],
                    "Async": "true", "ChannelId": uid, "OtherChannelId": uid + "-2",
                },
            )  # fmt: skip
            async with asyncio.timeout(30):
                return await done - AUDIO_S
        finally:
            self._waiting.pop(uid, None)


async def run(inst: ChrootAsterisk, rounds: int, delays: list[float]) -> None:
    ami = ami_client(inst)
    player = Player(ami)
    cache_ami = ami_client(inst)
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(Path(tmp))
        cache = MediaCache(cache_ami, node.signer)
        await node.start()
        await ami.start()
        await ami.wait_connected(timeout=10)
        await cache.start()
        await cache_ami.wait_connected(timeout=10)
        try:
            await player.play(node.new_prompt())  # Asterisk's first curl / Local: not timed
            for delay in delays:
                node.delay = delay
                label = f"{int(delay * 1000)} ms node" if delay else "local node"
                cold, warmed, warm_up = [], [], []
                for _ in range(rounds):
                    cold.append(await player.play(node.new_prompt()))
                    url = node.new_prompt()
                    t0 = time.perf_counter()
                    cache.plays("bench", [url])
                    await cache.settled(timeout=30)
                    warm_up.append(time.perf_counter() - t0)
                    warmed.append(await player.play(url))
                    cache.plays("bench", [])  # deleted from Asterisk's cache again
                    await cache.settled(timeout=30)
                c, w = statistics.median(cold), statistics.median(warmed)
                print(f"{label} first play cold, time to first audio: {c * 1000:.1f} ms")
                print(f"{label} first play warmed, time to first audio: {w * 1000:.1f} ms")
                print(f"{label} silence saved per first play: {(c - w) * 1000:.1f} ms")
                print(
                    f"{label} warm-up (media cache refresh over AMI, no caller): "
                    f"{statistics.median(warm_up) * 1000:.0f} ms"
                )
            print(f"rounds per figure: {rounds} rounds")
            print(f"load average: {os.getloadavg()[0]:.2f} loadavg")
            print(f"media server requests: {sum(node.server.counts.values())} requests")
        finally:
            await cache.close()
            await ami.close()
            await node.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--delays", default="0,0.3")
    args = ap.parse_args()
    inst = start_test_asterisk("-bench-media")
    try:
        await run(inst, args.rounds, [float(x) for x in args.delays.split(",")])
    finally:
        stop_test_asterisk(inst)


if __name__ == "__main__":
    asyncio.run(main())
