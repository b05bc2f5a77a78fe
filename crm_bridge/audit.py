"""The audit trail: every change to a customer, its contacts, interactions, leads and
pool moves, written in the transaction that made it (``crm_audit``)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.access import Actor
from crm_bridge.models import AuditEntry
from crm_bridge.records import iso

__all__ = ["audit", "audit_entries"]


def audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: int,
    customer_id: int | None,
    changes: dict[str, Any],
) -> None:
    session.add(
        AuditEntry(
            actor=actor.name[:128],
            action=action,
            entity=entity,
            entity_id=entity_id,
            customer_id=customer_id,
            changes=json.dumps(changes, ensure_ascii=False, default=str),
        )
    )


async def audit_entries(session: AsyncSession, customer_id: int) -> list[dict[str, Any]]:
    """The customer's trail, oldest first (the caller checked visibility)."""
    rows = await session.scalars(
        select(AuditEntry).where(AuditEntry.customer_id == customer_id).order_by(AuditEntry.id)
    )
    return [
        {
            "id": a.id,
            "at": iso(a.at),
            "actor": a.actor,
            "action": a.action,
            "entity": a.entity,
            "entity_id": a.entity_id,
            "changes": json.loads(a.changes),
        }
        for a in rows
    ]
