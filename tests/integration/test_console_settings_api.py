"""The console's settings APIs on SQLite and PostgreSQL behind a real HTTP server: a
queue's members, the recording policy per queue, dispositions and webhook receivers.
Only admins change them, bad input is a clear 4xx, and a change is in force at once
(the next call, the next delivery) and after a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from acd.admin_routes import add_admin_routes as add_acd_admin
from acd.live import LiveModel
from acd.notifier import AcdNotifier
from acd.routes import add_routes as add_acd_routes
from acd.service import AcdService
from acd.settings import AcdSettings
from crm_bridge.webhooks import verify
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.events import CallOffered
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.openapi import undescribed
from cti.web.ws import WsHub
from recordings.config import RecordingsConfig
from recordings.policy import PolicyBook, add_policy_routes
from tests.integration.test_acd_api import Api, NoCalls
from tests.integration.test_crm_harness import Crm, crm_server
from tests.integration.test_crm_webhooks import Receiver, receiver

__all__ = ["receiver"]  # the fixture


async def _tokens(db: Database) -> dict[str, str]:
    return {r: await create_token(db, f"{r}1", r) for r in ("agent", "supervisor", "admin")}


# --- queue members ---------------------------------------------------------------------------


@pytest.fixture
async def acd(db: Database, tmp_path: Path) -> AsyncIterator[Api]:
    ami = AmiClient("127.0.0.1", 1, "x", "y")  # never started: Asterisk is away
    service = AcdService(db, ami, LiveModel(), AcdNotifier(EventBus()),
                         AcdSettings(asterisk_etc_dir=tmp_path))  # fmt: skip
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=WsHub(db)))
    add_acd_routes(app, service)
    add_acd_admin(app, service)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, await _tokens(db))


async def test_queue_members_set_from_the_queue(acd: Api) -> None:
    for name, skills in (("alice", {"sales": 2}), ("bob", {}), ("carol", {"support": 1})):
        status, body = await acd.call("admin", "PUT", f"/api/v1/acd/agents/{name}",
                                      {"skills": skills})  # fmt: skip
        assert status == 200, body
    path = "/api/v1/acd/queues/support/members"
    status, body = await acd.call("supervisor", "GET", path)
    assert status == 200 and [m["agent"] for m in body["members"]] == ["carol"]
    members = {"alice": 0, "bob": 5}
    assert (await acd.call("supervisor", "PUT", path, {"members": members}))[0] == 403
    status, body = await acd.call("admin", "PUT", path, {"members": members})
    assert status == 200 and body["members"] == members
    # each agent's other skills are kept; carol left the queue
    _, alice = await acd.call("admin", "GET", "/api/v1/acd/agents/alice")
    assert alice["skills"] == {"sales": 2, "support": 0}
    _, carol = await acd.call("admin", "GET", "/api/v1/acd/agents/carol")
    assert carol["skills"] == {}
    for bad, code in (
        ({"members": {"nobody": 0}}, 400), ({"members": {"alice": -1}}, 400),
        ({"members": {"alice": "0"}}, 400), ({"members": {"a\r\nb": 0}}, 400),
        ({"members": []}, 400), ({"other": 1}, 400),
    ):  # fmt: skip
        status, answer = await acd.call("admin", "PUT", path, bad)
        assert status == code and answer["error"], (bad, answer)
    assert (await acd.call("admin", "GET", "/api/v1/acd/queues/nowhere/members"))[0] == 404
    assert [r for r in undescribed(acd.client.server.app) if "/members" in r] == []
    assert (await acd.call("admin", "GET", "/api/v1/acd/queues/Bad!/members"))[0] == 404


# --- recording policy ------------------------------------------------------------------------


async def test_recording_policy_per_queue(db: Database) -> None:
    config = RecordingsConfig.model_validate(
        {"policy": "always", "retention_days": 365,
         "queues": {"vip": {"retention_days": 3650}, "hr": {"policy": "never"}}}
    )  # fmt: skip
    book = PolicyBook(config, db)
    await book.load()
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=WsHub(db)))
    add_policy_routes(app, book)
    async with TestClient(TestServer(app)) as client:
        api = Api(client, await _tokens(db))
        status, body = await api.call("supervisor", "GET", "/api/v1/recordings/policy")
        assert status == 200 and body["default"]["policy"] == "always"
        assert {q["queue"]: q["policy"] for q in body["queues"]} == {"hr": "never", "vip": "always"}
        path = "/api/v1/recordings/policy/queues/vip"
        assert (await api.call("supervisor", "PUT", path, {"policy": "on_demand"}))[0] == 403
        status, body = await api.call("admin", "PUT", path, {"policy": "on_demand"})
        assert status == 200 and body["policy"] == "on_demand" and body["retention_days"] == 3650
        assert config.policy_for("vip") == "on_demand"  # the recorder's next call
        status, log = await api.call("admin", "GET", "/api/v1/audit?action=recordings.")
        (entry,) = log["entries"]
        assert (entry["action"], entry["target_id"], entry["actor"]) == (
            "recordings.policy.update", "vip", "admin1",
        )  # fmt: skip
        assert entry["before"]["policy"] == "always" and entry["after"]["policy"] == "on_demand"
        status, body = await api.call("admin", "PUT", "/api/v1/recordings/policy/queues/sales",
                                      {"retention_days": 30})  # fmt: skip
        assert status == 200 and config.retention_for("sales") == 30
        assert config.policy_for("sales") == "always"
        for bad in ({"policy": "sometimes"}, {"retention_days": 0}, {"retention_days": "30"},
                    {"extra": 1}):  # fmt: skip
            status, answer = await api.call("admin", "PUT", path, bad)
            assert status == 400, (bad, answer)
        # a restart applies the stored values over the file's
        fresh = RecordingsConfig.model_validate({"queues": {"vip": {"retention_days": 3650}}})
        await PolicyBook(fresh, db).load()
        assert fresh.policy_for("vip") == "on_demand" and fresh.retention_for("sales") == 30
        status, body = await api.call("admin", "DELETE", path)
        assert status == 200 and body["policy"] == "always" and body["console"] is None
        assert (await api.call("admin", "DELETE", path))[0] == 404
        assert undescribed(app) == [] or all("/policy" not in r for r in undescribed(app))


# --- dispositions and webhook receivers ------------------------------------------------------


@pytest.fixture
async def crm(db: Database) -> AsyncIterator[Crm]:
    async with crm_server(db) as server:
        yield server


async def test_dispositions_edited_in_the_console(crm: Crm) -> None:
    items = [{"code": "sold", "label_en": "Sold", "label_zh": "已成交"},
             {"code": "call_back", "label_en": "Call back", "label_zh": "需回电"}]  # fmt: skip
    assert (await crm.call("sup", "PUT", "/api/v1/dispositions", json={"dispositions": items}))[
        0
    ] == 403
    for bad in ({"dispositions": []}, {"dispositions": [items[0], items[0]]},
                {"dispositions": [{**items[0], "code": "Bad Code"}]},
                {"dispositions": [{**items[0], "label_en": ""}]},
                {"dispositions": [{**items[0], "label_zh": "\ud800"}]}):  # fmt: skip
        status, answer = await crm.call("admin", "PUT", "/api/v1/dispositions", json=bad)
        assert status == 400, (bad, answer)
    status, body = await crm.call(
        "admin", "PUT", "/api/v1/dispositions", json={"dispositions": items}
    )
    assert status == 200 and body["dispositions"] == items
    status, body = await crm.call("agent1", "GET", "/api/v1/dispositions")
    assert body["dispositions"] == items
    # the agent's wrap-up is checked against the new list
    put = "/api/v1/interactions/by-call/t-console-1"
    assert (await crm.call("sup", "PUT", put, json={"disposition": "resolved"}))[0] == 400
    status, body = await crm.call("sup", "PUT", put, json={"disposition": "sold"})
    assert status == 200 and body["disposition"] == "sold", body
    # kept across a restart
    assert crm.feature.settings is not None
    crm.feature.settings.config.dispositions[:] = []
    await crm.feature.settings.load()
    assert [d.code for d in crm.feature.settings.config.dispositions] == ["sold", "call_back"]


async def test_webhook_receivers_added_in_the_console_get_deliveries(
    crm: Crm, receiver: Receiver
) -> None:
    url = receiver.url + "/hook"
    status, body = await crm.call("admin", "POST", "/api/v1/webhooks/targets",
                                  json={"url": url, "events": ["call.ringing"]})  # fmt: skip
    assert status == 201, body
    secret, target_id = body["secret"], body["id"]
    assert len(secret) >= 32 and body["secret_hint"] == "…" + secret[-4:]
    status, listed = await crm.call("admin", "GET", "/api/v1/webhooks/targets")
    assert status == 200 and secret not in json.dumps(listed)
    assert (await crm.call("sup", "GET", "/api/v1/webhooks/targets"))[0] == 403
    for bad, code in (
        ({"url": "ftp://x/y"}, 400), ({"url": "not a url"}, 400),
        ({"url": url, "events": ["call.exploded"]}, 400),
        ({"url": url + "2", "secret": "short"}, 400),
        ({"url": url + "2", "secret": "sixteen chars but spaces"}, 400),
        ({"url": "https://" + ".".join(["a" * 60] * 33 + ["b" * 30]) + ".example/"}, 400),
        ({"url": url}, 409),
    ):  # fmt: skip
        status, answer = await crm.call("admin", "POST", "/api/v1/webhooks/targets", json=bad)
        assert status == code, (bad, answer)
    # credentials in the URL would be shown and logged with it: refused, saying why
    for bad_url in ("http://crm:pw@10.1.2.3/hook", "http://crm@10.1.2.3/hook",
                    "https://:pw@crm.example/hook"):  # fmt: skip
        status, answer = await crm.call("admin", "POST", "/api/v1/webhooks/targets",
                                        json={"url": bad_url})  # fmt: skip
        assert status == 400 and "user name or password" in json.dumps(answer), answer
        assert "pw" not in json.dumps(answer).replace("password", ""), answer
    # receivers on the site's own network are allowed (private and loopback addresses)
    for lan_url in ("http://10.1.2.3:8080/hook", "http://[::1]/hook"):
        status, answer = await crm.call("admin", "POST", "/api/v1/webhooks/targets",
                                        json={"url": lan_url, "enabled": False})  # fmt: skip
        assert status == 201, answer
        lan = f"/api/v1/webhooks/targets/{answer['id']}"
        status, answer = await crm.call("admin", "PATCH", lan,
                                        json={"url": "http://u:pw@10.1.2.3/hook"})  # fmt: skip
        assert status == 400, answer
        assert (await crm.call("admin", "DELETE", lan))[0] == 200
    # the next event is delivered, signed with the receiver's secret
    _offer(crm, "t-wh-1")
    await _delivered(receiver, 1)
    headers, raw = receiver.seen[0]
    assert verify(secret, headers["X-CTI-Timestamp"], raw, headers["X-CTI-Signature"])
    # a new secret signs the next one; disabled: nothing more is sent
    path = f"/api/v1/webhooks/targets/{target_id}"
    status, body = await crm.call("admin", "POST", path + "/rotate-secret")
    assert status == 200 and body["secret"] != secret
    new_secret = body["secret"]
    _offer(crm, "t-wh-2")
    await _delivered(receiver, 2)
    headers, raw = receiver.seen[1]
    assert verify(new_secret, headers["X-CTI-Timestamp"], raw, headers["X-CTI-Signature"])
    status, body = await crm.call("admin", "PATCH", path, json={"enabled": False})
    assert status == 200 and body["enabled"] is False
    _offer(crm, "t-wh-3")
    await asyncio.sleep(0.3)
    assert len(receiver.seen) == 2
    assert (await crm.call("admin", "PATCH", path, json={"events": []}))[0] == 400
    status, _ = await crm.call("admin", "DELETE", path)
    assert status == 200
    assert (await crm.call("admin", "DELETE", path))[0] == 404
    app = crm.client.server.app
    mine = [r for r in undescribed(app) if "/targets" in r or r == "PUT /api/v1/dispositions"]
    assert mine == []


def _offer(crm: Crm, linkedid: str) -> None:
    crm.bus.publish(
        CallOffered(linkedid=linkedid, at=datetime.now(UTC), queue="support",
                    interface="Local/1@x", member_name="a1", caller_num="+8613800138000")
    )  # fmt: skip


async def _delivered(receiver: Receiver, n: int) -> None:
    for _ in range(100):
        if len(receiver.seen) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} deliveries expected, got {len(receiver.seen)}")
