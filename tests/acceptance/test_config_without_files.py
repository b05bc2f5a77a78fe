"""A node with no access to its Asterisk server's configuration directory (a node on
another host, or one that took the server over; decision 0031): a queue created and a
phone provisioned through its API are in effect on that server, since the ACD's
queues_cti.conf and the phones' files (phones.pjsip) reach Asterisk over AMI. The node's
``asterisk.etc_dir`` points at a directory Asterisk never reads, and nothing is written
there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from acd import store as acd_store
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.config import AsteriskConfig, Settings
from cti.daemon import Daemon
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from phones.pjsip import shard_file
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import SQLITE_ONLY, wait_for
from tests.acceptance.sip_phones import sipp_register, start_caller, start_desk_phone
from tests.acceptance.test_phones import Api


@pytest.fixture
async def remote_node(
    asterisk: ChrootAsterisk, ami: AmiClient, db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Daemon, Path]]:
    """The daemon as a node on another host would run: its ``asterisk.etc_dir`` is not
    the server's (an empty directory of its own), no ``[acd] asterisk_etc_dir``."""
    elsewhere = tmp_path / "not-the-servers-etc"
    elsewhere.mkdir()
    base = daemon_settings(asterisk, db_url)
    settings = Settings(**{
        **base.model_dump(exclude={"asterisk"}),
        "asterisk": AsteriskConfig(
            instance=asterisk.spec.name, log_dir=asterisk.log_dir, etc_dir=elsewhere,
            sip_port=asterisk.spec.sip_port, ws_port=asterisk.spec.http_port,
        ),
    })  # fmt: skip
    daemon = Daemon(settings)
    await daemon.start()
    await daemon.ami.wait_connected(timeout=15)
    yield daemon, elsewhere
    await daemon.stop()
    # the next tests start from the shipped queues (as test_acd leaves them)
    (asterisk.etc_dir / "queues_cti.conf").unlink(missing_ok=True)
    await ami.send_action("QueueReload", {"Parameters": "yes"})


async def queue_params(ami: AmiClient, queue: str) -> dict[str, str]:
    _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
    params = [dict(i.items()) for i in items if i.get("Event") == "QueueParams"]
    return params[0] if params else {}


@SQLITE_ONLY
async def test_a_queue_and_a_phone_made_through_the_api_work_without_the_servers_files(
    ami: AmiClient, asterisk: ChrootAsterisk, remote_node: tuple[Daemon, Path], tmp_path: Path
) -> None:
    daemon, elsewhere = remote_node
    (asterisk.etc_dir / "queues_cti.conf").unlink(missing_ok=True)  # no earlier test's
    admin = Api(daemon, await create_token(daemon.db, "ops", "admin"))

    # a new queue, and the support queue (where the carrier's calls go) reconfigured
    status, body = await admin("PUT", "/api/v1/acd/queues/billing",
                               {"strategy": "linear", "wrapup_s": 7})  # fmt: skip
    assert status == 200 and body["applied"] is True, body
    status, body = await admin("PUT", "/api/v1/acd/queues/support",
                               {"strategy": "leastrecent"})  # fmt: skip
    assert status == 200 and body["applied"] is True, body
    billing = await wait_for(lambda: queue_params(ami, "billing"), timeout=10,
                             what="Asterisk to know the new queue")  # fmt: skip
    assert billing["Strategy"] == "linear"
    assert (await queue_params(ami, "support"))["Strategy"] == "leastrecent"
    # the phone on the agent; the agent in the support queue
    await acd_store.put_agent(daemon.db, "agent101", "", [("local", "101")], {"support": 0})
    status, sip = await admin("POST", "/api/v1/phones", {"agent": "agent101", "kind": "sip"})
    assert status == 201 and sip["applied"], sip
    name, password = sip["phone"]["name"], sip["credentials"]["password"]
    assert sip["credentials"]["registrar"]["udp"].endswith(f":{asterisk.spec.sip_port}")

    ok, port, out = await sipp_register(asterisk, name, password, cwd=tmp_path)
    assert ok, out
    phone = await start_desk_phone(port, cwd=tmp_path)
    try:
        agent = Api(daemon, await create_token(daemon.db, "agent101", "agent"))
        status, body = await agent("POST", "/api/v1/acd/agents/agent101/status",
                                   {"status": "available"})  # fmt: skip
        assert status == 200, body
        caller = await start_caller(asterisk, cwd=tmp_path, talk_ms=2000)
        out_caller, _ = await asyncio.wait_for(caller.communicate(), 60)
        assert caller.returncode == 0, out_caller.decode(errors="replace")[-2000:]
        out_phone, _ = await asyncio.wait_for(phone.communicate(), 30)
        assert phone.returncode == 0, out_phone.decode(errors="replace")[-2000:]
    finally:
        if phone.returncode is None:
            phone.kill()
            await phone.wait()

    async def answered_row() -> list[CallRow]:
        async with daemon.db.session() as s:
            rows = (await s.execute(select(CallRow).where(CallRow.agent == "agent101"))).scalars()
            return [r for r in rows if r.disposition == "answered"]

    (row,) = await wait_for(answered_row, timeout=20, what="the answered call's row")
    assert row.queue == "support"
    # Asterisk wrote both files itself; the node wrote nothing where it was pointed
    assert list(elsewhere.iterdir()) == []
    assert "[billing]" in (asterisk.etc_dir / "queues_cti.conf").read_text()
    assert f"[{name}](phone-sip)" in (asterisk.etc_dir / shard_file(name)).read_text()
