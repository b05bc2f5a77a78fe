"""Queue announcements in the queue's language against the real Asterisk (decision
0026): two SIPp callers wait in a Mandarin queue with position announcements; the second
hears "您前面还有" + 2 in Mandarin + "位客户在等待" - the text-to-speech sounds the ACD wrote
into queues_cti.conf and Asterisk's Chinese number syntax with the zh digits rendered
beside them - never app_queue's stock English sounds. What Asterisk plays is read from a
log channel the test adds (verbose 3: every file played, with its language).

On SQLite only (harness.SQLITE_ONLY): nothing here depends on the store's server."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from acd import store as acd_store
from acd.feature import AcdFeature
from acd.prompts import PHRASES
from acd.queues_conf import FILE_NAME
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from ivr.feature import IvrFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import SQLITE_ONLY, start_sipp, wait_for

SIPP = Path(__file__).parent / "sipp"
PCAPS = Path("/usr/share/sip-tester")
QUEUE = "support"

Stack = Callable[[], Awaitable[Daemon]]


@pytest.fixture
async def stack(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient, tmp_path: Path
) -> AsyncIterator[Stack]:
    started: list[Daemon] = []
    sounds = asterisk.base / "lib" / "sounds" / "cti"
    settings = daemon_settings(
        asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
        ivr={"menus": str(tmp_path / "no-menus.toml"), "prompt_dir": str(sounds),
             "prompt_dir_asterisk": f"{asterisk.inner}/lib/sounds/cti",
             "sounds_dir": str(asterisk.root / "usr/share/asterisk/sounds")},
    )  # fmt: skip

    async def factory() -> Daemon:
        daemon = Daemon(settings, features=[AcdFeature(), IvrFeature()])
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        return daemon

    yield factory
    for daemon in started:
        await daemon.stop()
    (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
    await ami.send_action("QueueReload", {"Parameters": "yes"})
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")


async def sip_caller(
    asterisk: ChrootAsterisk, number: str, tmp: Path
) -> asyncio.subprocess.Process:
    scenario = tmp / "uac_keys.xml"
    text = (SIPP / "uac_keys.xml").read_text()
    scenario.write_text(text.replace("@PCAP@", str(PCAPS / "dtmf_2833_1.pcap")))
    return await start_sipp(asterisk, scenario, "-m", "1", "-set", "caller", number, cwd=tmp)


def configured(etc: Path, queue: str) -> dict[str, str]:
    """The ``queue-*`` sounds of ``queue`` in queues_cti.conf."""
    text = (etc / FILE_NAME).read_text()
    section = text.split(f"[{queue}]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r"^(queue-[a-z-]+) = (\S+)$", section, re.M))


@SQLITE_ONLY
async def test_waiting_callers_hear_their_position_in_mandarin(
    asterisk: ChrootAsterisk, ami: AmiClient, stack: Stack, played: Path, tmp_path: Path
) -> None:
    daemon = await stack()
    f = next(f for f in daemon.features if isinstance(f, AcdFeature))
    assert f.service is not None
    params = {"language": "zh", "announce_position": True, "announce_frequency_s": 4,
              "max_wait_s": 120}  # fmt: skip
    await acd_store.put_queue(f.service.db, acd_store.queue_params(QUEUE, params))
    await f.service.apply_queues()
    sounds = configured(asterisk.etc_dir, QUEUE)
    assert set(sounds) >= set(PHRASES["zh"]), sounds  # every phrase spoken, none stock
    inner = f"{asterisk.inner}/lib/sounds/cti/"
    assert all(v.startswith(inner) for v in sounds.values()), sounds
    zh_digits = asterisk.root / "usr/share/asterisk/sounds/zh/digits"
    assert (zh_digits / "2.wav").is_file() and (zh_digits / "20.wav").is_file()
    zh_two = zh_digits / "2.wav"
    mtime = zh_two.stat().st_mtime
    marked = mtime - 3600
    os.utime(zh_two, (marked, mtime))

    seen: list[Message] = []
    ami.add_event_handler(seen.append)
    procs = []
    try:
        for number in ("13822220001", "13822220002"):
            procs.append(await sip_caller(asterisk, number, tmp_path))

            async def joined(number: str = number) -> list[Message]:
                return [m for m in seen if m.event == "QueueCallerJoin"
                        and m.get("CallerIDNum") == number]  # fmt: skip

            await wait_for(joined, timeout=20, what=f"{number} waiting")
        second = next(m for m in seen if m.event == "QueueCallerJoin"
                      and m.get("CallerIDNum") == "13822220002")  # fmt: skip
        channel = second["Channel"]
        assert second.get("Position") == "2"
        reply = await ami.send_action(
            "Getvar", {"Channel": channel, "Variable": "CHANNEL(language)"}
        )
        assert reply.get("Value") == "zh", reply
        thereare = sounds["queue-thereare"]
        callswaiting = sounds["queue-callswaiting"]

        def heard() -> list[str]:
            lines = played.read_text(errors="replace").splitlines() if played.exists() else []
            return [ln for ln in lines if channel in ln and "Playing" in ln]

        async def whole_announcement() -> list[str]:
            lines = await asyncio.to_thread(heard)
            text = "\n".join(lines)
            return lines if callswaiting in text else []

        try:
            lines = await wait_for(whole_announcement, timeout=20, what="the announcement")
        except AssertionError:
            log = await asyncio.to_thread(played.read_text, errors="replace")
            raise AssertionError(f"{channel} never heard it; played log:\n{log[-3000:]}") from None
    finally:
        ami.remove_event_handler(seen.append)
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    text = "\n".join(lines)
    order = [thereare, "digits/2", callswaiting]
    at = [text.find(x) for x in order]
    assert all(i >= 0 for i in at) and at == sorted(at), text
    assert "(language 'zh')" in next(ln for ln in lines if "digits/2" in ln), text
    assert "'queue-thereare" not in text and "'queue-callswaiting" not in text, text
    # ... and the file it played for digits/2 is our Mandarin one: it was read (relatime
    # updates an access time older than the modification time)
    assert zh_two.stat().st_atime > marked, "zh/digits/2 was never read"
    log = await asyncio.to_thread(played.read_text, errors="replace")
    assert not re.search(r"zh/digits/\S+ does not exist|File digits/2 does not exist", log), log
