"""The agent's side of a call (contracts.md): GET/PUT /api/v1/interactions/by-call/{linkedid}
and GET /api/v1/dispositions, on real SQLite and PostgreSQL behind a real HTTP server,
with interaction.updated webhooks delivered to a real local receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from crm_bridge.config import DEFAULT_DISPOSITIONS
from cti.events import (
    CallAnswered,
    CallCompleted,
    CallOffered,
    CallRecord,
    IvrCompleted,
)
from cti.store.db import Database
from tests.integration.test_crm_harness import Crm, crm_server
from tests.local_http import serving

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SECRET = "s3cret-s3cret-s3cret"
HOSTILE = [
    "<script>alert(1)</script>",
    "'; DROP TABLE crm_interactions; --",
    "line1\r\nX-Injected: yes\r\n\r\nbody",
    "emoji 😀 and 中文 and \u202e",
]


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real webhook receiver on 127.0.0.1: (url, bodies received)."""
    seen: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(json.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as base:
        yield f"{base}/hook", seen


@pytest.fixture
async def crm(db: Database, hooks: tuple[str, list[dict[str, Any]]]) -> AsyncIterator[Crm]:
    section = {
        "webhooks": [{"url": hooks[0], "secret": SECRET, "events": ["interaction.updated"]}],
        "webhook_backoff_s": 0.05,
    }
    async with crm_server(db, section) as server:
        yield server


async def _customer(crm: Crm, who: str, body: dict[str, object]) -> dict[str, Any]:
    status, data = await crm.call(who, "POST", "/api/v1/customers", json=body)
    assert status == 201, data
    assert isinstance(data, dict)
    return data


async def _flush(crm: Crm) -> None:
    assert crm.feature.writer is not None
    await crm.feature.writer.flush()


def _record(linkedid: str, caller: str, agent: str, **kw: Any) -> CallRecord:
    return CallRecord(
        linkedid=linkedid,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=90),
        caller_num=caller,
        answered_at=T0 + timedelta(seconds=12),
        queue="sales",
        agent=agent,
        wait_s=12.0,
        talk_s=78.0,
        disposition="answered",
        **kw,
    )


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _by_call(linkedid: str) -> str:
    return f"/api/v1/interactions/by-call/{linkedid}"


async def test_write_during_the_call_survives_call_completed(
    crm: Crm, hooks: tuple[str, list[dict[str, Any]]]
) -> None:
    c = await _customer(crm, "agent1", {"name": "王小明", "phones": ["13800138000"]})
    lid = "1767600000.7"
    # agent2 is offered a call of agent1's customer: it may write it at once (even before
    # the writer stored the offer), agent1 (the owner, not offered) may read but not write
    crm.bus.publish(CallOffered(lid, T0, "sales", "Local/2@x", "agent2", "013800138000"))
    status, data = await crm.call("agent2", "PUT", _by_call(lid), json={"notes": "first"})
    assert status == 200, data
    await _flush(crm)
    crm.bus.publish(CallAnswered(lid, T0, "sales", "Local/2@x", "agent2", 12.0))
    await _flush(crm)
    status, data = await crm.call("agent2", "GET", _by_call(lid))
    assert status == 200
    assert (data["customer_id"], data["contact_id"], data["notes"], data["queue"]) == (
        c["id"],
        c["contacts"][0]["id"],
        "first",
        "sales",
    )
    assert data["ended_at"] is None  # still in progress
    status, data = await crm.call("agent1", "GET", _by_call(lid))
    assert status == 200 and data["notes"] == "first"
    status, _ = await crm.call("agent1", "PUT", _by_call(lid), json={"notes": "mine"})
    assert status == 404
    status, data = await crm.call(
        "agent2", "PUT", _by_call(lid), json={"notes": "wants a quote", "disposition": "sale"}
    )
    assert status == 200 and data["disposition"] == "sale"
    status, data = await crm.call("agent2", "PUT", _by_call(lid), json={"disposition": "nope"})
    assert status == 400 and "resolved" in data["dispositions"]
    # the offer is in the store, not only in memory (a daemon restart keeps the right)
    assert crm.feature.services is not None
    crm.feature.services.interactions._offered.clear()
    status, _ = await crm.call("agent2", "PUT", _by_call(lid), json={"notes": "wants a quote!"})
    assert status == 200
    # the call ends: call facts land, the agent's words stay
    crm.bus.publish(CallCompleted(_record(lid, "013800138000", "agent2")))
    crm.bus.publish(CallCompleted(_record(lid, "013800138000", "agent2")))  # again: idempotent
    await _flush(crm)
    status, data = await crm.call("sup", "GET", _by_call(lid))
    assert status == 200
    assert (data["notes"], data["disposition"], data["agent"], data["talk_s"]) == (
        "wants a quote!",
        "sale",
        "agent2",
        78.0,
    )
    assert data["outcome"] == "answered" and data["ended_at"] is not None
    status, listed = await crm.call("agent1", "GET", f"/api/v1/customers/{c['id']}/interactions")
    assert [i["linkedid"] for i in listed["interactions"]] == [lid]
    # after the call a supervisor may write any call
    status, data = await crm.call("sup", "PUT", _by_call(lid), json={"disposition": "complaint"})
    assert status == 200 and data["disposition"] == "complaint"
    # every write went out as interaction.updated
    _, seen = hooks

    def notes_seen() -> set[str]:
        return {b["data"]["notes"] for b in seen if b["event"] == "interaction.updated"}

    await _until(lambda: {"first", "wants a quote!"} <= notes_seen())
    await _until(lambda: any(b["data"]["disposition"] == "complaint" for b in seen))


