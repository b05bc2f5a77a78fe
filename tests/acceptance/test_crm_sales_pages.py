"""Public pool, leads and opportunities, and the sales dashboard in Chromium against the
real CRM store (SQLite and PostgreSQL): claims within the per-agent limit, the pool job
returning an idle customer by itself, a lead posted to the public web form (rate limited,
validated) assigned by rule, moved through the stages on the board to won, and the
dashboard's figures equal to a direct count of the tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, Page
from sqlalchemy import func, select, update

from crm_bridge.feature import CrmFeature
from crm_bridge.models import Customer, Interaction, Lead
from cti.store.db import Database
from tests.acceptance.crm_site import Site, crm_site, open_page
from tests.acceptance.harness import wait_for

FORM_KEY = "form-key-0123456789abcdef"
CRM = {
    "pool_after_days": 30,
    "pool_check_interval_s": 0.2,
    "pool_claims_per_day": 2,
    "lead_rules": {
        "rule": "region",
        "agents": ["agent1", "agent2"],
        "by_region": {"江苏": "agent2"},
    },
    "lead_form": {"keys": [FORM_KEY], "per_minute": 1, "burst": 4},
    "sales_target_monthly": 10000,
}


@pytest.fixture
async def site(db: Database) -> AsyncIterator[Site]:
    async with crm_site(db, [CrmFeature()], {"crm": CRM}) as s:
        yield s


async def _owners(page: Page) -> list[str]:
    return await page.locator("#rows td.owner .who").all_inner_texts()


async def test_pool_claim_limit_and_auto_return(browser: Browser, site: Site) -> None:
    ids = []
    for name in ("P1", "P2", "P3"):
        c = await site.ok("sup", "POST", "/api/v1/customers", json={"name": name})
        ids.append(c["id"])
    page, errors = await open_page(browser, site.base + "/crm/", "agent1")
    await page.locator("#rows button.claim").first.wait_for()
    for n in (1, 2):  # two claims a day
        await page.locator("#rows button.claim").first.click()
        await wait_for(
            lambda n=n: _count_mine(page, n),
            timeout=10,
            what=f"claim {n}",  # type: ignore[misc]
        )
    await page.locator("#rows button.claim").first.click()
    await page.locator("#error", has_text="claim limit reached").wait_for()
    errors.remove(next(e for e in errors if e.startswith("403 ")))
    # the pool job: an owner idle for 30 days loses the customer without anyone asking
    old = datetime.now(UTC) - timedelta(days=31)
    mine = [
        c["id"]
        for c in (await site.ok("agent1", "GET", "/api/v1/customers", params={"owner": "agent1"}))[
            "customers"
        ]
    ]
    async with site.db.session() as s, s.begin():
        await s.execute(
            update(Customer)
            .where(Customer.id == mine[0])
            .values(owned_since=old, last_contact_at=old)
        )

    async def returned() -> bool:
        c = await site.ok("sup", "GET", f"/api/v1/customers/{mine[0]}")
        return c["owner"] is None

    await wait_for(returned, timeout=10, what="the pool job returning the idle customer")
    audit = await site.ok("sup", "GET", f"/api/v1/customers/{mine[0]}/audit")
    moves = [(a["actor"], a["action"], a["changes"]["owner"]) for a in audit["audit"][1:]]
    assert moves == [
        ("agent1", "claim", [None, "agent1"]),
        ("system", "pool_return", ["agent1", None]),
    ]
    await page.click("#filters button[type=submit]")
    await wait_for(lambda: _count_mine(page, 1), timeout=10, what="the list after the return")
    assert errors == []
    await page.close()


async def _count_mine(page: Page, n: int) -> bool:
    return (await _owners(page)).count("agent1") == n


async def _form(site: Site, body: Any, key: str = FORM_KEY, **kw: Any) -> tuple[int, Any]:
    async with site.http.post(site.base + "/forms/lead", params={"key": key}, **kw) as r:
        data = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, data


async def test_web_form_lead_by_rule_to_won_on_the_board(browser: Browser, site: Site) -> None:
    # validated: a bad number, no name, a wrong key
    assert (await _form(site, None, json={"name": "X", "phone": "<script>"}))[0] == 400
    status, data = await _form(site, None, json={"phone": "13800138000"})
    assert status == 400 and data["error"].startswith("name")
    assert (await _form(site, None, key="wrong-key-0123456789", json={"name": "X"}))[0] == 404
    # Beijing: no region rule matches -> round robin from the first agent; Jiangsu -> agent2
    status, data = await _form(
        site,
        None,
        data={
            "name": "Web One",
            "phone": "13800138000",
            "message": "<b>call me</b>",
            "site_field": "x",
        },
    )
    assert status == 201, data
    status, data2 = await _form(
        site, None, json={"name": "Web Two", "phone": "13912345678", "title": "Quote for 10 seats"}
    )
    assert status == 201, data2
    # burst of 4 per address spent: the next one waits
    status, data = await _form(site, None, json={"name": "Web Three", "phone": "13700000000"})
    assert status == 429
    leads = (await site.ok("sup", "GET", "/api/v1/leads"))["leads"]
    by_title = {lead["title"]: lead for lead in leads}
    one, two = by_title["Web form: Web One"], by_title["Quote for 10 seats"]
    assert (one["owner"], one["source"], one["region"]) == ("agent1", "web_form", "北京市")
    assert (two["owner"], two["region"]) == ("agent2", "江苏省常州市")
    assert one["notes"] == "<b>call me</b>"
    customer = await site.ok("agent1", "GET", f"/api/v1/customers/{one['customer_id']}")
    assert customer["owner"] == "agent1"  # a new customer goes with its lead
    detail = await site.ok("sup", "GET", f"/api/v1/leads/{one['id']}")
    assert [(a["from"], a["to"], a["by"]) for a in detail["assignments"]] == [
        (None, "agent1", "rule")
    ]
    # agent1 works it on the board: contacted -> won
    page, errors = await open_page(browser, site.base + "/crm/opportunities.html", "agent1")
    card = page.locator(f"#board .card[data-id='{one['id']}']")
    await card.wait_for()
    assert await page.locator("#board .card").count() == 1  # only its own
    await card.locator("select.stage").select_option("contacted")
    await page.locator("#board .column[data-stage=contacted] .card").wait_for()
    await page.locator(f"#board .card[data-id='{one['id']}'] select.stage").select_option("won")
    await page.locator("#board .column[data-stage=won] .card").wait_for()
    await page.click("#view-table")
    assert await page.locator("#rows tr").count() == 1
    won = await site.ok("agent1", "GET", f"/api/v1/leads/{one['id']}")
    assert won["status"] == "won" and won["closed_at"] is not None
    # a supervisor reassigns by hand on the table
    sup, sup_errors = await open_page(browser, site.base + "/crm/opportunities.html", "sup")
    await sup.click("#view-table")
    row = sup.locator(f"#rows tr[data-id='{two['id']}']")
    await row.wait_for()
    await sup.locator(f"#board .card[data-id='{two['id']}'] input.assign-to").fill("agent1")
    await sup.locator(f"#board .card[data-id='{two['id']}'] button.assign").click()
    await row.locator("td.owner", has_text="agent1").wait_for()
    assert errors == [] and sup_errors == []
    await page.close()
    await sup.close()


async def test_dashboard_figures_equal_a_direct_count(browser: Browser, site: Site) -> None:
    now = datetime.now(UTC)
    customers = []
    for i in range(3):
        c = await site.ok(
            "sup",
            "POST",
            "/api/v1/customers",
            json={"name": f"D{i}", "owner": "agent1" if i < 2 else "agent2"},
        )
        customers.append(c)
    values = [1000.0, 2500.0, 400.0, 999.5]
    leads = []
    for i, v in enumerate(values):
        owner = "agent1" if i % 2 == 0 else "agent2"
        lead = await site.ok(
            "sup",
            "POST",
            "/api/v1/leads",
            json={
                "customer_id": customers[i % 3]["id"],
                "title": f"L{i}",
                "value": v,
                "owner": owner,
            },
        )
        leads.append(lead)
    await site.ok("sup", "PATCH", f"/api/v1/leads/{leads[0]['id']}", json={"status": "won"})
    await site.ok("sup", "PATCH", f"/api/v1/leads/{leads[1]['id']}", json={"status": "won"})
    await site.ok("sup", "PATCH", f"/api/v1/leads/{leads[2]['id']}", json={"status": "proposal"})
    await site.ok("sup", "PATCH", f"/api/v1/leads/{leads[3]['id']}", json={"status": "lost"})
    for who, n in (("agent1", 3), ("agent2", 1)):
        for _ in range(n):
            await site.ok(
                who,
                "POST",
                "/api/v1/interactions",
                json={"customer_id": customers[0 if who == "agent1" else 2]["id"], "notes": "x"},
            )
    async with site.db.session() as s, s.begin():
        for i, agent in enumerate(["agent1", "agent2", "agent2", "<b>evil</b>"]):
            s.add(
                Interaction(
                    linkedid=f"d{i}", kind="call", agent=agent, started_at=now - timedelta(hours=i)
                )
            )
        s.add(
            Interaction(
                linkedid="old", kind="call", agent="agent1", started_at=now - timedelta(days=90)
            )
        )
    page, errors = await open_page(browser, site.base + "/crm/dashboard.html", "sup")
    await page.locator("#pipeline-rows tr").first.wait_for()
    # the direct count
    t0 = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=29)
    async with site.db.session() as s:
        won_n, won_v = (
            await s.execute(
                select(func.count(Lead.id), func.sum(Lead.value)).where(
                    Lead.status == "won", Lead.closed_at >= t0
                )
            )
        ).one()
        stages = dict(
            (await s.execute(select(Lead.status, func.count(Lead.id)).group_by(Lead.status))).all()
        )
        calls = dict(
            (
                await s.execute(
                    select(Interaction.agent, func.count(Interaction.id))
                    .where(Interaction.kind == "call", Interaction.started_at >= t0)
                    .group_by(Interaction.agent)
                )
            ).all()
        )
        notes = dict(
            (
                await s.execute(
                    select(Interaction.agent, func.count(Interaction.id))
                    .where(Interaction.kind == "note")
                    .group_by(Interaction.agent)
                )
            ).all()
        )
    assert (won_n, won_v) == (2, 3500.0)
    assert await page.locator("#won-value").inner_text() == "3,500"
    assert await page.locator("#won-count").inner_text() == str(won_n)
    assert await page.locator("#target").inner_text() == "10,000"
    for stage in ("new", "contacted", "qualified", "proposal", "won", "lost"):
        shown = await page.locator(f"#pipeline-rows tr[data-stage={stage}] td.count").inner_text()
        assert int(shown) == stages.get(stage, 0), stage
    for agent in set(calls) | set(notes):
        row = page.locator(f"#activity-rows tr[data-agent='{agent}']")
        assert int(await row.locator("td.calls").inner_text()) == calls.get(agent, 0), agent
        assert int(await row.locator("td.notes").inner_text()) == notes.get(agent, 0), agent
    # drawn by ECharts, with the same figures
    series = await page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('chart-pipeline'))"
        ".getOption().series[0].data"
    )
    assert series == [
        stages.get(s, 0) for s in ("new", "contacted", "qualified", "proposal", "won", "lost")
    ]
    assert await page.locator("#chart-trend canvas").count() == 1
    assert await page.locator("b").filter(has_text="evil").count() == 0
    # an agent sees its own figures
    agent_page, agent_errors = await open_page(browser, site.base + "/crm/dashboard.html", "agent1")
    await agent_page.locator("#activity-rows tr").first.wait_for()
    assert await agent_page.locator("#activity-rows tr").all_inner_texts() == ["agent1\t1\t3"]
    assert await agent_page.locator("#won-value").inner_text() == "1,000"
    assert errors == [] and agent_errors == []
    await page.close()
    await agent_page.close()


async def test_reminders_in_the_worklist(browser: Browser, site: Site) -> None:
    """A follow-up due today, a contact's birthday today and a customer nobody called for
    90 days are the agent's reminders (GET /api/v1/crm/reminders, shown on /crm/)."""
    today = datetime.now(UTC).date()
    born = today.replace(year=1990) if not (today.month == 2 and today.day == 29) else today
    c1 = await site.ok("sup", "POST", "/api/v1/customers", json={"name": "Due", "owner": "agent1"})
    await site.ok(
        "sup",
        "POST",
        "/api/v1/leads",
        json={
            "customer_id": c1["id"],
            "title": "Call back about the quote",
            "owner": "agent1",
            "follow_up_on": today.isoformat(),
        },
    )
    await site.ok(
        "sup",
        "POST",
        "/api/v1/leads",
        json={
            "customer_id": c1["id"],
            "title": "Later",
            "owner": "agent1",
            "follow_up_on": (today + timedelta(days=3)).isoformat(),
        },
    )
    await site.ok(
        "sup",
        "POST",
        "/api/v1/customers",
        json={
            "name": "Birthday Co",
            "owner": "agent1",
            "contacts": [{"name": EVIL_NAME, "birthday": born.isoformat()}],
        },
    )
    await site.ok(
        "sup",
        "POST",
        "/api/v1/customers",
        json={"name": "Other's", "owner": "agent2", "birthday": born.isoformat()},
    )
    old = await site.ok(
        "sup", "POST", "/api/v1/customers", json={"name": "Quiet", "owner": "agent1"}
    )
    async with site.db.session() as s, s.begin():
        await s.execute(
            update(Customer)
            .where(Customer.id == old["id"])
            .values(created_at=datetime.now(UTC) - timedelta(days=120), last_contact_at=None)
        )
    data = await site.ok("agent1", "GET", "/api/v1/crm/reminders")
    kinds = sorted((r["kind"], r["customer_name"]) for r in data["reminders"])
    assert kinds == [("birthday", "Birthday Co"), ("dormant", "Quiet"), ("follow_up", "Due")]
    page, errors = await open_page(browser, site.base + "/crm/", "agent1")
    await page.locator("#reminders li.follow_up", has_text="Call back about the quote").wait_for()
    assert await page.locator("#reminders li").count() == 3
    assert EVIL_NAME in await page.locator("#reminders li.birthday").inner_text()
    assert await page.locator("#reminders img").count() == 0
    assert errors == []
    await page.close()


EVIL_NAME = "<img src=x onerror=alert(1)>"
