"""Issue 13 item 9 (FastAGI): a peer that sends a valid header and goes silent is cut as
soon as the daemon sees that Asterisk has no such channel, while a real caller listening
to a prompt longer than the command timeout is not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.daemon import Daemon
from ivr.feature import IvrFeature
from tests.acceptance.test_ivr_harness import MENUS, Ivr, call, ivr_settings

COMMAND_TIMEOUT_S = 1.0


@pytest.fixture
async def ivr(asterisk: ChrootAsterisk, tmp_path: Path) -> AsyncIterator[Ivr]:
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS)
    data = ivr_settings(asterisk, f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", menus).model_dump()
    data["agi"]["command_timeout_s"] = COMMAND_TIMEOUT_S
    feature = IvrFeature()
    daemon = Daemon(Settings(**data), features=[feature])
    await daemon.start()
    try:
        await daemon.ami.wait_connected(timeout=15)
        yield Ivr(daemon, feature)
    finally:
        await daemon.stop()


def header(uniqueid: str) -> bytes:
    lines = [
        "agi_network: yes", "agi_network_script: ivr", "agi_request: agi://127.0.0.1/ivr",
        "agi_channel: PJSIP/trunk-00000099", "agi_uniqueid: " + uniqueid,
        "agi_callerid: 13800138000", "agi_arg_1: 4008001234", "agi_arg_2: " + uniqueid,
    ]  # fmt: skip
    return ("\n".join(lines) + "\n\n").encode()


async def test_silent_peer_with_a_made_up_channel_is_cut(
    asterisk: ChrootAsterisk, ami: AmiClient, ivr: Ivr
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ivr.daemon.agi.port)
    try:
        writer.write(header(f"{asterisk.spec.system_name}-1795999999.1"))
        t0 = time.monotonic()
        first = await asyncio.wait_for(reader.readline(), 5)
        assert first.startswith(b"GET DATA ")  # the main menu's prompt: then, silence
        rest = await asyncio.wait_for(reader.read(), 10)
        elapsed = time.monotonic() - t0
    finally:
        writer.close()
    assert rest == b""  # closed by the daemon
    assert elapsed < 3 * COMMAND_TIMEOUT_S  # not the 600 s a prompt may take


async def test_a_caller_listening_longer_than_the_command_timeout_is_served(
    ami: AmiClient, ivr: Ivr
) -> None:
    t0 = time.monotonic()
    linkedid = await call(ami, hold_s=20)  # presses nothing: the menu times out twice
    done = await ivr.completed(linkedid)
    assert time.monotonic() - t0 > 2 * 2  # two 2 s waits, each longer than 1 s
    assert (done.action, done.target, done.reason) == ("queue", "support", "fallback")
    assert ivr.choices(linkedid) == [("main", "timeout", ""), ("main", "timeout", "")]