async def test_unknown_caller_linked_by_the_agent(crm: Crm) -> None:
    lid = "1767600001.9"
    crm.bus.publish(CallAnswered(lid, T0, "sales", "Local/1@x", "agent1", 3.0))
    await _flush(crm)
    status, data = await crm.call("agent1", "GET", _by_call(lid))
    assert status == 200 and data["customer_id"] is None
    # a customer of another agent is not the agent's to link
    other = await _customer(crm, "agent2", {"name": "Not yours", "phones": ["13900000001"]})
    status, _ = await crm.call("agent1", "PUT", _by_call(lid), json={"customer_id": other["id"]})
    assert status == 404
    # the agent creates the caller as a customer (the pop's new-customer form) and links it
    new = await _customer(crm, "agent1", {"name": "New Caller", "phones": ["+1 650 253 0001"]})
    status, data = await crm.call(
        "agent1", "PUT", _by_call(lid), json={"customer_id": new["id"], "notes": "new one"}
    )
    assert status == 200 and data["customer_id"] == new["id"]
    # the caller's number (withheld in the call facts) does not undo the link
    crm.bus.publish(CallCompleted(_record(lid, "", "agent1")))
    await _flush(crm)
    status, data = await crm.call("agent1", "GET", f"/api/v1/customers/{new['id']}/interactions")
    assert [(i["linkedid"], i["notes"]) for i in data["interactions"]] == [(lid, "new one")]
    status, audit = await crm.call("agent1", "GET", f"/api/v1/customers/{new['id']}/audit")
    assert audit["audit"][-1]["changes"]["customer_id"] == [None, new["id"]]
    # an agent never offered the call can neither read nor write it
    for method, body in (("GET", None), ("PUT", {"notes": "x"})):
        status, _ = await crm.call("agent2", method, _by_call(lid), json=body)
        assert status == 404, method


async def test_completed_call_of_a_known_caller_carries_the_ivr_path(crm: Crm) -> None:
    c = await _customer(crm, "agent1", {"name": "IVR Caller", "phones": ["13800138001"]})
    lid = "1767600002.1"
    crm.bus.publish(
        IvrCompleted(
            lid, T0, "4008001234", "+8613800138001", "Local/x", ("main", "sales"),
            "queue", "sales", "choice",
        )
    )  # fmt: skip
    crm.bus.publish(CallCompleted(_record(lid, "+8613800138001", "agent1")))
    await _flush(crm)
    status, data = await crm.call("agent1", "GET", _by_call(lid))
    assert status == 200
    assert (data["customer_id"], data["ivr_path"], data["queue"]) == (
        c["id"],
        "main>sales",
        "sales",
    )


