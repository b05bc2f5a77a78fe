"""Recordings when the node does not see Asterisk's monitor spool (a node on another host;
recordings.spool, docs/deploy.md): the sidecar ``spool-serve`` runs beside Asterisk on
its spool, the node's ``[recordings] root`` is a directory of its own. An answered call
is recorded by Asterisk, pulled by the node once MixMonitor closed it, removed from
Asterisk's spool, and processed and served from the node's copy as always. The sidecar
refuses what is not signed for that file and that action."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from recordings.spool import SpoolSigner, spool_app
from tests.acceptance import test_recordings
from tests.acceptance.harness import free_port
from tests.acceptance.test_recordings import (
    Events,
    RecDaemonFactory,
    agent,
    call_queue,
    settled,
    sim,
)

rec_daemon = test_recordings.rec_daemon  # the recordings tests' fixture, here too

SECRET = "spool-secret-for-the-test-0123456789"


@pytest.fixture
async def sidecar(asterisk: ChrootAsterisk) -> AsyncIterator[str]:
    """``cti recordings spool-serve``'s application on Asterisk's monitor directory."""
    runner = web.AppRunner(spool_app(asterisk.monitor_dir, SpoolSigner(SECRET)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_call_recorded_on_asterisk_is_pulled_and_processed_on_the_node(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk, sidecar: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    mine = tmp_path / "node-recordings"
    mine.mkdir()
    daemon = await rec_daemon(root=str(mine), spool_url=sidecar, spool_secret=SECRET)
    await sim(ami, ring=0.3, talk=3)
    await agent(ami, "101")
    with Events(ami) as events:
        lid = await call_queue(ami)
        await events.wait("AgentConnect", lid)
        await events.ended(lid)
    [row] = await settled(daemon, lid)
    assert row.status == "ready", row.reason
    assert row.duration_s is not None and row.duration_s >= 2.0, row.duration_s
    local = mine / row.path
    assert local.suffix == ".mp3" and local.is_file()
    data = local.read_bytes()
    assert row.size_bytes == len(data) and row.checksum == hashlib.sha256(data).hexdigest()
    # off Asterisk's spool once the node had it
    wav = Path(row.path).with_suffix(".wav")
    assert not (asterisk.monitor_dir / wav).exists()
    assert not (asterisk.monitor_dir / row.path).exists()


async def test_the_sidecar_serves_only_signed_paths_for_their_action(
    asterisk: ChrootAsterisk, sidecar: str
) -> None:
    name = "2026/11/29/cti-20261129T000000-spooltest-0.wav"
    target = asterisk.monitor_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"RIFF" + (36).to_bytes(4, "little") + b"WAVE" + bytes(32))
    signer = SpoolSigner(SECRET)
    other = SpoolSigner(SECRET.upper())
    try:
        async with aiohttp.ClientSession() as http:

            async def status(method: str, path: str) -> int:
                async with http.request(method, sidecar + path) as r:
                    return r.status

            get = signer.url_path("GET", name)
            assert await status("GET", get) == 200
            assert await status("GET", other.url_path("GET", name)) == 403
            # the listing (reconcile adopts what no row names): its own signature only
            async with http.get(sidecar + signer.list_path()) as r:
                assert r.status == 200
                assert [name, 44] in [f[:2] for f in (await r.json())["files"]]
            assert await status("GET", other.list_path()) == 403
            assert await status("GET", "/spool/v1/" + get.split("/")[3]) == 403
            assert await status("DELETE", get) == 403  # a GET link does not delete
            sig = get.split("/")[3]
            assert await status("GET", f"/spool/v1/{sig}/../../etc/passwd") in (403, 404)
            another = "2026/11/29/cti-20261129T000000-other-0.wav"
            assert await status("GET", f"/spool/v1/{sig}/{another}") == 403
            # still being written (header sizes not final): 409, the node retries
            target.write_bytes(b"RIFF" + (0).to_bytes(4, "little") + b"WAVE" + bytes(100))
            assert await status("GET", get) == 409
            assert await status("DELETE", signer.url_path("DELETE", name)) == 204
            assert not target.exists()
            assert await status("GET", get) == 404
            assert await status("DELETE", signer.url_path("DELETE", name)) == 404
    finally:
        target.unlink(missing_ok=True)
