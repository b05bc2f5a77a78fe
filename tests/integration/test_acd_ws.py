"""The agent's status over the real websocket (ACD side of contracts.md), and the pause
reasons route, on SQLite and PostgreSQL. AMI is down: an agent with no queue skills
needs no AMI action to change its status, one with skills gets an error reply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from prometheus_client import CollectorRegistry

from acd import store
from acd.agent_ws import AgentStatusChannel
from acd.live import LiveModel
from acd.notifier import AcdNotifier
from acd.routes import add_routes
from acd.service import AcdService
from acd.settings import AcdSettings
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.events import AgentStatusChanged
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from tests.local_http import NoCalls, serving


@pytest.fixture
async def server(db: Database, tmp_path: Path) -> AsyncIterator[tuple[str, AcdService]]:
    bus = EventBus()
    hub = WsHub(db)
    ami = AmiClient("127.0.0.1", 1, "x", "y")  # never started
    service = AcdService(db, ami, LiveModel(), AcdNotifier(bus), AcdSettings())
    channel = AgentStatusChannel(hub, service)
    channel.register()
    bus.subscribe(AgentStatusChanged, channel.on_changed)
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=hub))
    add_routes(app, service)
    await store.put_agent(db, "alice", "Alice", [("local", "101")], {})
    await store.put_agent(db, "bob", "Bob", [("local", "102")], {"support": 0})
    async with serving(app) as base:
        yield base.removeprefix("http://"), service
        await hub.close_all()


async def recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=3)
    assert msg.type == WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def test_agent_status_command_push_and_snapshot(
    db: Database, server: tuple[str, AcdService]
) -> None:
    addr, _ = server
    tokens = {n: await create_token(db, n, r) for n, r in
              (("alice", "agent"), ("bob", "agent"), ("sup", "supervisor"))}  # fmt: skip
    async with aiohttp.ClientSession() as http:

        async def connect(who: str) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
            ws = await http.ws_connect(
                f"ws://{addr}/ws", headers={"Authorization": f"Bearer {tokens[who]}"}
            )
            assert (await recv(ws))["type"] == "hello"
            return ws, (await recv(ws) if who != "sup" else {})

        alice, snap = await connect("alice")
        assert (snap["type"], snap["agent"], snap["status"]) == ("agent.status", "alice",
                                                                  "logged_out")  # fmt: skip
        sup, _ = await connect("sup")
        bob, _ = await connect("bob")

        await alice.send_json({"type": "agent.status", "status": "paused", "reason": "nap"})
        err = await recv(alice)
        assert err["type"] == "error" and "reason" in err["error"]
        await alice.send_json({"type": "agent.status", "status": "paused", "reason": "lunch",
                               "ref": 7})  # fmt: skip
        replies = [await recv(alice), await recv(alice)]
        ok = next(r for r in replies if r["type"] == "agent.status.ok")
        push = next(r for r in replies if r["type"] == "agent.status")
        assert (ok["status"], ok["reason"], ok["ref"]) == ("paused", "lunch", 7)
        assert (push["agent"], push["status"], push["reason"]) == ("alice", "paused", "lunch")
        pushed = await recv(sup)  # supervisors see everyone's changes
        assert (pushed["agent"], pushed["status"], pushed["reason"]) == ("alice", "paused", "lunch")

        # bob has a queue skill and Asterisk is away: refused, status unchanged
        await bob.send_json({"type": "agent.status", "status": "available"})
        err = await recv(bob)
        assert err["type"] == "error" and "Asterisk" in err["error"]
        # bob never received alice's change
        with pytest.raises(TimeoutError):
            await bob.receive(timeout=0.3)

        # a reconnect (page reload) gets the current status
        await alice.close()
        alice, snap = await connect("alice")
        assert (snap["status"], snap["reason"]) == ("paused", "lunch")

        # a supervisor that is not an agent cannot set a status for itself
        await sup.send_json({"type": "agent.status", "status": "available"})
        err = await recv(sup)
        assert err["type"] == "error" and "not a configured agent" in err["error"]

        resp = await http.get(
            f"http://{addr}/api/v1/acd/pause-reasons",
            headers={"Authorization": f"Bearer {tokens['bob']}"},
        )
        assert resp.status == 200
        assert (await resp.json())["reasons"] == AcdSettings().pause_reasons
        assert (await http.get(f"http://{addr}/api/v1/acd/pause-reasons")).status == 401
