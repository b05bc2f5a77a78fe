"""The websocket hub over real sockets: auth, origin, audience, slow clients, resync."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from prometheus_client import CollectorRegistry

from cti.store.db import Database
from cti.store.tokens import Principal, create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import CLOSE_TOO_SLOW, CLOSE_UNAUTHORIZED, WsHub, to_agent, to_role
from stats.service import scoped_frame
from tests.local_http import NoCalls, serving


@pytest.fixture
async def server(db: Database) -> AsyncIterator[tuple[WsHub, str]]:
    hub = WsHub(db, queue_size=16, auth_timeout_s=0.5, allowed_origins=["https://desk.example"])
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=hub))
    async with serving(app) as base:
        yield hub, base.removeprefix("http://")
        await hub.close_all()


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 3) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def connect(
    http: aiohttp.ClientSession, addr: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"ws://{addr}/ws", headers={"Authorization": f"Bearer {token}"})
    assert (await recv_json(ws))["type"] == "hello"
    return ws


async def test_tokens_are_required(db: Database, server: tuple[WsHub, str]) -> None:
    _, addr = server
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(f"ws://{addr}/ws", headers={"Authorization": "Bearer wrong"})
        assert err.value.status == 401
        ws = await http.ws_connect(f"ws://{addr}/ws")  # browser style: token in first frame
        await ws.send_str(json.dumps({"type": "auth", "token": "wrong"}))
        msg = await ws.receive(timeout=3)
        assert msg.type == WSMsgType.CLOSE and ws.close_code == CLOSE_UNAUTHORIZED
        ws = await http.ws_connect(f"ws://{addr}/ws")  # says nothing: cut after the timeout
        msg = await ws.receive(timeout=3)
        assert ws.close_code == CLOSE_UNAUTHORIZED
        token = await create_token(db, "agent7", "agent")
        ws = await http.ws_connect(f"ws://{addr}/ws")
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        assert (await recv_json(ws)) == {"type": "hello", "who": "agent7", "role": "agent"}
        await ws.close()


async def test_origin_allowlist(db: Database, server: tuple[WsHub, str]) -> None:
    _, addr = server
    token = await create_token(db, "s1", "supervisor")
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(
                f"ws://{addr}/ws", headers={**auth, "Origin": "https://evil.example"}
            )
        assert err.value.status == 403
        for origin in ("https://desk.example", f"http://{addr}"):
            ws = await http.ws_connect(f"ws://{addr}/ws", headers={**auth, "Origin": origin})
            assert (await recv_json(ws))["type"] == "hello"
            await ws.close()


async def test_each_agent_gets_only_its_own_events(db: Database, server: tuple[WsHub, str]) -> None:
    hub, addr = server
    t1 = await create_token(db, "agent1", "agent")
    t2 = await create_token(db, "agent2", "agent")
    ts = await create_token(db, "boss", "supervisor")
    async with aiohttp.ClientSession() as http:
        a1, a2, sup = [await connect(http, addr, t) for t in (t1, t2, ts)]
        assert hub.publish(to_agent("agent1"), {"type": "pop", "n": 1}) == 1
        assert hub.publish(to_role("supervisor"), {"type": "board", "n": 2}) == 1
        assert hub.publish(to_agent("agent2"), {"type": "pop", "n": 3}) == 1
        assert (await recv_json(a1)) == {"type": "pop", "n": 1}
        assert (await recv_json(a2)) == {"type": "pop", "n": 3}
        assert (await recv_json(sup)) == {"type": "board", "n": 2}
        for ws in (a1, a2, sup):
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(timeout=0.3)
            await ws.close()


async def test_has_audience_tells_whether_anyone_would_get_a_message(
    db: Database, server: tuple[WsHub, str]
) -> None:
    """A producer skips building what nobody would receive (the wallboard, decision 0027)."""
    hub, addr = server
    ta = await create_token(db, "agent1", "agent")
    ts = await create_token(db, "boss", "supervisor")
    async with aiohttp.ClientSession() as http:
        agent = await connect(http, addr, ta)
        assert hub.has_audience(to_agent("agent1"))
        assert not hub.has_audience(to_role("supervisor"))
        sup = await connect(http, addr, ts)
        assert hub.has_audience(to_role("supervisor"))
        await sup.close()

        async def gone() -> bool:
            return not hub.has_audience(to_role("supervisor"))

        for _ in range(100):
            if await gone():
                break
            await asyncio.sleep(0.02)
        assert await gone()
        await agent.close()


async def test_a_supervisor_scoped_to_teams_gets_the_wallboard_cut_to_their_queues(
    db: Database, server: tuple[WsHub, str]
) -> None:
    """Issue #15: the wallboard push is rendered per connection (publish_each with
    stats.service.scoped_frame): the queue-scoped supervisor's frame holds support only."""
    hub, addr = server
    everyone = await create_token(db, "boss", "supervisor")
    north = await create_token(db, "north", "supervisor", queues=["support"])
    agent = await create_token(db, "agent1", "agent")
    frame = {"type": "wallboard", "ivr_abandoned": 2, "queues": [
        {"queue": "sales", "agents": [{"name": "a1"}]},
        {"queue": "support", "agents": [{"name": "a2"}]},
    ]}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        boss, sue, a1 = [await connect(http, addr, t) for t in (everyone, north, agent)]
        assert hub.publish_each(to_role("supervisor"), lambda who: scoped_frame(frame, who)) == 2
        assert await recv_json(boss) == frame
        mine = await recv_json(sue)
        assert [q["queue"] for q in mine["queues"]] == ["support"]
        assert mine["ivr_abandoned"] is None
        with pytest.raises(asyncio.TimeoutError):
            await a1.receive(timeout=0.3)
        for ws in (boss, sue, a1):
            await ws.close()


