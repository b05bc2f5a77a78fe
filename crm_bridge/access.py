"""Who acts, and which customers it may see and change.

Every CRM operation takes the acting :class:`Actor` (name + role). An agent sees the
customers it owns and the public pool (``owner IS NULL``) and may change only its own;
supervisors and admins see and change everything. A customer the actor may not see is
reported as not found (its existence is not leaked); writing to a pool customer is
refused with "claim it first".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, or_
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.errors import Forbidden, NotFound
from crm_bridge.models import Customer

__all__ = ["SYSTEM", "Actor", "customer_for", "may_see", "visible"]

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: str  # agent | supervisor | admin

    @property
    def sees_all(self) -> bool:
        return self.role in ("supervisor", "admin")


SYSTEM = Actor("system", "admin")


def may_see(actor: Actor, owner: str | None) -> bool:
    """The one visibility rule, for a customer owned by ``owner`` (None or "": the pool)."""
    return actor.sees_all or not owner or owner == actor.name


def visible(stmt: S, actor: Actor, *, name: Any = None) -> S:
    """``stmt`` (selecting from :class:`Customer`) limited to what ``actor`` may see.
    ``name``: compared with the owner instead of ``actor.name`` (a bind parameter, for a
    statement built once for every agent: crm_bridge.search.restriction)."""
    if actor.sees_all:
        return stmt
    who = actor.name if name is None else name
    return stmt.where(or_(Customer.owner == who, Customer.owner.is_(None)))


async def customer_for(
    session: AsyncSession, customer_id: int, actor: Actor, *, write: bool
) -> Customer:
    """The customer row, if ``actor`` may see it (and change it, with ``write``)."""
    row = await session.get(Customer, customer_id)
    if row is None or not may_see(actor, row.owner):
        raise NotFound(f"customer {customer_id} not found")
    if write and not actor.sees_all and row.owner != actor.name:
        raise Forbidden(f"customer {customer_id} is in the public pool: claim it first")
    return row