async def test_dispositions_default_and_configured(db: Database) -> None:
    async with crm_server(db) as crm:
        status, data = await crm.call("agent1", "GET", "/api/v1/dispositions")
        assert status == 200
        assert [d["code"] for d in data["dispositions"]] == [d.code for d in DEFAULT_DISPOSITIONS]
        assert data["dispositions"][0] == {
            "code": "resolved",
            "label_en": "Resolved",
            "label_zh": "已解决",
        }
        status, _ = await crm.call(None, "GET", "/api/v1/dispositions")
        assert status == 401
    custom = {"dispositions": [{"code": "vip_care", "label_en": "VIP care", "label_zh": "贵宾"}]}
    async with crm_server(db, custom) as crm:
        status, data = await crm.call("sup", "GET", "/api/v1/dispositions")
        assert data == {"dispositions": custom["dispositions"]}
        status, data = await crm.call(
            "sup", "PUT", _by_call("1767600003.1"), json={"disposition": "resolved"}
        )
        assert status == 400 and data["dispositions"] == ["vip_care"]
        status, data = await crm.call(
            "sup", "PUT", _by_call("1767600003.1"), json={"disposition": "vip_care"}
        )
        assert status == 200 and data["disposition"] == "vip_care"


async def test_hostile_values_on_by_call(crm: Crm) -> None:
    lid = "1767600004.2"
    crm.bus.publish(CallOffered(lid, T0, "sales", "Local/1@x", "agent1", "<b>x</b>"))
    for value in HOSTILE:
        status, data = await crm.call("agent1", "PUT", _by_call(lid), json={"notes": value})
        assert status == 200 and data["notes"] == value
        status, data = await crm.call("agent1", "GET", _by_call(lid))
        assert data["notes"] == value
    status, data = await crm.call("agent1", "PUT", _by_call(lid), json={"notes": "x" * 65536})
    assert status == 400 and data["details"][0]["field"] == "notes"
    status, data = await crm.call(
        "agent1", "PUT", _by_call(lid), json={"disposition": "'; DROP TABLE x; --"}
    )
    assert status == 400 and "unknown disposition" in data["error"]
    status, data = await crm.call(
        "agent1",
        "PUT",
        _by_call(lid),
        data=b'{"notes": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and "UTF-8" in data["error"]
    for body in (b'{"notes": "a\\u0000"}', b'{"customer_id": "1; DROP"}', b'{"x": 1}', b"[]"):
        status, data = await crm.call("agent1", "PUT", _by_call(lid), data=body)
        assert status == 400, body
    for bad in ("a%20b", "%3Cscript%3E", "x" * 65, "-x", "a%0D%0Ab", "%E4%B8%AD"):
        for method in ("GET", "PUT"):
            status, data = await crm.call("sup", method, _by_call(bad), json={"notes": "x"})
            assert status == 400 and "linkedid" in data["error"], (method, bad)
    status, data = await crm.call("agent1", "GET", _by_call(lid))
    assert data["notes"] == HOSTILE[-1]  # nothing refused got stored


async def test_search_gives_the_same_results_on_both_databases(crm: Crm) -> None:
    """Expected ids are fixed, so SQLite and PostgreSQL (trigram indexes) agree."""
    ids = {}
    bodies: dict[str, dict[str, object]] = {
        "wang": {"name": "王小明", "company": "北京科技有限公司", "phones": ["13800138000"]},
        "wang2": {"name": "王小", "company": "上海贸易", "phones": ["13800138999"]},
        "smith": {
            "name": "John Smith",
            "company": "Acme Trading",
            "emails": ["john.smith@mail-17.example.com"],
            "phones": ["+1 650 253 0000"],
        },
        "li": {
            "kind": "company",
            "name": "深圳物流",
            "contacts": [{"name": "Li Lei", "phones": ["0755-8888 1234"]}],
        },
    }
    for key, body in bodies.items():
        ids[key] = (await _customer(crm, "sup", body))["id"]

    async def found(q: str) -> list[str]:
        status, data = await crm.call("sup", "GET", "/api/v1/search", params={"q": q})
        assert status == 200, data
        by_id = {v: k for k, v in ids.items()}
        return sorted(by_id[c["id"]] for c in data["customers"])

    cases = {
        "王小": ["wang", "wang2"],
        "王小明": ["wang"],
        "北京科技": ["wang"],
        "smith": ["smith"],
        "JOHN SMITH": ["smith"],
        "acme trad": ["smith"],
        "mail-17.": ["smith"],
        "13800138": ["wang", "wang2"],
        "0013 8999": ["wang2"],
        "8888": ["li"],
        "755-8888-1234": ["li"],
        "li lei": ["li"],
        "物流": ["li"],
        "650 253": ["smith"],
        "zzqqxxyy": [],
        "%_": [],
    }
    assert {q: await found(q) for q in cases} == cases
