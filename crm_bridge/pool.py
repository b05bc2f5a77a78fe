"""The public pool, care lists and leads.

Pool rule: an owned customer whose owner has not contacted it for ``pool_after_days``
(counted from the later of the last contact and the day it was taken) returns to the
pool (``owner`` NULL). The move is one UPDATE per customer guarded by the values read, so
a claim racing the job wins or loses cleanly; each move is audited (actor "system") and
logged. Claiming is ``UPDATE ... WHERE owner IS NULL``: of two agents claiming the same
customer exactly one succeeds, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.access import SYSTEM, Actor, customer_for, visible
from crm_bridge.audit import audit
from crm_bridge.errors import Conflict, Forbidden, NotFound
from crm_bridge.models import AuditEntry, Contact, Customer, Lead, LeadAssignment
from crm_bridge.records import customer_dict, iso
from crm_bridge.schemas import LeadIn, LeadPatch
from crm_bridge.store import CrmStore
from cti.store.models import utcnow

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], object]


def _since(c: Customer) -> datetime | None:
    times = [t for t in (c.last_contact_at, c.owned_since) if t is not None]
    return max(times) if times else None


class Pool:
    def __init__(
        self, store: CrmStore, *, notify: Notify | None = None, claims_per_day: int = 20
    ) -> None:
        self.store = store
        self.notify: Notify = notify or (lambda _e, _d: None)
        self.claims_per_day = claims_per_day
        # who owns a lead created without an owner (crm_bridge.opportunities sets it)
        self.assign_rule: Callable[[AsyncSession, Lead], Awaitable[str | None]] | None = None

    async def claims_today(self, session: AsyncSession, agent: str, now: datetime) -> int:
        """Claims ``agent`` made in the 24 hours before ``now`` (from the audit trail)."""
        count = await session.scalar(
            select(func.count(AuditEntry.id)).where(
                AuditEntry.actor == agent,
                AuditEntry.action == "claim",
                AuditEntry.at > now - timedelta(days=1),
            )
        )
        return int(count or 0)

    async def return_dormant(self, days: int, now: datetime | None = None) -> list[int]:
        """Move every customer not contacted by its owner for ``days`` back to the pool.
        Returns the ids moved."""
        now = now or utcnow()
        cutoff = now - timedelta(days=days)
        moved: list[int] = []
        async with self.store.db.session() as session, session.begin():
            rows = (
                await session.scalars(
                    select(Customer).where(
                        Customer.owner.is_not(None),
                        or_(Customer.last_contact_at.is_(None), Customer.last_contact_at < cutoff),
                        or_(Customer.owned_since.is_(None), Customer.owned_since < cutoff),
                    )
                )
            ).all()
            for c in rows:
                result = await session.execute(
                    update(Customer)
                    .where(Customer.id == c.id, Customer.owner == c.owner)
                    .values(owner=None, owned_since=None, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    moved.append(c.id)
                    since = _since(c)
                    audit(
                        session,
                        SYSTEM,
                        "pool_return",
                        "customer",
                        c.id,
                        c.id,
                        {"owner": [c.owner, None], "idle_since": since, "days": days},
                    )
                    log.info(
                        "customer %d returned to the pool (owner %s, idle since %s)",
                        c.id,
                        c.owner,
                        since,
                    )
        return moved

    async def claim(self, customer_id: int, actor: Actor) -> dict[str, Any]:
        """Take a pool customer; an agent at most :attr:`claims_per_day` in 24 hours
        (supervisors are not limited)."""
        now = utcnow()
        async with self.store.db.session() as session, session.begin():
            if not actor.sees_all:
                done = await self.claims_today(session, actor.name, now)
                if done >= self.claims_per_day:
                    raise Forbidden(
                        f"claim limit reached: {done} customers claimed in the last 24 hours"
                        f" (limit {self.claims_per_day})",
                        limit=self.claims_per_day,
                    )
            result = await session.execute(
                update(Customer)
                .where(Customer.id == customer_id, Customer.owner.is_(None))
                .values(owner=actor.name, owned_since=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                c = await session.get(Customer, customer_id)
                if c is None or not (actor.sees_all or c.owner == actor.name):
                    raise NotFound(f"customer {customer_id} not found")
                raise Conflict(f"customer {customer_id} is not in the pool (owner {c.owner})")
            audit(
                session,
                actor,
                "claim",
                "customer",
                customer_id,
                customer_id,
                {"owner": [None, actor.name]},
            )
            c = await session.get(Customer, customer_id, populate_existing=True)
            assert c is not None
            return customer_dict(c)

    async def reassign(self, customer_id: int, owner: str | None, actor: Actor) -> dict[str, Any]:
        if not actor.sees_all:
            raise Forbidden("needs role supervisor")
        now = utcnow()
        async with self.store.db.session() as session, session.begin():
            c = await session.get(Customer, customer_id)
            if c is None:
                raise NotFound(f"customer {customer_id} not found")
            old = c.owner
            c.owner = owner
            c.owned_since = now if owner else None
            audit(session, actor, "reassign", "customer", c.id, c.id, {"owner": [old, owner]})
            await session.flush()
            return customer_dict(c)

    # --- care lists ------------------------------------------------------------------

    async def birthdays(self, today: date, actor: Actor) -> list[dict[str, Any]]:
        md = today.strftime("%m-%d")
        mds = [md]
        if md == "02-28" and not _leap(today.year):
            mds.append("02-29")  # celebrate 29 Feb birthdays on 28 Feb in common years
        stmt = (
            select(Contact, Customer)
            .join(Customer, Customer.id == Contact.customer_id)
            .where(Contact.birthday_md.in_(mds))
            .order_by(Contact.id)
        )
        async with self.store.db.session() as session:
            rows = (await session.execute(visible(stmt, actor))).all()
        return [
            {
                "contact_id": ct.id,
                "contact_name": ct.name,
                "birthday": ct.birthday.isoformat() if ct.birthday else None,
                "customer": customer_dict(cu),
            }
            for ct, cu in rows
        ]

    async def dormant(
        self, days: int, actor: Actor, now: datetime | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        cutoff = (now or utcnow()) - timedelta(days=days)
        stmt = (
            select(Customer)
            .where(
                or_(
                    Customer.last_contact_at < cutoff,
                    and_(Customer.last_contact_at.is_(None), Customer.created_at < cutoff),
                )
            )
            .order_by(func.coalesce(Customer.last_contact_at, Customer.created_at), Customer.id)
            .limit(limit)
        )
        async with self.store.db.session() as session:
            rows = (await session.scalars(visible(stmt, actor))).all()
        return [customer_dict(c) for c in rows]

    # --- leads -----------------------------------------------------------------------

    async def create_lead(self, data: LeadIn, actor: Actor, *, source: str = "") -> dict[str, Any]:
        async with self.store.db.session() as session, session.begin():
            c = await customer_for(session, data.customer_id, actor, write=True)
            owner = data.owner if actor.sees_all else actor.name
            if not actor.sees_all and data.owner not in (None, actor.name):
                raise Forbidden("an agent creates leads for itself only")
            lead = Lead(
                customer_id=c.id,
                title=data.title,
                value=data.value,
                notes=data.notes,
                owner=owner,
                expected_close=data.expected_close,
                follow_up_on=data.follow_up_on,
                region=data.region or c.region,
                industry=data.industry,
                source=source,
            )
            session.add(lead)
            await session.flush()
            by = actor.name
            if lead.owner is None and self.assign_rule is not None:
                lead.owner = await self.assign_rule(session, lead)
                by = "rule"
            session.add(
                LeadAssignment(lead_id=lead.id, from_owner=None, to_owner=lead.owner, by=by)
            )
            audit(session, actor, "create", "lead", lead.id, c.id, data.model_dump(mode="json"))
            await session.flush()
            out = lead_dict(lead)
        if out["owner"] is not None and by == "rule":
            self.notify("lead.assigned", {**out, "previous_owner": None})
        return out

    async def _lead(self, session: Any, lead_id: int, actor: Actor) -> Lead:
        lead = await session.get(Lead, lead_id)
        if lead is None or not (actor.sees_all or lead.owner == actor.name):
            raise NotFound(f"lead {lead_id} not found")
        return lead  # type: ignore[no-any-return]

    async def list_leads(
        self, actor: Actor, status: str | None = None, customer_id: int | None = None
    ) -> list[dict[str, Any]]:
        stmt = (
            select(Lead, Customer.name)
            .join(Customer, Customer.id == Lead.customer_id)
            .order_by(Lead.id.desc())
            .limit(1000)
        )
        if not actor.sees_all:
            stmt = stmt.where(Lead.owner == actor.name)
        if status:
            stmt = stmt.where(Lead.status == status)
        if customer_id is not None:
            stmt = stmt.where(Lead.customer_id == customer_id)
        async with self.store.db.session() as session:
            return [
                {**lead_dict(x), "customer_name": name}
                for x, name in (await session.execute(stmt)).all()
            ]

    async def get_lead(self, lead_id: int, actor: Actor) -> dict[str, Any]:
        async with self.store.db.session() as session:
            lead = await self._lead(session, lead_id, actor)
            out = lead_dict(lead)
            rows = await session.scalars(
                select(LeadAssignment)
                .where(LeadAssignment.lead_id == lead_id)
                .order_by(LeadAssignment.id)
            )
            out["assignments"] = [
                {"from": a.from_owner, "to": a.to_owner, "by": a.by, "at": a.at.isoformat()}
                for a in rows
            ]
            return out

    async def update_lead(self, lead_id: int, patch: LeadPatch, actor: Actor) -> dict[str, Any]:
        async with self.store.db.session() as session, session.begin():
            lead = await self._lead(session, lead_id, actor)
            changes = {}
            for field, new in patch.model_dump(exclude_unset=True).items():
                if new is None and field not in ("expected_close", "follow_up_on"):
                    continue
                if getattr(lead, field) != new:
                    changes[field] = [getattr(lead, field), new]
                    setattr(lead, field, new)
            if "status" in changes:
                closed = lead.status in ("won", "lost")
                lead.closed_at = utcnow() if closed else None
            if changes:
                audit(session, actor, "update", "lead", lead.id, lead.customer_id, changes)
            await session.flush()
            return lead_dict(lead)

    async def assign_lead(self, lead_id: int, owner: str, actor: Actor) -> dict[str, Any]:
        if not actor.sees_all:
            raise Forbidden("needs role supervisor")
        async with self.store.db.session() as session, session.begin():
            lead = await self._lead(session, lead_id, actor)
            old = lead.owner
            lead.owner = owner
            session.add(
                LeadAssignment(lead_id=lead.id, from_owner=old, to_owner=owner, by=actor.name)
            )
            audit(
                session, actor, "assign", "lead", lead.id, lead.customer_id, {"owner": [old, owner]}
            )
            await session.flush()
            out = lead_dict(lead)
        self.notify("lead.assigned", {**out, "previous_owner": old})
        return out


def lead_dict(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "customer_id": lead.customer_id,
        "title": lead.title,
        "status": lead.status,
        "owner": lead.owner,
        "value": lead.value,
        "notes": lead.notes,
        "expected_close": iso(lead.expected_close),
        "source": lead.source,
        "region": lead.region,
        "industry": lead.industry,
        "closed_at": iso(lead.closed_at),
        "follow_up_on": iso(lead.follow_up_on),
        "created_at": lead.created_at.isoformat() if lead.created_at else None,
        "updated_at": lead.updated_at.isoformat() if lead.updated_at else None,
    }


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
