"""Any node plays any recording, with no directory shared between nodes (issue #18,
decision 0033).

Server A (the session's Asterisk), node n1 driving it and n2 standing by, on PostgreSQL
and NATS; each node has a recordings root of its own and pulls from the sidecar beside
Asterisk (``spool-serve`` on A's monitor spool), and each announces its
``[cluster] http_url``. A queue call answered by a simulated agent is recorded by
Asterisk, pulled, transcoded and held by n1 (its row says so). Through n2, which does
not have the file:

- the bearer route plays it whole (200, the same bytes as n1's file), seeks in it (206
  with ``Content-Range``; a range past the end is 416 ``bytes */size``) and downloads it
  (``Content-Disposition``), each listen audited by n2 as on one node;
- a signed playback link n2 gave plays with seeking on n2;
- an agent who did not take the call is refused on n2 as on n1 (403);
- n1's peer route refuses a request not signed with the nodes' shared key (403);
- n2's reconcile leaves n1's recording alone (not "missing": it is on n1's disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.tokens import create_token
from recordings.models import Recording
from recordings.store import RecordingStore
from tests.acceptance.harness import wait_for
from tests.acceptance.test_cluster import (  # noqa: F401  (fixtures)
    node_per_server,
    pg_url,
    restore,
    set_globals,
    stream,
)
from tests.acceptance.test_recordings import call_queue
from tests.acceptance.test_recordings_spool import SECRET as SPOOL_SECRET
from tests.acceptance.test_recordings_spool import sidecar  # noqa: F401  (fixture)
from tests.cluster_services import driving, members, queue_with_agents

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


async def test_a_recording_held_by_one_node_plays_and_seeks_through_another(
    asterisk: ChrootAsterisk, ami: AmiClient, pg_url: str, stream: str,  # noqa: F811
    sidecar: str, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    queue = f"crq{secrets.token_hex(3)}"
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    tokens = await queue_with_agents(db, queue, [("cr-ag1", "3231")])
    boss = {"Authorization": f"Bearer {await create_token(db, 'cr-sup', 'supervisor')}"}
    other = {"Authorization": f"Bearer {await create_token(db, 'cr-ag9', 'agent')}"}
    nodes = node_per_server(
        tmp_path, {"n1": (asterisk, "a"), "n2": (asterisk, "a")}, db_url=pg_url, stream=stream
    )
    url_secret = secrets.token_hex(16)
    roots = {}
    for name, node in nodes.items():
        roots[name] = tmp_path / f"{name}-recordings"
        roots[name].mkdir()
        text = node.config.read_text().replace(
            "[cluster]\n", f'[cluster]\nhttp_url = "{node.base}"\n', 1
        )
        node.config.write_text(
            text + f'[recordings]\nroot = "{roots[name]}"\nspool_url = "{sidecar}"\n'
            f'spool_secret = "{SPOOL_SECRET}"\nurl_secret = "{url_secret}"\nformat = "mp3"\n'
        )
    n1, n2 = nodes["n1"], nodes["n2"]
    store = RecordingStore(db)
    try:
        await n1.start()
        await wait_for(lambda: driving(n1), timeout=30, what="n1 to drive server A")
        await n2.start()  # a standby: serves HTTP, drives nothing
        await set_globals(ami, queue)
        await wait_for(lambda: _has(members(ami, queue), "Local/3231@cti-sim-agents/n"),
                       timeout=30, what="the agent in the queue on A")  # fmt: skip
        lid = await call_queue(ami, queue)

        async def ready() -> Recording | None:
            rows = await store.by_linkedid(lid)
            return rows[0] if rows and rows[0].status == "ready" else None

        row = await wait_for(ready, timeout=60, what=f"the recording of {lid} ready")
        assert row is not None and row.node == "n1" and row.format == "mp3", row
        held = (roots["n1"] / row.path).read_bytes()
        assert hashlib.sha256(held).hexdigest() == row.checksum
        assert not (roots["n2"] / row.path).exists()  # n2 has no copy, nor gets one
        size = len(held)

        async with aiohttp.ClientSession() as http:

            async def get(path: str, headers: dict[str, str]) -> tuple[int, bytes, Any]:
                async with http.get(n2.base + path, headers=headers) as r:
                    return r.status, await r.read(), r.headers

            audio = f"/api/v1/recordings/{row.id}/audio"
            status, body, _ = await get(audio, boss)
            assert status == 200 and body == held
            status, body, h = await get(audio, {**boss, "Range": "bytes=100-1123"})
            assert status == 206 and body == held[100:1124], status
            assert h["Content-Range"] == f"bytes 100-1123/{size}"
            assert h["Content-Type"] == "audio/mpeg" and h["Accept-Ranges"] == "bytes"
            status, _, h = await get(audio, {**boss, "Range": f"bytes={size + 10}-"})
            assert status == 416 and h["Content-Range"] == f"bytes */{size}"
            status, body, h = await get(audio + "?download=1", boss)
            assert status == 200 and body == held
            assert h["Content-Disposition"] == f'attachment; filename="recording-{row.id}.mp3"'
            status, _, _ = await get(audio, other)
            assert status == 403  # not their call, on any node

            async with http.post(n2.base + f"/api/v1/recordings/{row.id}/play-url",
                                 headers=boss) as r:  # fmt: skip
                assert r.status == 200
                link = (await r.json())["url"]
            status, body, h = await get(link, {"Range": f"bytes={size - 500}-"})
            assert status == 206 and body == held[-500:]
            assert h["Content-Range"] == f"bytes {size - 500}-{size - 1}/{size}"

            # n1's peer route: only for the nodes' shared key
            async with http.get(n1.base + f"/recordings/peer/v1/{row.id}?e=9999999999&s=x") as r:
                assert r.status == 403
            # n2's reconcile leaves n1's recording to n1
            async with http.post(n2.base + "/api/v1/recordings/reconcile", headers=boss) as r:
                assert r.status == 200
                report = await r.json()
            assert row.id not in report["missing_files"], report
        again = await store.get(row.id)
        assert again is not None and again.status == "ready"
        listens = [a for a in await store.audit_log(recording_id=row.id, actor="cr-sup")]
        assert {a["action"] for a in listens} == {"listen", "download"}, listens
        assert tokens  # the agent's desktop token exists (queue_with_agents)
    except BaseException:
        for name, node in nodes.items():
            print(f"--- {name} log tail:\n{node.tail(40)}")
        raise
    finally:
        for n in nodes.values():
            with contextlib.suppress(Exception):
                await n.stop()
        await restore(asterisk, ami)
        await db.dispose()


async def _has(value: Any, item: str) -> bool:
    return item in await value
