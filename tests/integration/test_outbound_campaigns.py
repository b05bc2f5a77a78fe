"""Campaign life and the agent's side through the API (SQLite and PostgreSQL, no
Asterisk: nothing is dialled here): start/pause/stop, preview leads held per agent,
outcomes (a sale reaches the CRM through cti.services.SalesPipeline), personal
callbacks, list recycling, and the report by hour/list with a formula-safe CSV."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from cti.services import Conversion, Services
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from outbound.api import OutboundApi
from outbound.store import OutboundStore
from tests.integration.test_acd_api import NoCalls
from tests.integration.test_outbound_lists import Api


class Pipeline:
    """A CRM's sales pipeline as crm_bridge would offer it (cti.services.SalesPipeline)."""

    def __init__(self) -> None:
        self.got: list[Conversion] = []

    async def record_conversion(self, conversion: Conversion) -> int:
        self.got.append(conversion)
        return 77


@pytest.fixture
async def env(db: Database) -> AsyncIterator[tuple[Api, OutboundStore, Pipeline]]:
    pipeline = Pipeline()
    services = Services(sales=pipeline)
    store = OutboundStore(db, "CN")
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=WsHub(db)))
    tokens = {"supervisor": await create_token(db, "sup1", "supervisor")}
    for agent in ("a2001", "a2002"):
        tokens[agent] = await create_token(db, agent, "agent")
    OutboundApi(store, None, timezone="Asia/Shanghai", services=services).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, tokens), store, pipeline


async def test_campaign_life_preview_outcomes_and_callbacks(
    env: tuple[Api, OutboundStore, Pipeline],
) -> None:
    api, _, pipeline = env
    status, c = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns",
                               {"name": "look", "mode": "preview", "agents": ["a2001"],
                                "queue": "sales"})  # fmt: skip
    assert status == 201, c
    cid = c["id"]
    status, lst = await api.call("supervisor", "POST", f"/api/v1/outbound/campaigns/{cid}/lists",
                                 {"name": "=HYPERLINK(\"x\")"})  # fmt: skip
    status, report = await api.call(
        "supervisor", "POST", f"/api/v1/outbound/lists/{lst['id']}/import?phone=n&name=who",
        data=b"n,who\n13800138001,One\n13800138002,Two\n13800138003,Three\n",
    )  # fmt: skip
    assert report["kept"] == 3
    url = f"/api/v1/outbound/campaigns/{cid}"
    status, body = await api.call("a2001", "POST", f"{url}/next")
    assert status == 409  # a draft
    status, body = await api.call("supervisor", "POST", f"{url}/start")
    assert status == 200 and body["status"] == "running"
    status, body = await api.call("supervisor", "POST", f"{url}/start")
    assert status == 409
    status, body = await api.call("a2002", "POST", f"{url}/next")
    assert status == 403 and body["code"] == "not-in-campaign"
    status, body = await api.call("a2001", "GET", "/api/v1/outbound/me/campaigns")
    assert [x["name"] for x in body["campaigns"]] == ["look"]
    status, body = await api.call("a2002", "GET", "/api/v1/outbound/me/campaigns")
    assert body["campaigns"] == []

    # preview: the first lead is held for a2001; its outcome settles it
    status, body = await api.call("a2001", "POST", f"{url}/next")
    first = body["lead"]
    assert first["name"] == "One" and first["status"] == "preview" and first["agent"] == "a2001"
    status, body = await api.call("a2001", "GET", "/api/v1/outbound/me/lead")
    assert body["state"] == "preview" and body["lead"]["id"] == first["id"]
    first_url = f"/api/v1/outbound/leads/{first['id']}"
    status, body = await api.call("a2002", "POST", f"{first_url}/outcome", {"outcome": "sale"})
    assert status == 404  # not a2002's lead
    status, body = await api.call("a2001", "POST", f"{first_url}/dial")
    assert status == 503  # no dialer here: nothing dialled, said so
    status, body = await api.call("a2001", "POST", f"{first_url}/outcome",
                                  {"outcome": "wrong_number"})  # fmt: skip
    assert status == 200 and body["lead"]["status"] == "done"
    assert body["lead"]["disposition"] == "wrong_number"

    # a sale becomes a customer in the CRM (the pipeline's id is kept on the lead)
    status, body = await api.call("a2001", "POST", f"{url}/next")
    second = body["lead"]
    status, body = await api.call("a2001", "POST",
                                  f"/api/v1/outbound/leads/{second['id']}/outcome",
                                  {"outcome": "sale", "note": "2 boxes"})  # fmt: skip
    assert status == 200 and body["crm"] == {"recorded": True, "customer_id": 77}
    assert body["lead"]["customer_id"] == 77
    (conv,) = pipeline.got
    assert (conv.number, conv.name, conv.agent, conv.kind, conv.campaign, conv.note) == (
        "+8613800138002", "Two", "a2001", "sale", "look", "2 boxes")  # fmt: skip

    # a personal callback: in the future, with the same agent
    status, body = await api.call("a2001", "POST", f"{url}/next")
    third = body["lead"]
    lead_url = f"/api/v1/outbound/leads/{third['id']}/outcome"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    status, body = await api.call("a2001", "POST", lead_url,
                                  {"outcome": "callback", "callback_at": past})  # fmt: skip
    assert status == 422
    status, body = await api.call("a2001", "POST", lead_url,
                                  {"outcome": "callback", "callback_at": "tomorrow"})  # fmt: skip
    assert status == 400
    later = datetime.now(UTC) + timedelta(hours=2)
    at_later = {"outcome": "callback", "callback_at": later.isoformat()}
    status, body = await api.call("a2001", "POST", lead_url, at_later)
    assert status == 200
    assert (body["lead"]["status"], body["lead"]["agent"]) == ("callback", "a2001")
    assert datetime.fromisoformat(body["lead"]["next_at"]) == later
    status, body = await api.call("a2001", "POST", f"{url}/next")
    assert body["lead"] is None  # nothing left due

    status, live = await api.call("supervisor", "GET", f"{url}/live")
    assert live["status"] == "running" and live["due"] == 0
    status, body = await api.call("supervisor", "POST", f"{url}/pause")
    assert status == 200 and body["status"] == "paused"
    status, body = await api.call("supervisor", "POST", f"{url}/stop")
    assert status == 200 and body["status"] == "stopped"
    status, body = await api.call("supervisor", "POST", f"{url}/pause")
    assert status == 409


