"""Acceptance fixtures: the real Asterisk (one per session), a test-side AMI client, and a
daemon factory running against both, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

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
from tests.acceptance.harness import (
    ami_client,
    reset_asterisk,
    start_test_asterisk,
    stop_test_asterisk,
)
from tests.acceptance.proxy import CuttableProxy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "acceptance" in str(item.fspath):
            item.add_marker(pytest.mark.asterisk)


@pytest.fixture(scope="session", autouse=True)
def _empty_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run in an empty directory: relative defaults (``var/ivr/menus.toml``: no menus, so
    the IVR hands calls to the default queue at once) never meet what ``make up`` left in
    the checkout's ``var/``."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


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
    """The test's own AMI connection to a freshly reset Asterisk."""
    await ami_session.wait_connected(timeout=30)
    await reset_asterisk(asterisk, ami_session)
    return ami_session


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
