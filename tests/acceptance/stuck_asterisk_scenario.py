"""Tests that leave the session's Asterisk stuck, each followed by one that needs it working.

Not part of the suite (not ``test_*.py``): tests/acceptance/test_asterisk_reset.py runs this
file in a pytest of its own (with an Asterisk of its own) and checks what became of each
test. The faults are real: a call whose FastAGI server never answers (no hang-up ends it:
Asterisk waits on the socket, not on the channel), and an Asterisk that is stopped
(SIGSTOP: running, but answering nothing).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from tests.acceptance.harness import live_channels, originate_call, wait_for

#: The silent FastAGI server and its connections: open past the test that made them (the
#: fault outlives the test), closed by the next one (the session's event loop runs them).
_silent: list[asyncio.Server | asyncio.StreamWriter] = []


async def _serve_silently(port: int) -> None:
    """Accept FastAGI connections on ``port``; never answer, never close them."""

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _silent.append(writer)

    _silent.append(await asyncio.start_server(hold, "127.0.0.1", port))


async def _in_agi(ami: AmiClient) -> list[str]:
    return [c["Channel"] for c in await live_channels(ami) if c.get("Application") == "AGI"]


async def _works(asterisk: ChrootAsterisk, ami: AmiClient) -> None:
    """No channel is left, and a call runs and ends by itself (its AGI refused now: the
    dialplan's fallback queues it until the caller hangs up)."""
    while _silent:
        _silent.pop().close()
    assert await live_channels(ami) == []
    await originate_call(ami, hold_s=1)
    await wait_for(lambda: live_channels(ami), timeout=10, what="the call's channels")
    await wait_for(lambda: _no_channels(ami), timeout=15, what="the call to end by itself")


async def _no_channels(ami: AmiClient) -> bool:
    return not await live_channels(ami)


async def test_leaves_a_call_in_an_agi_that_never_answers(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    await _serve_silently(asterisk.spec.agi_port)
    await originate_call(ami, hold_s=60)
    (stuck,) = await wait_for(lambda: _in_agi(ami), timeout=10, what="the call in its AGI")
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")
    await asyncio.sleep(2)
    assert await _in_agi(ami) == [stuck]  # a hang-up does not end it


async def test_the_next_test_after_a_stuck_call_gets_a_working_asterisk(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    await _works(asterisk, ami)


def _all_threads_stopped(pids: list[int]) -> bool:
    """Every thread of each of ``pids`` is stopped (state T in its stat, read after the
    command name, which may hold spaces and parentheses)."""
    states = [
        stat.read_text().rpartition(")")[2].split()[0]
        for pid in pids
        for stat in Path(f"/proc/{pid}/task").glob("*/stat")
    ]
    return bool(states) and all(state == "T" for state in states)


async def test_leaves_asterisk_stopped(asterisk: ChrootAsterisk) -> None:
    unshare = int(json.loads(asterisk.state_file.read_text())["pid"])
    children = Path(f"/proc/{unshare}/task/{unshare}/children")
    # Asterisk (unshare's child), which stops answering
    pids = [int(pid) for pid in (await asyncio.to_thread(children.read_text)).split()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    # the stop is not done when kill returns: one thread takes the signal and stops the
    # others, and on a busy machine the rest answered AMI meanwhile (seen in CI)
    await wait_for(
        lambda: asyncio.to_thread(_all_threads_stopped, pids),
        timeout=10, what="every thread of Asterisk to stop",
    )  # fmt: skip


async def test_the_next_test_after_a_stopped_asterisk_gets_a_working_one(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    await _works(asterisk, ami)
