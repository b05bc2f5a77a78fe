"""The ACD REST routes with roles, on SQLite and PostgreSQL (no Asterisk: AMI is down,
so only what needs no AMI succeeds, and what needs it answers 503)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from acd import store
from acd.live import LiveModel
from acd.lost import LostCallers
from acd.notifier import AcdNotifier
from acd.queues_conf import render
from acd.routes import add_routes
from acd.service import AcdService
from acd.settings import AcdSettings
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.events import AgentStatusChanged, CallRecord
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from tests.local_http import NoCalls


class Api:
    def __init__(
        self, client: TestClient[web.Request, web.Application], tokens: dict[str, str]
    ) -> None:
        self.client = client
        self.tokens = tokens

    async def call(self, who: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )
        return resp.status, await resp.json()


@pytest.fixture
async def api(db: Database, tmp_path: Path) -> AsyncIterator[tuple[Api, EventBus, AcdService]]:
    bus = EventBus()
    ami = AmiClient("127.0.0.1", 1, "x", "y")  # never started: every action NotConnected
    settings = AcdSettings(asterisk_etc_dir=tmp_path)
    service = AcdService(db, ami, LiveModel(), AcdNotifier(bus), settings)
    deps = WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=WsHub(db))
    app = create_app(deps)
    add_routes(app, service)
    tokens = {
        "alice": await create_token(db, "alice", "agent"),
        "bob": await create_token(db, "bob", "agent"),
        "sup": await create_token(db, "sup", "supervisor"),
        "admin": await create_token(db, "admin", "admin"),
    }
    async with TestClient(TestServer(app)) as client:
        yield Api(client, tokens), bus, service


async def test_queue_config_admin_only_and_rendered(
    api: tuple[Api, EventBus, AcdService], tmp_path: Path
) -> None:
    a, _, svc = api
    status, body = await a.call("alice", "GET", "/api/v1/acd/queues")
    assert status == 200
    assert {q["name"] for q in body["queues"]} == {"support", "sales"}  # defaults
    body_in = {"strategy": "linear", "wrapup_s": 10, "overflow_after_s": 30,
               "overflow_queue": "sales"}  # fmt: skip
    assert (await a.call("sup", "PUT", "/api/v1/acd/queues/billing", body_in))[0] == 403
    assert (await a.call("alice", "PUT", "/api/v1/acd/queues/billing", body_in))[0] == 403
    status, body = await a.call("admin", "PUT", "/api/v1/acd/queues/billing", body_in)
    # Asterisk is away: stored, not applied (the next AMI connect pushes the queues)
    assert status == 200 and body["applied"] is False
    text = render(await store.list_queues(svc.db))
    assert "[billing]\nstrategy = linear" in text and "[support]" in text
    status, body = await a.call("admin", "PUT", "/api/v1/acd/queues/billing", {"strategy": "x"})
    assert status == 400 and "strategy" in body["error"]
    assert (await a.call("admin", "PUT", "/api/v1/acd/queues/Bad%0Aname", {}))[0] == 400
    _, body = await a.call("sup", "GET", "/api/v1/acd/queues")
    billing = next(q for q in body["queues"] if q["name"] == "billing")
    assert billing["strategy"] == "linear" and billing["overflow_queue"] == "sales"
    assert (await a.call("admin", "DELETE", "/api/v1/acd/queues/billing"))[0] == 200
    assert "[billing]" not in render(await store.list_queues(svc.db))
    assert (await a.call("admin", "DELETE", "/api/v1/acd/queues/billing"))[0] == 404


async def test_agent_config_and_status_roles(api: tuple[Api, EventBus, AcdService]) -> None:
    a, bus, _ = api
    seen: list[AgentStatusChanged] = []
    bus.subscribe(AgentStatusChanged, seen.append)
    agent = {"display_name": "Alice", "devices": [{"kind": "local", "address": "101"}]}
    assert (await a.call("sup", "PUT", "/api/v1/acd/agents/alice", agent))[0] == 403
    status, body = await a.call("admin", "PUT", "/api/v1/acd/agents/alice", agent)
    assert status == 200 and body["devices"] == [{"kind": "local", "address": "101"}]
    assert (await a.call("admin", "PUT", "/api/v1/acd/agents/bob", {}))[0] == 200
    bad: dict[str, Any] = {"devices": [{"kind": "sip", "address": "x&SIP/evil"}]}
    assert (await a.call("admin", "PUT", "/api/v1/acd/agents/alice", bad))[0] == 400
    bad = {"skills": {"support": -1}}
    assert (await a.call("admin", "PUT", "/api/v1/acd/agents/alice", bad))[0] == 400

    # an agent changes only its own status
    path = "/api/v1/acd/agents/alice/status"
    status, body = await a.call("alice", "POST", path, {"status": "available"})
    assert status == 200 and body["status"] == "available"
    assert body["interface"] == "Local/101@cti-sim-agents/n"
    assert (await a.call("bob", "POST", path, {"status": "logged_out"}))[0] == 403
    assert (await a.call("bob", "GET", "/api/v1/acd/agents/alice"))[0] == 403
    assert (await a.call("bob", "GET", "/api/v1/acd/agents"))[0] == 403
    status, body = await a.call("alice", "POST", path, {"status": "paused", "reason": "nap"})
    assert status == 400 and "reason" in body["error"]
    status, body = await a.call("alice", "POST", path, {"status": "paused", "reason": "lunch"})
    assert status == 200 and (body["status"], body["reason"]) == ("paused", "lunch")
    # a supervisor changes anyone's
    status, body = await a.call("sup", "POST", path, {"status": "logged_out"})
    assert status == 200 and body["status"] == "logged_out" and body["interface"] == ""
    assert (await a.call("sup", "POST", "/api/v1/acd/agents/nobody/status",
                         {"status": "available"}))[0] == 404  # fmt: skip
    assert [(e.agent, e.status, e.reason) for e in seen] == [
        ("alice", "available", ""), ("alice", "paused", "lunch"), ("alice", "logged_out", ""),
    ]  # fmt: skip

    status, body = await a.call("alice", "GET", "/api/v1/acd/agents/alice/history")
    assert status == 200
    assert [h["status"] for h in body["history"]] == ["logged_out", "paused", "available"]
    assert body["history"][1]["changed_by"] == "alice" and body["history"][0]["changed_by"] == "sup"
    assert body["history"][0]["ended_at"] is None and body["history"][1]["ended_at"]

    status, body = await a.call("sup", "GET", "/api/v1/acd/reports/pause")
    assert status == 200 and set(body["pause_s"]["alice"]) == {"lunch"}
    assert (await a.call("alice", "GET", "/api/v1/acd/reports/pause"))[0] == 403


async def test_status_change_needing_asterisk_answers_503(
    api: tuple[Api, EventBus, AcdService],
) -> None:
    a, _, _ = api
    agent: dict[str, Any] = {
        "devices": [{"kind": "sip", "address": "alice"}],
        "skills": {"support": 1},
    }
    assert (await a.call("admin", "PUT", "/api/v1/acd/agents/alice", agent))[0] == 200
    status, _ = await a.call("alice", "POST", "/api/v1/acd/agents/alice/status",
                             {"status": "available"})  # fmt: skip
    assert status == 503
    _, body = await a.call("alice", "GET", "/api/v1/acd/agents/alice")
    assert body["status"] == "logged_out"  # nothing stored when Asterisk did not do it


async def test_pause_time_sums_periods(db: Database) -> None:
    from acd import store

    t0 = datetime(2026, 1, 1, 9, tzinfo=UTC)
    await store.put_agent(db, "carol", "", [], {})
    for minutes, status, reason in ((0, "available", ""), (10, "paused", "break"),
                                    (25, "available", ""), (30, "paused", "lunch")):  # fmt: skip
        at = t0 + timedelta(minutes=minutes)
        await store.record_status(db, "carol", status, reason, "", at, "carol")
    report = await store.pause_time_by_reason(db, t0, t0 + timedelta(minutes=90))
    assert report == {"carol": {"break": 900.0, "lunch": 3600.0}}


async def test_lost_callers_open_and_close(api: tuple[Api, EventBus, AcdService]) -> None:
    a, _, service = api
    lost = LostCallers(service.db, "CN")
    t0 = datetime(2026, 1, 1, 9, tzinfo=UTC)

    def rec(lid: str, disp: str, minutes: int, num: str = "13800138000") -> CallRecord:
        at = t0 + timedelta(minutes=minutes)
        return CallRecord(lid, at, at + timedelta(seconds=30), caller_num=num,
                          queue="support", disposition=disp,
                          answered_at=at if disp == "answered" else None)  # fmt: skip

    await lost.apply(rec("l1", "abandoned", 0))
    await lost.apply(rec("l1", "abandoned", 0))  # written twice: one entry
    await lost.apply(rec("l2", "timeout", 1, "+86 138 0013 8000"))
    await lost.apply(rec("l3", "abandoned", 2, "010-12345678"))
    status, body = await a.call("alice", "GET", "/api/v1/acd/lost-callers")
    assert status == 200 and [r["linkedid"] for r in body["lost_callers"]] == ["l3", "l2", "l1"]
    await lost.apply(rec("l4", "answered", 5))  # the same number answered later
    _, body = await a.call("alice", "GET", "/api/v1/acd/lost-callers")
    assert [r["linkedid"] for r in body["lost_callers"]] == ["l3"]
    lid = body["lost_callers"][0]["id"]
    # only agents of the lost caller's queue (and supervisors) may close it
    await store.put_agent(service.db, "alice", "", [], {"support": 0})
    await store.put_agent(service.db, "bob", "", [], {"sales": 0})
    status, body = await a.call("bob", "POST", f"/api/v1/acd/lost-callers/{lid}/close", {})
    assert (status, body["code"]) == (403, "not-your-queue")
    assert (await a.call("admin", "POST", "/api/v1/acd/lost-callers/999/close", {}))[0] == 404
    assert (await a.call("alice", "POST", f"/api/v1/acd/lost-callers/{lid}/close", {}))[0] == 200
    assert (await a.call("alice", "POST", f"/api/v1/acd/lost-callers/{lid}/close", {}))[0] == 404
    _, body = await a.call("sup", "GET", "/api/v1/acd/lost-callers?open=0")
    assert {r["closed_by"] for r in body["lost_callers"]} == {"answered", "called_back"}
    await lost.apply(rec("l5", "abandoned", 9, "13900139000"))
    _, body = await a.call("sup", "GET", "/api/v1/acd/lost-callers")
    (l5,) = body["lost_callers"]
    status, _ = await a.call("sup", "POST", f"/api/v1/acd/lost-callers/{l5['id']}/close", {})
    assert status == 200  # a supervisor closes any queue's
