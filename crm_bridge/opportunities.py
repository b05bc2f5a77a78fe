"""Leads and opportunities (商机) beyond their CRUD in :mod:`crm_bridge.pool`: who gets a
new lead (the ``[crm.lead_rules]`` rule), capture from a site's web form, reassigning
stale ones, and the sales dashboard's figures.

**Assignment by rule** (:meth:`Opportunities.owner_for`): ``round_robin`` gives the lead
to the agent after the one who got the last rule-assigned lead (``crm_lead_assignments``
with ``by = "rule"``: the turn survives restarts and is shared by every node);
``region`` / ``industry`` look the lead up in ``by_region`` (a key contained in the
region: "江苏" matches "江苏省常州市") / ``by_industry`` (equal key) and fall back to the
round robin; ``manual`` leaves the lead unowned for a supervisor.

**Dashboard** (:meth:`Opportunities.dashboard`), for a period ``[start, end)``: the
pipeline (open leads per stage: count and value), won in the period (count, value,
target = ``sales_target_monthly`` times the months covered), activities per agent (calls and
notes started in the period), and a daily trend (new leads, won value, calls). An agent
sees its own figures, a supervisor everyone's.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.access import Actor
from crm_bridge.audit import audit
from crm_bridge.config import CrmConfig
from crm_bridge.errors import Forbidden
from crm_bridge.models import Customer, Interaction, Lead, LeadAssignment
from crm_bridge.pool import Notify, Pool, lead_dict
from cti.services import Reminder
from cti.store.models import utcnow

__all__ = ["STAGES", "Opportunities", "StoreReminders", "reminders"]

STAGES = ("new", "contacted", "qualified", "proposal", "won", "lost")
OPEN = ("new", "contacted", "qualified", "proposal")


class Opportunities:
    def __init__(self, pool: Pool, config: CrmConfig, notify: Notify) -> None:
        self.pool = pool
        self.config = config
        self.notify = notify
        pool.assign_rule = self.owner_for

    @property
    def db(self) -> Any:
        return self.pool.store.db

    async def _next_in_turn(self, session: AsyncSession) -> str | None:
        agents = self.config.lead_rules.agents
        if not agents:
            return None
        last = await session.scalar(
            select(LeadAssignment.to_owner)
            .where(LeadAssignment.by == "rule", LeadAssignment.to_owner.is_not(None))
            .order_by(LeadAssignment.id.desc())
            .limit(1)
        )
        if last not in agents:
            return agents[0]
        return agents[(agents.index(last) + 1) % len(agents)]

    async def owner_for(self, session: AsyncSession, lead: Lead) -> str | None:
        rules = self.config.lead_rules
        if rules.rule == "manual":
            return None
        if rules.rule == "region" and lead.region:
            for key, agent in rules.by_region.items():
                if key and key in lead.region:
                    return agent
        if rules.rule == "industry" and lead.industry in rules.by_industry:
            return rules.by_industry[lead.industry]
        return await self._next_in_turn(session)

    async def reassign_stale(self, days: int, actor: Actor) -> list[dict[str, Any]]:
        """Open leads not changed for ``days``: to the owner the rule names now (a
        supervisor's action; each move recorded and sent as ``lead.assigned``)."""
        if not actor.sees_all:
            raise Forbidden("needs role supervisor")
        cutoff = utcnow() - timedelta(days=days)
        moved: list[tuple[dict[str, Any], str | None]] = []
        async with self.db.session() as session, session.begin():
            leads = (
                await session.scalars(
                    select(Lead)
                    .where(Lead.status.in_(OPEN), Lead.updated_at < cutoff)
                    .order_by(Lead.id)
                    .limit(1000)
                )
            ).all()
            for lead in leads:
                old = lead.owner
                new = await self.owner_for(session, lead)
                if new is None or new == old:
                    continue
                lead.owner = new
                lead.updated_at = utcnow()
                session.add(
                    LeadAssignment(lead_id=lead.id, from_owner=old, to_owner=new, by="rule")
                )
                audit(
                    session,
                    actor,
                    "reassign_stale",
                    "lead",
                    lead.id,
                    lead.customer_id,
                    {"owner": [old, new], "idle_days": days},
                )
                await session.flush()
                moved.append((lead_dict(lead), old))
        for out, old in moved:
            self.notify("lead.assigned", {**out, "previous_owner": old})
        return [out for out, _ in moved]

    # --- dashboard ---------------------------------------------------------------------

    async def dashboard(self, actor: Actor, start: date, end: date) -> dict[str, Any]:
        """Figures for ``[start, end)`` (UTC days)."""
        t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
        t1 = datetime(end.year, end.month, end.day, tzinfo=UTC)
        mine = [] if actor.sees_all else [Lead.owner == actor.name]
        async with self.db.session() as session:
            pipeline_rows = (
                await session.execute(
                    select(Lead.status, func.count(Lead.id), func.coalesce(func.sum(Lead.value), 0))
                    .where(*mine)
                    .group_by(Lead.status)
                )
            ).all()
            won = (
                await session.execute(
                    select(func.count(Lead.id), func.coalesce(func.sum(Lead.value), 0)).where(
                        Lead.status == "won", Lead.closed_at >= t0, Lead.closed_at < t1, *mine
                    )
                )
            ).one()
            agent_of = [] if actor.sees_all else [Interaction.agent == actor.name]
            activity_rows = (
                await session.execute(
                    select(Interaction.agent, Interaction.kind, func.count(Interaction.id))
                    .where(
                        Interaction.started_at >= t0,
                        Interaction.started_at < t1,
                        Interaction.agent != "",
                        *agent_of,
                    )
                    .group_by(Interaction.agent, Interaction.kind)
                )
            ).all()
            new_leads = (
                (
                    await session.execute(
                        select(Lead.created_at).where(
                            Lead.created_at >= t0, Lead.created_at < t1, *mine
                        )
                    )
                )
                .scalars()
                .all()
            )
            won_rows = (
                await session.execute(
                    select(Lead.closed_at, Lead.value).where(
                        and_(Lead.status == "won", Lead.closed_at >= t0, Lead.closed_at < t1),
                        *mine,
                    )
                )
            ).all()
            call_times = (
                (
                    await session.execute(
                        select(Interaction.started_at).where(
                            Interaction.kind == "call",
                            Interaction.started_at >= t0,
                            Interaction.started_at < t1,
                            *agent_of,
                        )
                    )
                )
                .scalars()
                .all()
            )
        by_stage = {status: (int(n), float(v)) for status, n, v in pipeline_rows}
        activities: dict[str, dict[str, Any]] = {}
        for agent, kind, n in activity_rows:
            row = activities.setdefault(agent, {"agent": agent, "calls": 0, "notes": 0})
            row["calls" if kind == "call" else "notes"] += int(n)
        days = [(start + timedelta(days=i)) for i in range((end - start).days)]
        trend: dict[str, dict[str, Any]] = {
            d.isoformat(): {"day": d.isoformat(), "new_leads": 0, "won_value": 0.0, "calls": 0}
            for d in days
        }
        for at in new_leads:
            trend[at.date().isoformat()]["new_leads"] += 1
        for at, value in won_rows:
            trend[at.date().isoformat()]["won_value"] += float(value or 0)
        for at in call_times:
            trend[at.date().isoformat()]["calls"] += 1
        months = max(1, math.ceil((end - start).days / 30.4375))
        return {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "pipeline": [
                {
                    "stage": s,
                    "count": by_stage.get(s, (0, 0.0))[0],
                    "value": by_stage.get(s, (0, 0.0))[1],
                }
                for s in STAGES
            ],
            "won": {"count": int(won[0]), "value": float(won[1])},
            "target": self.config.sales_target_monthly * months,
            "activities": sorted(activities.values(), key=lambda r: str(r["agent"])),
            "trend": list(trend.values()),
        }


async def reminders(
    pool: Pool, actor: Actor, today: date, dormant_days: int, limit: int = 50
) -> list[dict[str, Any]]:
    """What an agent should do today, for its worklist: open opportunities whose follow-up
    date has come (``follow_up``), birthdays of its customers' contacts (``birthday``,
    29 February on 28 February in common years) and its customers nobody contacted for
    ``dormant_days`` (``dormant``). A supervisor gets everyone's."""
    out: list[dict[str, Any]] = []
    async with pool.store.db.session() as session:
        stmt = (
            select(Lead, Customer.name)
            .join(Customer, Customer.id == Lead.customer_id)
            .where(Lead.follow_up_on <= today, Lead.status.in_(OPEN))
            .order_by(Lead.follow_up_on, Lead.id)
            .limit(limit)
        )
        if not actor.sees_all:
            stmt = stmt.where(Lead.owner == actor.name)
        for lead, name in (await session.execute(stmt)).all():
            out.append(
                {
                    "kind": "follow_up",
                    "customer_id": lead.customer_id,
                    "customer_name": name,
                    "lead_id": lead.id,
                    "title": lead.title,
                    "owner": lead.owner,
                    "due": iso_day(lead.follow_up_on),
                }
            )
    for b in await pool.birthdays(today, actor):
        c = b["customer"]
        if actor.sees_all or c["owner"] == actor.name:
            out.append(
                {
                    "kind": "birthday",
                    "customer_id": c["id"],
                    "customer_name": c["name"],
                    "contact_id": b["contact_id"],
                    "title": b["contact_name"],
                    "owner": c["owner"],
                    "due": today.isoformat(),
                }
            )
    now = datetime(today.year, today.month, today.day, tzinfo=UTC)
    for c in await pool.dormant(dormant_days, actor, now=now, limit=limit):
        if c["owner"] and (actor.sees_all or c["owner"] == actor.name):
            out.append(
                {
                    "kind": "dormant",
                    "customer_id": c["id"],
                    "customer_name": c["name"],
                    "title": c["last_contact_at"] or c["created_at"],
                    "owner": c["owner"],
                    "due": today.isoformat(),
                }
            )
    return out


class StoreReminders:
    """The worklist's reminders as :class:`cti.services.ReminderSource` (the daily digest
    reads them): :func:`reminders` for the agent, nothing else."""

    def __init__(self, pool: Pool, dormant_days: int) -> None:
        self.pool = pool
        self.dormant_days = dormant_days

    async def reminders_for(self, owner: str, day: date) -> list[Reminder]:
        found = await reminders(self.pool, Actor(owner, "agent"), day, self.dormant_days)
        return [
            Reminder(
                kind=str(r["kind"]),
                customer_id=int(r["customer_id"]),
                customer_name=str(r["customer_name"] or ""),
                title=str(r["title"] or ""),
                owner=str(r["owner"] or ""),
                due=date.fromisoformat(r["due"]) if r["due"] else None,
            )
            for r in found
        ]


def iso_day(d: date | None) -> str | None:
    return d.isoformat() if d is not None else None
