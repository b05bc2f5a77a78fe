"""What the customer pages do beside plain reads and edits: merge two records and move
many customers at once (assign to an agent, return to the public pool).

**Merge** keeps everything: the duplicate's contacts (with their numbers and e-mails),
calls and notes, opportunities and its audit trail move to the kept customer; tags are
joined, notes appended, custom values and tier kept where the kept customer has none;
the duplicate is then deleted and the merge audited on the kept customer (with the
duplicate's card as it was). A supervisor merges any two; an agent two of its own.

**Bulk moves** are one transaction: every customer is checked first (an agent may only
return its own customers to the pool; assigning is a supervisor's), then each move is
audited like a single reassignment.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, update

from crm_bridge import search as customer_search
from crm_bridge.access import Actor, customer_for
from crm_bridge.audit import audit
from crm_bridge.errors import CrmError, Forbidden, NotFound
from crm_bridge.keys import tags_list, tags_text
from crm_bridge.models import (
    NOTES_LEN,
    AuditEntry,
    Contact,
    CustomerSearch,
    Email,
    Interaction,
    Lead,
    Phone,
)
from crm_bridge.records import customer_dict
from crm_bridge.store import CrmStore
from cti.store.models import utcnow

__all__ = ["Workspace"]

MAX_BULK = 1000


class Workspace:
    def __init__(self, store: CrmStore) -> None:
        self.store = store

    async def merge(self, keep_id: int, duplicate_id: int, actor: Actor) -> dict[str, Any]:
        if keep_id == duplicate_id:
            raise CrmError("a customer cannot be merged into itself")
        async with self.store.db.session() as session, session.begin():
            keep = await customer_for(session, keep_id, actor, write=True)
            dup = await customer_for(session, duplicate_id, actor, write=True)
            before = customer_dict(dup)
            for model in (Contact, Phone, Email, Interaction, Lead, AuditEntry):
                column = model.customer_id
                await session.execute(
                    update(model)
                    .where(column == dup.id)
                    .values(customer_id=keep.id)
                    .execution_options(synchronize_session=False)
                )
            keep.tags = tags_text([*tags_list(keep.tags), *tags_list(dup.tags)])[:1024]
            if dup.notes and dup.notes not in keep.notes:
                keep.notes = (keep.notes + "\n\n" + dup.notes if keep.notes else dup.notes)[
                    :NOTES_LEN
                ]
            keep.tier = keep.tier or dup.tier
            keep.company = keep.company or dup.company
            keep.company_key = keep.company_key or dup.company_key
            keep.custom = json.dumps(
                {**json.loads(dup.custom or "{}"), **json.loads(keep.custom or "{}")},
                ensure_ascii=False,
            )
            times = [t for t in (keep.last_contact_at, dup.last_contact_at) if t is not None]
            keep.last_contact_at = max(times) if times else None
            keep.updated_at = utcnow()
            await session.execute(
                delete(CustomerSearch).where(CustomerSearch.customer_id == dup.id)
            )
            await session.delete(dup)
            await session.flush()
            await customer_search.reindex(session, keep.id)
            audit(session, actor, "merge", "customer", keep.id, keep.id, {"merged": before})
            await session.flush()
        return await self.store.get_customer(keep_id, actor)

    async def bulk_move(
        self, ids: list[int], owner: str | None, actor: Actor
    ) -> list[dict[str, Any]]:
        """Give ``ids`` to ``owner`` (None: the public pool), all or nothing."""
        if not ids or len(ids) > MAX_BULK:
            raise CrmError(f"ids: 1 to {MAX_BULK} customers")
        if owner is not None and not actor.sees_all:
            raise Forbidden("needs role supervisor")
        now = utcnow()
        out = []
        async with self.store.db.session() as session, session.begin():
            for cid in dict.fromkeys(ids):
                try:
                    c = await customer_for(session, cid, actor, write=True)
                except Forbidden:
                    raise NotFound(f"customer {cid} is not yours") from None
                old = c.owner
                if old == owner:
                    out.append(customer_dict(c))
                    continue
                c.owner = owner
                c.owned_since = now if owner else None
                action = "reassign" if owner else "pool_return"
                audit(session, actor, action, "customer", c.id, c.id, {"owner": [old, owner]})
                await session.flush()
                out.append(customer_dict(c))
        return out
