"""The IVR's voicemail option against the real Asterisk: the caller presses the option,
hears the mailbox greeting, speaks (plays audio), hangs up, and the message is in the
instance's voicemail spool (mailbox 8000 of dialplans/voicemail.conf)."""

from __future__ import annotations

import asyncio
import secrets
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from tests.acceptance.harness import wait_for
from tests.acceptance.test_ivr_harness import IvrFactory, ivr_daemons

VM_DNIS = "4008007777"
MENUS = f"""\
[defaults]
menu = "main"
operator = "support"

[prompts]
beep = {{ file = "beep" }}

[menus.main]
greeting = "beep"
timeout = 3
retries = 0
fallback = {{ action = "queue", target = "support" }}
options."9" = {{ action = "voicemail", target = "8000" }}

[menus.vm]
greeting = "beep"
timeout = 1
retries = 0
fallback = {{ action = "voicemail", target = "8000" }}

[numbers."{VM_DNIS}"]
menu = "vm"
"""


@pytest.fixture
async def start_ivr(asterisk: ChrootAsterisk, tmp_path: Path) -> AsyncIterator[IvrFactory]:
    async with ivr_daemons(asterisk, tmp_path) as factory:
        yield factory


def inbox(asterisk: ChrootAsterisk) -> Path:
    return asterisk.base / "spool" / "voicemail" / "default" / "8000" / "INBOX"


def messages(asterisk: ChrootAsterisk) -> set[str]:
    box = inbox(asterisk)
    return {p.name for p in box.glob("msg*.wav")} if box.is_dir() else set()


async def speaking_caller(ami: AmiClient, dnis: str) -> str:
    """A caller whose side plays audio (hello-world, ~20 s) into the call; it hangs up
    when the audio ends."""
    linkedid = f"t-{secrets.token_hex(6)}"
    await ami.send_action(
        "Originate",
        {
            "Channel": f"Local/{dnis}@cti-inbound", "CallerID": "13700137000",
            "Application": "Playback", "Data": "&".join(["hello-world"] * 14),
            "Async": "true", "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
        },
    )  # fmt: skip
    return linkedid


async def test_caller_leaves_a_voicemail(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr(MENUS)
    before = messages(asterisk)
    linkedid = await speaking_caller(ami, VM_DNIS)
    done = await ivr.completed(linkedid)
    assert (done.action, done.target, done.reason) == ("voicemail", "8000@default", "fallback")

    async def new_message() -> set[str]:
        return messages(asterisk) - before

    (name,) = await wait_for(new_message, timeout=60, what="a message in the 8000 inbox")

    async def complete() -> bool:  # the metadata file is written when recording ends
        return (inbox(asterisk) / name).with_suffix(".txt").exists()

    await wait_for(complete, timeout=30, what="the message's metadata")
    wav = inbox(asterisk) / name
    meta = await asyncio.to_thread(wav.with_suffix(".txt").read_text)
    assert "callerid=13700137000" in meta
    with wave.open(str(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds >= 2, seconds  # the caller's audio, not an empty file


async def test_voicemail_menu_option(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr(MENUS)
    _, done = await ivr.route(ami, dtmf="9", hold_s=15)
    assert (done.action, done.target, done.reason) == ("voicemail", "8000@default", "choice")

    async def in_voicemail() -> bool:
        out = await asyncio.to_thread(asterisk.cli, "core show channels concise")
        return any("!VoiceMail!8000@default" in line for line in out.splitlines())

    await wait_for(in_voicemail, timeout=10, what="the caller in VoiceMail(8000@default)")