async def test_report_recycling_and_csv(env: tuple[Api, OutboundStore, Pipeline]) -> None:
    api, store, _ = env
    status, c = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns",
                               {"name": "rep", "queue": "sales"})  # fmt: skip
    status, lst = await api.call("supervisor", "POST",
                                 f"/api/v1/outbound/campaigns/{c['id']}/lists",
                                 {"name": "=HYPERLINK(\"x\")"})  # fmt: skip
    await api.call("supervisor", "POST", f"/api/v1/outbound/lists/{lst['id']}/import?phone=n",
                   data=b"n\n13800138001\n13800138002\n")  # fmt: skip
    one, two = await store.leads(list_id=lst["id"])
    # 01:30 UTC is 09:30 in Shanghai
    t0 = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
    rows: list[tuple[dict[str, Any], str, str, float]] = [
        (one, "answered", "a2001", 60.0),
        (two, "no_answer", "", 0.0),
        (two, "abandoned", "", 0.0),
        (one, "refused", "", 0.0),
    ]
    for i, (lead, outcome, agent, talk) in enumerate(rows):
        aid = await store.start_attempt(lead, f"cti-camp-{i}", t0 + timedelta(minutes=40 * i))
        await store.update_attempt(aid, outcome=outcome, agent=agent, talk_s=talk,
                                   connected_at=t0 if agent else None)  # fmt: skip
    rep = f"/api/v1/outbound/campaigns/{c['id']}/report"
    status, report = await api.call("supervisor", "GET", f"{rep}?by=hour")
    assert status == 200
    assert [r["hour"] for r in report["rows"]] == ["2026-11-23 09:00", "2026-11-23 10:00",
                                                   "2026-11-23 11:00"]  # fmt: skip
    total = report["total"]
    assert (total["attempts"], total["dialled"], total["answered"], total["contacts"],
            total["abandoned"], total["abandon_rate"], total["talk_s"]) == (
        4, 3, 2, 1, 1, 0.5, 60.0)  # fmt: skip
    status, text = await api.call("supervisor", "GET", f"{rep}?by=list&format=csv")
    lines = text.decode().splitlines()
    assert lines[1].startswith('"\'=HYPERLINK(""x"")",4,3,')  # neutralised: never a formula
    # recycling: a finished no-answer is dialled again
    await store.update_lead(two["id"], None, status="done", last_outcome="no_answer")
    await store.update_lead(one["id"], None, status="done", last_outcome="busy")
    status, body = await api.call("supervisor", "POST",
                                  f"/api/v1/outbound/lists/{lst['id']}/recycle")  # fmt: skip
    assert status == 200 and body["recycled"] == 1
    assert (await store.lead(two["id"]) or {})["status"] == "new"
    assert (await store.lead(one["id"]) or {})["status"] == "done"
    recycle = f"/api/v1/outbound/lists/{lst['id']}/recycle"
    status, body = await api.call("supervisor", "POST", f"{recycle}?busy=true")
    assert body["recycled"] == 1


