"""The one HTTP edge over real sockets (issue #13 items 7 and 9): hostile parameters and
bodies are 400s with the one error shape, never 500; a deeply nested websocket command is
an error frame, not a 1011 close; the websocket Origin is never trusted from Host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from prometheus_client import CollectorRegistry

from acd.callbacks import Callbacks
from acd.live import LiveModel
from acd.notifier import AcdNotifier
from acd.outbound_routes import add_outbound_routes
from acd.routes import add_routes
from acd.service import AcdService
from acd.settings import AcdSettings
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from tests.local_http import NoCalls, serving


@pytest.fixture
async def server(db: Database, tmp_path: Path) -> AsyncIterator[tuple[str, str, WsHub]]:
    bus = EventBus()
    ami = AmiClient("127.0.0.1", 1, "x", "y")
    service = AcdService(
        db, ami, LiveModel(), AcdNotifier(bus), AcdSettings(asterisk_etc_dir=tmp_path)
    )
    hub = WsHub(db, auth_timeout_s=1)

    async def echo(_: Any, frame: dict[str, Any]) -> dict[str, Any]:
        return {"type": "echo", "n": len(frame)}

    hub.add_command("echo", echo)
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=hub))
    add_routes(app, service)
    add_outbound_routes(app, Callbacks.__new__(Callbacks), "CN")
    token = await create_token(db, "admin", "admin")
    async with serving(app) as base:
        yield base.removeprefix("http://"), token, hub
        await hub.close_all()


HOSTILE_INTS = ["%C2%B2", "%D9%A1", "%EF%BC%91", "1e3", "99999999999999999999", "-1"]


async def test_non_ascii_digits_are_400(server: tuple[str, str, WsHub]) -> None:
    addr, token, _ = server
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        for raw in HOSTILE_INTS:
            for method, path in (
                ("GET", f"/api/v1/calls?limit={raw}"),
                ("GET", f"/api/v1/calls?before_id={raw}"),
                ("GET", f"/api/v1/acd/lost-callers?limit={raw}"),
                ("POST", f"/api/v1/acd/lost-callers/{raw}/close"),
                ("GET", f"/api/v1/acd/callbacks?limit={raw}"),
                ("POST", f"/api/v1/acd/callbacks/{raw}/close"),
            ):
                async with http.request(method, f"http://{addr}{path}", json={}) as resp:
                    body = await resp.json()
                    assert resp.status == 400, (path, resp.status, body)
                    assert body["code"] == "bad-parameter" and body["error"]
        async with http.get(
            f"http://{addr}/api/v1/calls?since=0001-01-01T00:00:00%2B01:00"
        ) as resp:
            assert resp.status == 400
        async with http.get(
            f"http://{addr}/api/v1/acd/reports/pause?since=2026-02-01&until=2026-01-01"
        ) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == "bad-range"


async def test_hostile_bodies_are_400(server: tuple[str, str, WsHub]) -> None:
    addr, token, _ = server
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"http://{addr}/api/v1/acd/agents/agent1"
    async with aiohttp.ClientSession(headers=auth) as http:
        for body, code in (
            (b"[" * 50_000 + b"]" * 50_000, 413),  # larger than the ACD's 64 KiB
            (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, 400),
            (b"[" * 1_000 + b"]" * 1_000, 400),
            (b"\xff{}", 400),
            (b"[1, 2]", 400),
            (b"{", 400),
        ):
            async with http.put(url, data=body) as resp:
                assert resp.status == code, (body[:20], resp.status)
                assert "error" in await resp.json()


async def test_unknown_api_route_is_json_404(server: tuple[str, str, WsHub]) -> None:
    addr, token, _ = server
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(f"http://{addr}/api/v1/nope") as resp:
            assert resp.status == 404 and (await resp.json())["code"] == "not-found"
        async with http.delete(f"http://{addr}/api/v1/calls") as resp:
            assert resp.status == 405 and (await resp.json())["code"] == "method-not-allowed"


async def test_deep_websocket_command_is_an_error_frame(server: tuple[str, str, WsHub]) -> None:
    addr, token, _ = server
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://{addr}/ws", headers={"Authorization": f"Bearer {token}"})
        assert json.loads((await ws.receive(timeout=3)).data)["type"] == "hello"
        await ws.send_str('{"type": "echo", "x": ' + "[" * 20_000 + "]" * 20_000 + "}")
        msg = await ws.receive(timeout=3)
        assert msg.type == WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        assert frame["type"] == "error" and frame["code"] == "too-deep"
        await ws.send_str('{"type": "echo", "x": 1}')  # the socket still serves
        assert json.loads((await ws.receive(timeout=3)).data) == {"type": "echo", "n": 2}
        await ws.close()


async def test_websocket_origin_is_not_taken_from_host(server: tuple[str, str, WsHub]) -> None:
    addr, token, _ = server
    port = addr.rsplit(":", 1)[1]
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for origin, host in (
            ("http://evil.example", "evil.example"),
            (f"http://evil.example:{port}", f"evil.example:{port}"),
            ("http://localhost:1", f"localhost:{port}"),  # right host, wrong port
            ("null", addr),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(
                    f"ws://{addr}/ws", headers={**auth, "Origin": origin, "Host": host}
                )
            assert err.value.status == 403, origin
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            ws = await http.ws_connect(
                f"ws://{addr}/ws", headers={**auth, "Origin": origin, "Host": "evil.example"}
            )
            assert json.loads((await ws.receive(timeout=3)).data)["type"] == "hello"
            await ws.close()
