"""Lead assignment rules, stale reassignment and the public form's rate limit through the
REST API on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from crm_bridge.models import Lead
from crm_bridge.ratelimit import RateLimiter
from cti.store.db import Database
from tests.integration.test_crm_harness import crm_server

RULES = {"rule": "industry", "agents": ["agent1", "agent2"], "by_industry": {"bank": "agent2"}}


async def test_industry_rule_round_robin_fallback_and_stale_reassignment(db: Database) -> None:
    async with crm_server(db, {"lead_rules": RULES, "lead_stale_days": 7}) as crm:
        status, c = await crm.call("sup", "POST", "/api/v1/customers", json={"name": "C"})
        assert status == 201
        owners = []
        for industry in ("bank", "retail", "retail", "retail"):
            status, lead = await crm.call(
                "sup",
                "POST",
                "/api/v1/leads",
                json={"customer_id": c["id"], "title": industry, "industry": industry},
            )
            assert status == 201, lead
            owners.append(lead["owner"])
        # bank -> agent2 by its rule; the rest take turns after the last rule-given owner
        assert owners == ["agent2", "agent1", "agent2", "agent1"]
        # an agent creates leads only on its own customers
        status, _ = await crm.call(
            "agent1", "POST", "/api/v1/leads", json={"customer_id": c["id"], "title": "x"}
        )
        assert status == 403  # the pool customer must be claimed first
        status, _ = await crm.call("agent1", "POST", "/api/v1/leads/reassign-stale")
        assert status == 403
        status, data = await crm.call("sup", "POST", "/api/v1/leads/reassign-stale")
        assert status == 200 and data["leads"] == []  # nothing stale yet
        async with db.session() as s, s.begin():
            await s.execute(
                update(Lead)
                .where(Lead.title == "retail")
                .values(updated_at=datetime.now(UTC) - timedelta(days=8))
            )
        status, data = await crm.call("sup", "POST", "/api/v1/leads/reassign-stale")
        assert status == 200
        moved = {lead["id"]: lead["owner"] for lead in data["leads"]}
        assert len(moved) >= 2  # the turn moved on: each stale lead went to the next agent
        status, detail = await crm.call("sup", "GET", f"/api/v1/leads/{next(iter(moved))}")
        assert detail["assignments"][-1]["by"] == "rule"
        status, data = await crm.call(
            "sup", "GET", "/api/v1/crm/dashboard", params={"from": "2026-02-01", "to": "2026-01-01"}
        )
        assert status == 400


async def test_form_off_without_keys(db: Database) -> None:
    async with crm_server(db) as crm:
        status, _ = await crm.call(None, "POST", "/forms/lead", json={"name": "x"})
        assert status == 404


def test_rate_limiter_per_address_and_total() -> None:
    rl = RateLimiter(per_minute=60, burst=2, total_per_minute=6, max_keys=2)
    assert [rl.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert rl.allow("a", 1.0)  # one a second comes back
    assert rl.allow("b", 1.0) and rl.allow("b", 1.0) and rl.allow("c", 1.0)
    assert not rl.allow("d", 1.0)  # six in the first second: the total is spent
    assert rl.allow("d", 30.0)  # one every ten seconds comes back
    rl.allow("e", 30.0)
    assert len(rl._keys) == 2  # only the most recent addresses are remembered


async def test_telesales_conversions_become_customers_with_opportunities(db: Database) -> None:
    """What outbound hands over (Services.sales): a sale on an unknown number is a new
    customer of the agent with a won opportunity; an interested known customer gets an
    open one."""
    from cti.services import Conversion

    async with crm_server(db) as crm:
        sales = crm.services.sales
        assert sales is not None
        new_id = await sales.record_conversion(
            Conversion(
                number="13800138000",
                name="王五",
                agent="agent1",
                kind="sale",
                campaign="spring",
                note="<b>10 seats</b>",
            )
        )
        status, c = await crm.call("agent1", "GET", f"/api/v1/customers/{new_id}")
        assert status == 200 and c["owner"] == "agent1" and c["name"] == "王五"
        again = await sales.record_conversion(
            Conversion(
                number="+86 138 0013 8000",
                name="x",
                agent="agent1",
                kind="interested",
                campaign="spring",
            )
        )
        assert again == new_id
        status, data = await crm.call(
            "agent1", "GET", "/api/v1/leads", params={"customer_id": new_id}
        )
        leads = sorted(
            (lead["status"], lead["source"], lead["owner"], lead["notes"]) for lead in data["leads"]
        )
        assert leads == [
            ("contacted", "outbound", "agent1", ""),
            ("won", "outbound", "agent1", "<b>10 seats</b>"),
        ]