async def test_a_client_that_never_reads_is_dropped_and_delays_nobody(
    db: Database, server: tuple[WsHub, str]
) -> None:
    hub, addr = server
    token = await create_token(db, "boss", "supervisor")
    host, port = addr.split(":")
    # a raw client: upgrades, then never reads; a tiny receive buffer fills at once
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (f"GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
         f"Authorization: Bearer {token}\r\n\r\n").encode()
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        fast = await connect(http, addr, token)
        await asyncio.sleep(0.2)
        assert len(hub.connections) == 2
        payload = "x" * 16_000
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(1000):
            hub.publish(to_role("supervisor"), {"type": "tick", "i": i, "pad": payload})
            got = await recv_json(fast)  # the fast desktop keeps up, message by message
            assert got["i"] == i
        elapsed = loop.time() - started
        assert hub.dropped_slow == 1
        assert len(hub.connections) == 1
        assert elapsed < 10  # generous: the point is it finished, not how fast
        await fast.close()
    raw.close()


async def test_reconnect_gets_current_state_and_commands_reply(
    db: Database, server: tuple[WsHub, str]
) -> None:
    hub, addr = server
    state = {"agent1": "paused:lunch"}

    async def snapshot(p: Principal) -> list[dict[str, Any]]:
        return [{"type": "status", "status": state.get(p.name, "logged_out")}]

    async def set_status(p: Principal, frame: dict[str, Any]) -> dict[str, Any]:
        status = frame.get("status")
        if status not in ("available", "paused:lunch"):
            raise ValueError("unknown status")
        state[p.name] = status
        return {"type": "status", "status": status}

    hub.add_snapshot(snapshot)
    hub.add_command("set_status", set_status)
    token = await create_token(db, "agent1", "agent")
    async with aiohttp.ClientSession() as http:
        ws = await connect(http, addr, token)
        assert await recv_json(ws) == {"type": "status", "status": "paused:lunch"}
        await ws.send_str(json.dumps({"type": "set_status", "status": "available", "ref": 7}))
        assert await recv_json(ws) == {"type": "status", "status": "available", "ref": 7}
        await ws.send_str(json.dumps({"type": "set_status", "status": "<b>x</b>", "ref": 8}))
        assert await recv_json(ws) == {"type": "error", "error": "unknown status", "ref": 8}
        await ws.send_str("not json")
        assert (await recv_json(ws))["type"] == "error"
        await ws.close()
        ws = await connect(http, addr, token)  # a page reload loses nothing
        assert await recv_json(ws) == {"type": "status", "status": "available"}
        await ws.close()


async def test_oversized_and_binary_frames_close_the_connection(
    db: Database, server: tuple[WsHub, str]
) -> None:
    _, addr = server
    token = await create_token(db, "agent1", "agent")
    async with aiohttp.ClientSession() as http:
        ws = await connect(http, addr, token)
        await ws.send_str("x" * (65 * 1024))
        msg = await ws.receive(timeout=3)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        assert ws.close_code == 1009
        ws = await connect(http, addr, token)
        await ws.send_bytes(b"\x00\x01")
        msg = await ws.receive(timeout=3)
        assert ws.close_code == 4400


def test_close_codes_are_distinct() -> None:
    assert len({CLOSE_TOO_SLOW, CLOSE_UNAUTHORIZED, 4400}) == 3
