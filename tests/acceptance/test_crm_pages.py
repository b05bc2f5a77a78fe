"""The customer pages in Chromium against the real CRM store (SQLite and PostgreSQL):
search by any part of a number / name / company / tag with filters and paging, bulk
moves, exports that neutralise formulas, the duplicate warning before a create, the
customer card with custom fields, contacts, the timeline, and a merge that keeps the
history. Customer text is shown as text (a markup name never becomes an element)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from crm_bridge.feature import CrmFeature
from cti.store.db import Database
from tests.acceptance.crm_site import Site, crm_site, open_page
from tests.acceptance.harness import wait_for

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def site(db: Database) -> AsyncIterator[Site]:
    async with crm_site(db, [CrmFeature()]) as s:
        yield s


async def _customer(site: Site, who: str, body: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = await site.ok(who, "POST", "/api/v1/customers", json=body)
    return data


async def _names(page: Page) -> list[str]:
    return await page.locator("#rows a.name").all_inner_texts()


async def test_customer_list_search_filters_paging_bulk_export(
    browser: Browser, site: Site
) -> None:
    await _customer(
        site,
        "sup",
        {
            "name": "王小明",
            "company": "华为",
            "tier": "gold",
            "tags": ["vip"],
            "phones": ["+86 138 0013 8000"],
            "owner": "agent1",
        },
    )
    await _customer(
        site,
        "sup",
        {"name": EVIL, "company": '=HYPERLINK("x")', "phones": ["13912345678"], "owner": "agent1"},
    )
    for i in range(55):
        await _customer(site, "sup", {"name": f"Pool {i:02d}", "tags": ["bulk"]})
    page, errors = await open_page(browser, site.base + "/crm/", "sup")
    await page.locator("#rows tr").first.wait_for()
    first = await _names(page)
    assert len(first) == 50  # one page
    await page.click("#next")  # keyset: the customers older than the page's last one
    await wait_for(lambda: _count(page, 7), timeout=10, what="the second page")
    assert not await page.locator("#next").is_enabled()
    assert not set(first) & set(await _names(page))
    await page.click("#prev")
    await wait_for(lambda: _count(page, 50), timeout=10, what="the first page again")
    assert await _names(page) == first
    assert not await page.locator("#prev").is_enabled()
    # any part of a number, in any format
    await page.fill("#q", "0013 80")
    await page.click("#filters button[type=submit]")
    await wait_for(lambda: _only(page, ["王小明"]), timeout=10, what="search by part of a number")
    assert await page.locator("#rows td.region").first.inner_text() == "北京市"
    for q, want in [
        ("小明", ["王小明"]),
        ("华为", ["王小明"]),
        ("VIP", ["王小明"]),
        ("img src", [EVIL]),
    ]:
        await page.fill("#q", q)
        await page.click("#filters button[type=submit]")
        await wait_for(lambda w=want: _only(page, w), timeout=10, what=f"search {q}")  # type: ignore[misc]
    assert await page.locator("#rows img").count() == 0  # the name is text, not markup
    # filters: region (号码归属地) and tier
    await page.fill("#q", "")
    await page.fill("#region", "江苏")
    await page.click("#filters button[type=submit]")
    await wait_for(lambda: _only(page, [EVIL]), timeout=10, what="region filter")
    await page.fill("#region", "")
    await page.fill("#tier", "gold")
    await page.click("#filters button[type=submit]")
    await wait_for(lambda: _only(page, ["王小明"]), timeout=10, what="tier filter")
    # bulk: give two pool customers to agent2, return them to the pool again
    await page.fill("#tier", "")
    await page.fill("#tag", "bulk")
    await page.fill("#q", "Pool 0")
    await page.click("#filters button[type=submit]")
    await wait_for(lambda: _count(page, 10), timeout=10, what="ten bulk customers")
    await page.locator("#rows input.pick").nth(0).check()
    await page.locator("#rows input.pick").nth(1).check()
    await page.fill("#assign-to", "agent2")
    await page.click("#assign")
    await wait_for(lambda: _owners(page, 2, "agent2"), timeout=10, what="the bulk assignment")
    owned = await site.ok("agent2", "GET", "/api/v1/customers", params={"owner": "agent2"})
    assert sorted(c["name"] for c in owned["customers"]) == ["Pool 08", "Pool 09"]
    # export: what the list shows, formulas neutralised
    await page.fill("#q", "")
    await page.fill("#tag", "")
    await page.click("#filters button[type=submit]")
    async with page.expect_download() as info:
        await page.click("#export-csv")
    download = await info.value
    path = await download.path()
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    companies = {r[2] for r in rows[1:]}
    assert '\'=HYPERLINK("x")' in companies and '=HYPERLINK("x")' not in companies
    assert len(rows) == 1 + 57
    assert errors == []
    await page.close()


async def _count(page: Page, n: int) -> bool:
    return await page.locator("#rows tr").count() == n


async def _only(page: Page, names: list[str]) -> bool:
    return await _names(page) == names


async def _owners(page: Page, n: int, owner: str) -> bool:
    return (await page.locator("#rows td.owner .who").all_inner_texts()).count(owner) == n


async def test_agent_returns_own_customer_to_pool_but_cannot_assign(
    browser: Browser, site: Site
) -> None:
    mine = await _customer(site, "agent1", {"name": "Mine"})
    other = await _customer(site, "agent2", {"name": "Theirs"})
    status, _ = await site.call(
        "agent1", "POST", "/api/v1/customers/bulk", json={"ids": [mine["id"]], "owner": "agent2"}
    )
    assert status == 403
    status, _ = await site.call(
        "agent1",
        "POST",
        "/api/v1/customers/bulk",
        json={"ids": [mine["id"], other["id"]], "owner": None},
    )
    assert status == 404  # all or nothing: another agent's customer is not found
    page, errors = await open_page(browser, site.base + "/crm/", "agent1")
    await wait_for(lambda: _only(page, ["Mine"]), timeout=10, what="the agent's list")
    assert await page.locator("#assign").is_hidden()
    await page.locator("#rows input.pick").first.check()
    await page.click("#to-pool")
    await wait_for(lambda: _owners(page, 1, "public pool"), timeout=10, what="back in the pool")
    audit = await site.ok("sup", "GET", f"/api/v1/customers/{mine['id']}/audit")
    assert [a["action"] for a in audit["audit"]] == ["create", "pool_return"]
    assert errors == []
    await page.close()


async def test_duplicate_warning_before_create(browser: Browser, site: Site) -> None:
    first = await _customer(site, "agent1", {"name": "张三", "phones": ["+86 138 0013 8000"]})
    page, errors = await open_page(browser, site.base + "/crm/", "agent1")
    await page.locator("#new-form").wait_for()
    await page.fill("#n-name", "Zhang")
    await page.fill("#n-phone", "0086-138-0013-8000")  # the same number, another format
    await page.click("#new-form button[type=submit]")
    await page.locator("#dups li.dup").first.wait_for()
    assert await page.locator("#dups").is_visible()
    assert "phone +8613800138000" in await page.locator("#dups").inner_text()
    assert await page.locator("#create-anyway").is_hidden()  # an agent may not force
    assert (await site.ok("sup", "GET", "/api/v1/customers"))["customers"][0]["id"] == first["id"]
    # a new number: created, and the customer page opens
    await page.fill("#n-phone", "13700000001")
    await page.click("#new-form button[type=submit]")
    await page.wait_for_url("**/crm/customer.html?id=*")
    await wait_for(
        lambda: _text(page, "#c-title", "Zhang"), timeout=10, what="the new customer's page"
    )
    assert errors == []
    await page.close()


async def _text(page: Page, selector: str, want: str) -> bool:
    return (await page.locator(selector).inner_text()) == want


async def test_customer_page_card_custom_fields_contacts_timeline_merge(
    browser: Browser, site: Site
) -> None:
    await site.ok(
        "admin",
        "PUT",
        "/api/v1/crm/custom-fields",
        json={
            "fields": [
                {
                    "key": "industry",
                    "label_en": "Industry",
                    "label_zh": "行业",
                    "kind": "choice",
                    "choices": ["retail", "bank"],
                },
                {
                    "key": "employees",
                    "label_en": "Employees",
                    "label_zh": "员工数",
                    "kind": "number",
                },
            ]
        },
    )
    keep = await _customer(
        site, "agent1", {"name": "李四", "company": "ACME", "phones": ["13800138000"]}
    )
    dup = await _customer(
        site, "agent1", {"name": EVIL, "phones": ["13900000002"], "tags": ["old"]}
    )
    await site.ok(
        "agent1",
        "POST",
        "/api/v1/interactions",
        json={"customer_id": dup["id"], "kind": "note", "notes": "old record's note"},
    )
    await site.ok(
        "agent1",
        "POST",
        "/api/v1/leads",
        json={"customer_id": keep["id"], "title": "Big deal", "value": 1000},
    )
    page, errors = await open_page(
        browser, site.base + f"/crm/customer.html?id={keep['id']}", "agent1"
    )
    await wait_for(lambda: _text(page, "#c-title", "李四"), timeout=10, what="the card")
    assert await page.locator("#c-region").inner_text() == "北京市"
    # the card: custom fields from the admin, saved with the rest
    await page.locator("#custom select[data-key=industry]").select_option("bank")
    await page.fill("#custom input[data-key=employees]", "250")
    await page.fill("#f-tier", "gold")
    await page.click("#card button[type=submit]")
    await page.locator("#card-state", has_text="Saved").wait_for()
    stored = await site.ok("agent1", "GET", f"/api/v1/customers/{keep['id']}")
    assert stored["custom"] == {"industry": "bank", "employees": 250} and stored["tier"] == "gold"
    # a contact with a birthday
    await page.fill("#k-name", "Wang Wu")
    await page.fill("#k-birthday", "1990-03-07")
    await page.fill("#k-phone", "13600000003")
    await page.click("#contact-form button[type=submit]")
    await page.locator("#contacts td.birthday", has_text="1990-03-07").wait_for()
    # a note with a disposition on the timeline, the opportunity too
    await page.fill("#note-text", "called back " + EVIL)
    await page.locator("#note-disp").select_option("follow_up")
    await page.click("#note-form button[type=submit]")
    await page.locator("#timeline li.note", has_text="called back").wait_for()
    assert "Follow up" in await page.locator("#timeline li.note").first.inner_text()
    assert await page.locator("#timeline li.opportunity", has_text="Big deal").count() == 1
    # merge the duplicate: its note and tag come along, its record is gone
    page.on("dialog", lambda d: d.accept())
    await page.fill("#merge-q", "13900000002")
    await page.click("#merge-find button[type=submit]")
    await page.locator(f"#merge-list button.merge[data-id='{dup['id']}']").click()
    await page.locator("#timeline li.note", has_text="old record's note").wait_for()
    await page.locator("#timeline li.owner", has_text="Merge").wait_for()
    assert await page.locator("img").count() == 0
    status, _ = await site.call("agent1", "GET", f"/api/v1/customers/{dup['id']}")
    assert status == 404
    merged = await site.ok("agent1", "GET", f"/api/v1/customers/{keep['id']}")
    assert merged["tags"] == ["old"]
    numbers = sorted(p["e164"] for c in merged["contacts"] for p in c["phones"])
    assert numbers == ["+8613600000003", "+8613800138000", "+8613900000002"]
    found = await site.ok("agent1", "GET", "/api/v1/customers", params={"q": "13900000002"})
    assert [c["id"] for c in found["customers"]] == [keep["id"]]
    audit = await site.ok("agent1", "GET", f"/api/v1/customers/{keep['id']}/audit")
    assert {a["action"] for a in audit["audit"]} >= {"create", "update", "merge"}
    assert any(a["entity_id"] == dup["id"] and a["action"] == "create" for a in audit["audit"])
    # bad custom values are a 400 naming the field
    status, data = await site.call(
        "agent1", "PATCH", f"/api/v1/customers/{keep['id']}", json={"custom": {"industry": "farm"}}
    )
    assert status == 400 and "custom.industry" in data["error"]
    await page.select_option("#lang", "zh")
    await page.locator("#timeline li.note b", has_text="备注").first.wait_for()
    assert errors == []
    await page.close()
