"""Outbound lists and do-not-call (issue 16, lists) on SQLite and PostgreSQL: a file is
imported through the column-mapping step; numbers become E.164, invalid ones are rejected
with the reason, duplicates (in the file, in the list) and CRM customers (naming the
owning agent) are reported, do-not-call hits removed, the region attached; the
do-not-call list the feature offers is the one the dial policy asks."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import openpyxl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from crm_bridge.access import SYSTEM
from crm_bridge.directory import StoreDirectory
from crm_bridge.schemas import CustomerIn
from crm_bridge.store import CrmStore
from cti.config import DialConfig
from cti.dialpolicy import StoreDialPolicy
from cti.services import Services
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from outbound.api import OutboundApi
from outbound.store import OutboundStore
from tests.integration.test_acd_api import NoCalls

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

LEADS_CSV = (
    "客户姓名,手机号码,城市,备注\n"
    "张三,138 0013 8000,北京,first\n"          # line 2: kept (Beijing mobile)
    "李四,021-6234 5678,上海,\n"               # line 3: kept (Shanghai fixed line)
    "王五,123,x,\n"                            # line 4: too short
    "赵六,call me,x,\n"                        # line 5: not a number
    "张三 again,+86 138-0013-8000,北京,\n"     # line 6: duplicate of line 2
    "DNC company,13900139000,,\n"              # line 7: on the company DNC list
    "DNC campaign,13700137000,,\n"             # line 8: on this campaign's DNC list
    "Customer,13600136000,,\n"                 # line 9: an existing CRM customer
    ",,,\n"                                    # an empty row: skipped, not counted
    "'=HYPERLINK(\"x\"),+8615900159000,,'=cmd\n"  # line 11: kept, the text as data
)  # fmt: skip


class Api:
    def __init__(self, client: TestClient[web.Request, web.Application], tokens: dict[str, str]):
        self.client = client
        self.tokens = tokens

    async def call(
        self, who: str, method: str, path: str, body: Any = None, *,
        data: bytes | None = None, ctype: str = "text/csv",
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if data is not None:
            headers["Content-Type"] = ctype
        resp = await self.client.request(
            method, path, json=body if data is None else None, data=data, headers=headers
        )
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.read()


@pytest.fixture
async def env(db: Database) -> AsyncIterator[tuple[Api, OutboundStore, Services]]:
    crm = CrmStore(db, "CN")
    await crm.create_customer(CustomerIn.model_validate({
        "name": "Old Customer Ltd", "owner": "agent7",
        "contacts": [{"name": "Boss", "phones": ["13600136000"]}],
    }), SYSTEM)  # fmt: skip
    services = Services(customer_directory=StoreDirectory(crm))
    store = OutboundStore(db, "CN", lambda: services.customer_directory)
    services.do_not_call = store
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=WsHub(db)))
    tokens = {role: await create_token(db, f"{role}1", role)
              for role in ("agent", "supervisor", "admin")}  # fmt: skip
    OutboundApi(store).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, tokens), store, services


async def _campaign_with_list(api: Api, name: str = "spring") -> tuple[int, int]:
    status, campaign = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns",
                                      {"name": name, "mode": "progressive"})  # fmt: skip
    assert status == 201, campaign
    status, lst = await api.call("supervisor", "POST",
                                 f"/api/v1/outbound/campaigns/{campaign['id']}/lists",
                                 {"name": "leads.csv"})  # fmt: skip
    assert status == 201, lst
    return campaign["id"], lst["id"]


async def test_import_maps_cleans_and_reports(env: tuple[Api, OutboundStore, Services]) -> None:
    api, store, _ = env
    campaign_id, list_id = await _campaign_with_list(api)
    status, body = await api.call("supervisor", "POST", "/api/v1/outbound/dnc",
                                  {"numbers": ["139 0013 9000"], "reason": "asked"})  # fmt: skip
    assert status == 200 and body["added"] == 1, body
    status, body = await api.call("supervisor", "POST", "/api/v1/outbound/dnc",
                                  {"numbers": ["13700137000"], "scope": "spring"})  # fmt: skip
    assert status == 200 and body["added"] == 1, body

    # the mapping step: columns, a sample, a guess
    data = LEADS_CSV.encode()
    status, preview = await api.call("supervisor", "POST", "/api/v1/outbound/imports/preview",
                                     data=data)  # fmt: skip
    assert status == 200, preview
    assert preview["columns"] == ["客户姓名", "手机号码", "城市", "备注"]
    assert preview["suggested"] == {"phone": "手机号码", "name": "客户姓名",
                                    "keep": ["城市", "备注"]}  # fmt: skip
    assert preview["rows"] == 10 and preview["sample"][0][0] == "张三"

    status, report = await api.call(
        "supervisor", "POST",
        f"/api/v1/outbound/lists/{list_id}/import?phone=手机号码&name=客户姓名&keep=城市,备注",
        data=data,
    )  # fmt: skip
    assert status == 200, report
    assert report["rows"] == 9
    assert report["kept"] == 4
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [
        (4, "too short"), (5, "not a phone number (digits, + and separators only)"),
    ]  # fmt: skip
    assert report["duplicates"] == [{"line": 6, "number": "+8613800138000", "first_line": 2}]
    assert report["dnc"] == [
        {"line": 7, "number": "+8613900139000", "scope": "company"},
        {"line": 8, "number": "+8613700137000", "scope": "campaign"},
    ]
    (customer,) = report["customers"]
    assert customer["line"] == 9 and customer["number"] == "+8613600136000"
    assert customer["owner_agent"] == "agent7" and customer["customer"] == "Old Customer Ltd"
    assert customer["kept"] is True

    leads = {lead["number"]: lead for lead in await store.leads(list_id=list_id)}
    assert set(leads) == {"+8613800138000", "+862162345678", "+8613600136000",
                          "+8615900159000"}  # fmt: skip
    beijing = leads["+8613800138000"]
    assert (beijing["name"], beijing["region"], beijing["region_en"]) == ("张三", "北京市",
                                                                           "Beijing")  # fmt: skip
    assert beijing["data"] == {"城市": "北京", "备注": "first"} and beijing["status"] == "new"
    assert leads["+862162345678"]["region"] == "上海市"
    assert leads["+8613600136000"]["owner_agent"] == "agent7"
    # a cell an export neutralised comes back as typed: stored as data, never run
    assert leads["+8615900159000"]["name"] == '=HYPERLINK("x")'

    # the same file again: everything kept before is a duplicate in the list
    status, again = await api.call(
        "supervisor", "POST", f"/api/v1/outbound/lists/{list_id}/import?phone=手机号码",
        data=data,
    )  # fmt: skip
    assert status == 200 and again["kept"] == 0
    assert sum(1 for d in again["duplicates"] if d.get("in_list")) == 4
    status, lst = await api.call("supervisor", "GET", f"/api/v1/outbound/lists/{list_id}")
    assert lst["leads"] == {"new": 4} and lst["report"]["kept"] == 0
    assert campaign_id == lst["campaign_id"]


async def test_xlsx_import_and_skip_customers(env: tuple[Api, OutboundStore, Services]) -> None:
    api, store, _ = env
    _, list_id = await _campaign_with_list(api, "xl")
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Name", "Mobile"])
    ws.append(["Numeric cell", 13800138000])  # Excel keeps it as a number
    ws.append(["Customer", "13600136000"])
    ws.append(["Formula", "=1+1"])
    buf = io.BytesIO()
    wb.save(buf)
    status, report = await api.call(
        "supervisor", "POST",
        f"/api/v1/outbound/lists/{list_id}/import?phone=Mobile&name=Name&skip_customers=true",
        data=buf.getvalue(), ctype=XLSX,
    )  # fmt: skip
    assert status == 200, report
    assert report["kept"] == 1 and report["customer_count"] == 1
    assert report["customers"][0]["kept"] is False
    assert report["rejected"][0]["line"] == 4
    (lead,) = await store.leads(list_id=list_id)
    assert lead["number"] == "+8613800138000" and lead["name"] == "Numeric cell"


async def test_bad_files_and_mappings_are_clear_errors(
    env: tuple[Api, OutboundStore, Services],
) -> None:
    api, store, _ = env
    _, list_id = await _campaign_with_list(api)
    url = f"/api/v1/outbound/lists/{list_id}/import"
    status, body = await api.call("supervisor", "POST", f"{url}?phone=nope", data=b"a,b\n1,2\n")
    assert status == 422 and body["code"] == "bad-mapping" and "nope" in body["error"]
    status, body = await api.call("supervisor", "POST", f"{url}?phone=a", data=b"\xff\xfe,\n")
    assert status == 422 and body["code"] == "bad-file"
    status, body = await api.call("supervisor", "POST", f"{url}?phone=a&format=xlsx",
                                  data=b"a,b\n")  # fmt: skip
    assert status == 422 and "xlsx" in body["error"]
    status, body = await api.call("supervisor", "POST", url, data=b"a\n1\n")
    assert status == 400 and body["code"] == "missing-parameter"
    status, body = await api.call("agent", "POST", f"{url}?phone=a", data=b"a\n1\n")
    assert status == 403
    status, body = await api.call("supervisor", "POST", "/api/v1/outbound/lists/999/import"
                                  "?phone=a", data=b"a\n")  # fmt: skip
    assert status == 404
    status, body = await api.call("supervisor", "GET", f"/api/v1/outbound/lists/{2**40}")
    assert status == 404  # past the id column's range: not found, not a database error
    status, body = await api.call("supervisor", "POST", "/api/v1/outbound/leads/reassign",
                                  {"leads": [2**40], "agent": "a"})  # fmt: skip
    assert status == 400
    assert await store.leads(list_id=list_id) == []


async def test_dnc_is_what_the_dial_policy_asks(
    env: tuple[Api, OutboundStore, Services], db: Database
) -> None:
    api, store, services = env
    _, list_id = await _campaign_with_list(api)
    policy = StoreDialPolicy(DialConfig(agent_daily_limit=0), region="CN",
                             timezone="Asia/Shanghai", db=db, services=services)  # fmt: skip
    assert (await policy.check("13800138000", purpose="click_to_call")).allowed
    # an agent marks "do not call me" in one click (company list)
    one_click = {"numbers": ["+86 138 0013 8000"], "reason": "asked"}
    status, body = await api.call("agent", "POST", "/api/v1/outbound/dnc", one_click)
    assert status == 200 and body["added"] == 1
    for purpose in ("click_to_call", "callback", "campaign"):
        decision = await policy.check("13800138000", purpose=purpose, campaign="spring")
        assert not decision.allowed and decision.code == "dnc"
    # agents add one number to the company list only
    status, body = await api.call("agent", "POST", "/api/v1/outbound/dnc",
                                  {"numbers": ["13900139000"], "scope": "spring"})  # fmt: skip
    assert status == 403
    # a campaign's own list blocks that campaign only
    two = {"numbers": ["13900139000", "bogus"], "scope": "spring"}
    status, body = await api.call("supervisor", "POST", "/api/v1/outbound/dnc", two)
    assert status == 200 and body["added"] == 1 and body["rejected"][0]["value"] == "bogus"
    assert await store.is_blocked("+8613900139000", campaign="spring")
    assert not await store.is_blocked("+8613900139000", campaign="autumn")
    assert not await store.is_blocked("+8613900139000")
    # leads with a number put on the list stop being dialled
    status, _ = await api.call("supervisor", "POST",
                               f"/api/v1/outbound/lists/{list_id}/import?phone=n",
                               data=b"n\n13500135000\n")  # fmt: skip
    await api.call("supervisor", "POST", "/api/v1/outbound/dnc/import?column=tel",
                   data=b"tel\n135-0013-5000\nnot a number\n")  # fmt: skip
    (lead,) = await store.leads(list_id=list_id)
    assert lead["status"] == "dnc"
    status, body = await api.call("supervisor", "GET", "/api/v1/outbound/dnc?scope=*")
    assert {(n["number"], n["scope"]) for n in body["numbers"]} == {
        ("+8613800138000", ""), ("+8613900139000", "spring"), ("+8613500135000", "")}  # fmt: skip
    # taken off the list: dialable again
    status, body = await api.call("supervisor", "DELETE",
                                  "/api/v1/outbound/dnc?number=13800138000")  # fmt: skip
    assert status == 200
    assert (await policy.check("13800138000", purpose="campaign", campaign="spring")).allowed
    status, body = await api.call("supervisor", "DELETE",
                                  "/api/v1/outbound/dnc?number=13800138000")  # fmt: skip
    assert status == 404


async def test_campaign_settings_are_validated(env: tuple[Api, OutboundStore, Services]) -> None:
    api, _, _ = env
    bad = [
        {"name": "Bad Name"},
        {"name": "x", "mode": "robocall"},
        {"name": "x", "window": {"days": {"funday": [["09:00", "10:00"]]}}},
        {"name": "x", "window": {"days": {"mon": [["10:00", "09:00"]]}}},
        {"name": "x", "retry": {"hung_up": {"delay_min": 1}}},
        {"name": "x", "abandon_cap": 0.5},
        {"name": "x", "caller_id": "1; Hangup"},
        {"name": "x", "agents": ["a\r\nAction: Originate"]},
    ]
    for body in bad:
        status, out = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns", body)
        assert status == 400, (body, out)
    status, c = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns",
                               {"name": "x", "mode": "predictive"})  # fmt: skip
    assert status == 201 and c["abandon_cap"] == 0.03 and c["status"] == "draft"
    status, _ = await api.call("supervisor", "POST", "/api/v1/outbound/campaigns", {"name": "x"})
    assert status == 409
    status, c2 = await api.call("supervisor", "PATCH", f"/api/v1/outbound/campaigns/{c['id']}",
                                {"abandon_cap": 0.01, "agents": ["1001", "1002"]})  # fmt: skip
    assert status == 200 and c2["abandon_cap"] == 0.01 and c2["agents"] == ["1001", "1002"]
    assert c2["mode"] == "predictive"
    status, _ = await api.call("agent", "GET", "/api/v1/outbound/campaigns")
    assert status == 403
