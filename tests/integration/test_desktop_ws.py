"""The desktop against the real daemon (HTTP + websocket on real sockets, SQLite and
PostgreSQL), with domain events published on its bus as the ACD/IVR would: wrong tokens
refused, pops only to their agent, a never-reading desktop delays nobody, reconnect
resync, the card from crm_bridge's directory, today's calls, the page's headers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from crm_bridge.feature import CrmFeature
from cti.config import (
    AgiConfig,
    AmiConfig,
    AsteriskConfig,
    DatabaseConfig,
    HttpConfig,
    Settings,
)
from cti.daemon import Daemon
from cti.events import CallAnswered, CallCompleted, CallEntered, CallOffered, CallRecord
from cti.store.tokens import create_token, revoke_token
from cti.web.ws import CLOSE_UNAUTHORIZED
from desktop.feature import DesktopFeature
from tests.acceptance.harness import free_port, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
async def daemon(db_url: str, migrated_db: None, tmp_path: Path) -> AsyncIterator[Daemon]:
    """(``db_url`` comes migrated: the daemon's start on an empty database is
    test_openapi's.)"""
    settings = Settings(
        ami=AmiConfig(port=free_port(), secret="x", reconnect_max_s=5.0),  # no Asterisk here
        asterisk=AsteriskConfig(log_dir=tmp_path),
        database=DatabaseConfig(url=db_url),
        http=HttpConfig(port=0),
        agi=AgiConfig(port=0),
    )
    d = Daemon(settings, features=[CrmFeature(), DesktopFeature()])
    await d.start()
    yield d
    await d.stop()


def base(d: Daemon) -> str:
    return f"127.0.0.1:{d.http_port}"


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def connect(
    http: aiohttp.ClientSession, d: Daemon, token: str
) -> tuple[aiohttp.ClientWebSocketResponse, list[dict[str, Any]]]:
    """A desktop connection, browser style (token in the first frame); returns it with
    what it got on connect (hello + snapshot)."""
    ws = await http.ws_connect(f"ws://{base(d)}/ws")
    await ws.send_str(json.dumps({"type": "auth", "token": token}))
    first = [await recv_json(ws)]
    assert first[0]["type"] == "hello"
    while True:
        try:
            first.append(await recv_json(ws, timeout=0.3))
        except TimeoutError:
            return ws, first


def offer(d: Daemon, linkedid: str, agent: str, caller: str = "13800138000") -> None:
    now = datetime.now(UTC)
    d.bus.publish(CallEntered(linkedid, now, caller, "", "4008001234"))
    d.bus.publish(CallOffered(linkedid, now, "support", f"Local/{agent}@x", agent, caller))


async def offer_after_lookup(d: Daemon, linkedid: str, agent: str, caller: str) -> None:
    """As a real call: the caller enters, the lookup runs, later an agent's phone rings."""
    now = datetime.now(UTC)
    d.bus.publish(CallEntered(linkedid, now, caller, "", "4008001234"))
    feature = d.features[1]
    assert isinstance(feature, DesktopFeature) and feature.pops is not None
    pops = feature.pops

    async def looked_up() -> bool:
        facts = pops.facts.get(linkedid)
        return facts is not None and facts.lookup_state == "done"

    await wait_for(looked_up, timeout=10, what="the customer lookup")
    d.bus.publish(CallOffered(linkedid, now, "support", f"Local/{agent}@x", agent, caller))


async def test_wrong_token_refused(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(
                f"ws://{base(daemon)}/ws", headers={"Authorization": "Bearer nope"}
            )
        assert err.value.status == 401
        ws = await http.ws_connect(f"ws://{base(daemon)}/ws")
        await ws.send_str(json.dumps({"type": "auth", "token": "nope"}))
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE and ws.close_code == CLOSE_UNAUTHORIZED
        token = await create_token(daemon.db, "a1", "agent")
        assert await revoke_token(daemon.db, "a1") == 1
        ws = await http.ws_connect(f"ws://{base(daemon)}/ws")
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        await ws.receive(timeout=5)
        assert ws.close_code == CLOSE_UNAUTHORIZED, "a revoked token is refused"


async def test_pop_only_to_its_agent_with_the_crm_card(daemon: Daemon) -> None:
    t1 = await create_token(daemon.db, "a1", "agent")
    t2 = await create_token(daemon.db, "a2", "agent")
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"http://{base(daemon)}/api/v1/customers",
            json={"name": "张伟", "company": "ACME", "tier": "vip", "phones": ["13800138000"],
                  "tags": ["key"], "birthday": "1980-05-01"},
            headers={"Authorization": f"Bearer {t1}"},
        )  # fmt: skip
        assert resp.status == 201, await resp.text()
        ws1, _ = await connect(http, daemon, t1)
        ws2, _ = await connect(http, daemon, t2)
        await offer_after_lookup(daemon, "L-1", "a1", "13800138000")
        pop = await recv_json(ws1)
        assert pop["type"] == "pop" and pop["linkedid"] == "L-1" and pop["agent"] == "a1"
        assert pop["customer"]["name"] == "张伟" and pop["customer"]["tier"] == "vip"
        assert pop["customer"]["birthday"] == "1980-05-01"
        assert pop["caller"]["e164"] == "+8613800138000"
        # a2 gets its own pop next, never a1's
        await offer_after_lookup(daemon, "L-2", "a2", "01065529988")
        got = await recv_json(ws2)
        assert got["linkedid"] == "L-2" and got["customer"] is None
        daemon.bus.publish(CallAnswered("L-1", datetime.now(UTC), "support", "x", "a1", 3.0))
        assert (await recv_json(ws1))["state"] == "answered"
        with pytest.raises(TimeoutError):
            await recv_json(ws2, timeout=0.5)
        await ws1.close()
        await ws2.close()


async def _raw_ws(host: str, port: int, token: str) -> asyncio.StreamWriter:
    """A websocket client that completes the handshake and then never reads (with a
    small receive buffer, as a stalled browser's socket fills)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status = await reader.readline()
    assert b"101" in status, status
    return writer


async def test_never_reading_desktop_delays_nobody(daemon: Daemon) -> None:
    slow_token = await create_token(daemon.db, "slow", "agent")
    t2 = await create_token(daemon.db, "a2", "agent")
    writer = await _raw_ws("127.0.0.1", daemon.http_port or 0, slow_token)
    async with aiohttp.ClientSession() as http:
        ws2, _ = await connect(http, daemon, t2)
        await asyncio.sleep(0.2)
        # it stops reading: once the socket's buffers are full (a pop is written straight
        # to an idle socket) its queue fills, and it gets dropped
        i = 0
        while daemon.hub.dropped_slow == 0 and i < 200_000:
            for _ in range(2000):
                offer(daemon, f"S-{i}", "slow", caller="13800130000")
                i += 1
            await asyncio.sleep(0.05)
        print(f"dropped after {i} pops")
        started = time.monotonic()
        offer(daemon, "F-1", "a2")
        got = await recv_json(ws2, timeout=10)
        elapsed = time.monotonic() - started
        assert got["linkedid"] == "F-1"
        assert daemon.hub.dropped_slow >= 1
        assert not [c for c in daemon.hub.connections if c.principal.name == "slow"]
        print(f"pop to the reading desktop after {elapsed * 1000:.1f} ms")
        await ws2.close()
    writer.close()


async def test_reconnect_resync(daemon: Daemon) -> None:
    t1 = await create_token(daemon.db, "a1", "agent")
    async with aiohttp.ClientSession() as http:
        ws, first = await connect(http, daemon, t1)
        assert [m["type"] for m in first] == ["hello"]
        offer(daemon, "R-1", "a1")
        assert (await recv_json(ws))["linkedid"] == "R-1"
        await ws.close()
        # while away: answered, then over
        now = datetime.now(UTC)
        daemon.bus.publish(CallAnswered("R-1", now, "support", "x", "a1", 2.0))
        ws, first = await connect(http, daemon, t1)
        snap = [m for m in first if m["type"] == "pop"]
        assert len(snap) == 1 and snap[0]["linkedid"] == "R-1"
        assert snap[0]["state"] == "answered" and snap[0]["resync"] is True
        # the agent dismisses the card: the next reconnect no longer has it
        await ws.send_str(json.dumps({"type": "pop.dismiss", "linkedid": "R-1", "ref": 1}))
        assert await recv_json(ws) == {"type": "pop.dismissed", "linkedid": "R-1", "ref": 1}
        await ws.send_str(json.dumps({"type": "pop.dismiss", "linkedid": "R-1"}))
        assert (await recv_json(ws))["type"] == "error"
        await ws.close()
        ws, first = await connect(http, daemon, t1)
        assert [m["type"] for m in first] == ["hello"]
        await ws.close()


async def test_today_and_page(daemon: Daemon) -> None:
    t1 = await create_token(daemon.db, "a1", "agent")
    sup = await create_token(daemon.db, "boss", "supervisor")
    now = datetime.now(UTC)
    for lid, agent in (("T-1", "a1"), ("T-2", "a2"), ("T-3", "")):
        daemon.bus.publish(
            CallCompleted(
                CallRecord(lid, now - timedelta(seconds=30), now, caller_num="13800138000",
                           caller_name="<b>x</b>", agent=agent, queue="support",
                           disposition="answered" if agent else "abandoned")
            )
        )  # fmt: skip
    await daemon.recorder.flush()
    offer(daemon, "T-3", "a1")  # rang a1 (missed): it is one of a1's calls too
    async with aiohttp.ClientSession() as http:

        async def today(token: str, query: str = "") -> tuple[int, Any]:
            async with http.get(
                f"http://{base(daemon)}/api/v1/desktop/calls/today{query}",
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                return r.status, await r.json()

        status, body = await today(t1)
        assert status == 200
        assert sorted(c["linkedid"] for c in body["calls"]) == ["T-1", "T-3"]
        status, body = await today(sup)
        assert sorted(c["linkedid"] for c in body["calls"]) == ["T-1", "T-2", "T-3"]
        status, body = await today(sup, "?agent=a2")
        assert [c["linkedid"] for c in body["calls"]] == ["T-2"]
        assert (await today(t1, "?limit=0"))[0] == 400
        async with http.get(f"http://{base(daemon)}/api/v1/desktop/calls/today") as r:
            assert r.status == 401
        async with http.get(
            f"http://{base(daemon)}/api/v1/desktop/pops",
            headers={"Authorization": f"Bearer {t1}"},
        ) as r:
            assert [p["linkedid"] for p in (await r.json())["pops"]] == ["T-3"]
        for path in ("/desktop/", "/desktop/desktop.js", "/desktop/strings.js"):
            async with http.get(f"http://{base(daemon)}{path}") as r:
                assert r.status == 200
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]
                text = await r.text()
                assert "innerHTML" not in text and "insertAdjacentHTML" not in text
        async with http.get(f"http://{base(daemon)}/desktop/../pyproject.toml") as r:
            assert r.status in (403, 404)
