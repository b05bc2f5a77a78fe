"""Acceptance fixtures: the real Asterisk (one per session), a test-side AMI client, and a
daemon factory running against both, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import struct
import warnings
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.config import (
    AgiConfig,
    AmiConfig,
    AsteriskConfig,
    DatabaseConfig,
    HttpConfig,
    Settings,
)
from cti.daemon import Daemon
from tests.acceptance import prebuild
from tests.acceptance.harness import (
    ami_client,
    end_channels,
    reset_asterisk,
    start_test_asterisk,
    stop_test_asterisk,
)
from tests.acceptance.proxy import CuttableProxy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "acceptance" in str(item.fspath):
            item.add_marker(pytest.mark.asterisk)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly:
        prebuild.start(session.items)  # the container tests' images, built meanwhile


def pytest_sessionfinish(session: pytest.Session) -> None:
    prebuild.stop()


@pytest.fixture(scope="session", autouse=True)
def _empty_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run in an empty directory: relative defaults (``var/ivr/menus.toml``: no menus, so
    the IVR hands calls to the default queue at once) never meet what ``make up`` left in
    the checkout's ``var/``."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(autouse=True)
def _migrated(migrated_db: None) -> None:
    """Every acceptance test's ``db_url`` comes migrated (a copy of the session's template):
    its daemons' start-up migration is a no-op check instead of every migration."""


@pytest.fixture(scope="session")
def asterisk() -> Iterator[ChrootAsterisk]:
    inst = start_test_asterisk()
    yield inst
    stop_test_asterisk(inst)


@pytest.fixture(scope="session")
async def ami_session(asterisk: ChrootAsterisk) -> AsyncIterator[AmiClient]:
    client = ami_client(asterisk)
    await client.start()
    await client.wait_connected(timeout=10)
    yield client
    await client.close()


@pytest.fixture
async def ami(asterisk: ChrootAsterisk, ami_session: AmiClient) -> AmiClient:
    """The test's own AMI connection to a freshly reset Asterisk (started again first if an
    earlier test's fault left the session's instance stopped, stuck or hung: one failure,
    not a cascade; the test that left it is failed by :func:`_channels_ended`)."""
    fault = await reset_asterisk(asterisk, ami_session)
    if fault is not None:  # after the last test's check: something outlived it
        warnings.warn(f"after {_last_on_asterisk[0]}: {fault}", stacklevel=1)
        print(f"[asterisk] !!! after {_last_on_asterisk[0]}: {fault}", flush=True)
    return ami_session


#: The last test on the session's Asterisk (named when a fault shows only after it).
_last_on_asterisk = ["(none yet)"]


@pytest.fixture(autouse=True)
def _on_asterisk(request: pytest.FixtureRequest) -> None:
    """A test on the session's Asterisk ends its channels when it is over
    (:func:`_channels_ended`, torn down after the test's other fixtures)."""
    if "asterisk" in request.fixturenames:
        request.getfixturevalue("_channels_ended")


@pytest.fixture
async def _channels_ended(
    request: pytest.FixtureRequest, asterisk: ChrootAsterisk, ami_session: AmiClient
) -> AsyncIterator[None]:
    """After the test (its daemons stopped, its SIPp gone), every channel on the session's
    Asterisk is ended (harness.end_channels: hang-ups first, then a restart). One that no
    hang-up ended, or an Asterisk that stopped answering, fails this test's teardown with
    what was stuck, and the next test starts on a restarted instance."""
    yield
    _last_on_asterisk[0] = request.node.nodeid
    fault = await end_channels(asterisk, ami_session)
    if fault is not None:
        print(f"[asterisk] !!! {request.node.nodeid} left: {fault}", flush=True)
        pytest.fail(f"{request.node.nodeid} left the session's Asterisk stuck: {fault}")


def daemon_settings(
    asterisk: ChrootAsterisk, db_url: str, *, ami_port: int | None = None, **sections: Any
) -> Settings:
    """The daemon's settings for the test instance; ``sections`` are feature sections
    (``acd={...}``, ``recordings={...}``)."""
    return Settings(
        ami=AmiConfig(
            port=ami_port or asterisk.spec.ami_port, username=asterisk.spec.ami_user,
            secret=asterisk.spec.ami_secret, ping_interval=1.0, action_timeout=3.0,
            reconnect_max_s=0.5,
        ),
        asterisk=AsteriskConfig(
            instance=asterisk.spec.name, log_dir=asterisk.log_dir, etc_dir=asterisk.etc_dir
        ),
        database=DatabaseConfig(url=db_url),
        http=HttpConfig(port=0),
        agi=AgiConfig(port=asterisk.spec.agi_port),
        **sections,
    )  # fmt: skip


DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(asterisk: ChrootAsterisk, db_url: str) -> AsyncIterator[DaemonFactory]:
    """Start daemons on this test's database; all are stopped at teardown."""
    started: list[Daemon] = []

    async def factory(*, ami_port: int | None = None) -> Daemon:
        daemon = Daemon(daemon_settings(asterisk, db_url, ami_port=ami_port))
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        return daemon

    yield factory
    for daemon in started:
        await daemon.stop()


@pytest.fixture
async def proxy(asterisk: ChrootAsterisk) -> AsyncIterator[CuttableProxy]:
    p = CuttableProxy(asterisk.spec.ami_port)
    await p.start()
    yield p
    await p.close()


# --- the one browser of the session --------------------------------------------------------

#: The tone the browser's fake microphone plays (a softphone test can find it in a recording).
FAKE_MIC_HZ = 1000


def write_tone(path: Path, hz: float, seconds: float = 10.0, rate: int = 48_000) -> Path:
    """A 16-bit mono PCM sine wave (what Chromium's fake audio capture accepts)."""
    frames = b"".join(
        struct.pack("<h", int(12_000 * math.sin(2 * math.pi * hz * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


@pytest.fixture(scope="session")
def fake_mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone(tmp_path_factory.mktemp("media") / "mic.wav", FAKE_MIC_HZ)


@pytest.fixture(scope="session")
async def browser(fake_mic_wav: Path) -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, launched once for every browser test of the session
    (pages get their own contexts). Media devices are fake and allowed without a prompt,
    the microphone playing :data:`FAKE_MIC_HZ`, so WebRTC pages work as in a real desk."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_mic_wav}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )  # fmt: skip
        yield b
        await b.close()


@pytest.fixture
async def played(asterisk: ChrootAsterisk) -> AsyncIterator[Path]:
    """A log channel with every file Asterisk plays (verbose 3), removed afterwards."""
    name = f"cti-played-{secrets.token_hex(4)}.log"
    await asyncio.to_thread(asterisk.cli, f"logger add channel {name} notice,warning,verbose(3)")
    await asyncio.to_thread(asterisk.cli, "core set verbose 3")
    yield asterisk.log_dir / name
    await asyncio.to_thread(asterisk.cli, "core set verbose 0")
    await asyncio.to_thread(asterisk.cli, f"logger remove channel {name}")
    (asterisk.log_dir / name).unlink(missing_ok=True)