async def test_leads_are_listed_and_reassigned(env: tuple[Api, OutboundStore, Pipeline]) -> None:
    api, store, _ = env
    status, c = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns",
                               {"name": "re", "mode": "preview"})  # fmt: skip
    lists = f"/api/v1/outbound/campaigns/{c['id']}/lists"
    status, lst = await api.call("supervisor", "POST", lists, {"name": "l"})
    await api.call("supervisor", "POST", f"/api/v1/outbound/lists/{lst['id']}/import?phone=n",
                   data=b"n\n13800138001\n13800138002\n13800138003\n")  # fmt: skip
    new = f"/api/v1/outbound/leads?campaign={c['id']}&status=new"
    status, body = await api.call("supervisor", "GET", new)
    ids = [lead["id"] for lead in body["leads"]]
    assert status == 200 and len(ids) == 3
    status, body = await api.call("supervisor", "POST", "/api/v1/outbound/leads/reassign",
                                  {"leads": ids[:2], "agent": "a2002"})  # fmt: skip
    assert status == 200 and body["changed"] == 2
    assert [lead["agent"] for lead in await store.leads(list_id=lst["id"])] == [
        "a2002", "a2002", ""]  # fmt: skip
    status, body = await api.call("supervisor", "POST", "/api/v1/outbound/leads/reassign",
                                  {"leads": ids, "agent": "a\r\nAction: Originate"})  # fmt: skip
    assert status == 400
    status, body = await api.call("a2001", "GET", "/api/v1/outbound/leads")
    assert status == 403


async def test_a_sale_becomes_a_crm_customer_with_a_won_opportunity(db: Database) -> None:
    """End to end with the CRM's own pipeline (crm_bridge offers Services.sales)."""
    from crm_bridge.access import SYSTEM
    from crm_bridge.conversions import StoreSalesPipeline
    from crm_bridge.pool import Pool
    from crm_bridge.store import CrmStore

    crm = CrmStore(db, "CN")
    pool = Pool(crm)
    services = Services(sales=StoreSalesPipeline(pool))
    store = OutboundStore(db, "CN")
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=WsHub(db)))
    tokens = {"supervisor": await create_token(db, "sup1", "supervisor"),
              "a2001": await create_token(db, "a2001", "agent")}  # fmt: skip
    OutboundApi(store, None, services=services).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        api = Api(client, tokens)
        status, c = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns",
                                   {"name": "sell", "mode": "preview"})  # fmt: skip
        status, lst = await api.call("supervisor", "POST",
                                     f"/api/v1/outbound/campaigns/{c['id']}/lists",
                                     {"name": "l"})  # fmt: skip
        await api.call("supervisor", "POST",
                       f"/api/v1/outbound/lists/{lst['id']}/import?phone=n&name=who",
                       data="n,who\n13800138001,张三\n".encode())  # fmt: skip
        await api.call("supervisor", "POST", f"/api/v1/outbound/campaigns/{c['id']}/start")
        status, body = await api.call("a2001", "POST",
                                      f"/api/v1/outbound/campaigns/{c['id']}/next")  # fmt: skip
        lead = body["lead"]
        status, body = await api.call("a2001", "POST",
                                      f"/api/v1/outbound/leads/{lead['id']}/outcome",
                                      {"outcome": "sale", "note": "10 seats"})  # fmt: skip
        assert status == 200 and body["crm"]["recorded"] is True, body
        customer_id = body["crm"]["customer_id"]
    customer = await crm.get_customer(customer_id, SYSTEM)
    assert customer["name"] == "张三" and customer["owner"] == "a2001"
    (opportunity,) = await pool.list_leads(SYSTEM, customer_id=customer_id)
    assert opportunity["status"] == "won" and opportunity["owner"] == "a2001"
    assert opportunity["title"] == "sell: sale" and opportunity["notes"] == "10 seats"
