"""Duplicate detection: which existing customers a new or changed record may repeat.

A candidate shares an E.164 number or an e-mail (case-insensitive) with the record, or
has a name (the customer's or a contact's) within the same company whose key is equal or
has a difflib ratio ≥ :data:`SIMILAR_NAME_RATIO` (docs/decisions/0003-crm.md).

A candidate the actor may not see (another agent's customer) is reported only as
``{"visible": false, "reasons": [...]}``: the agent learns why its record clashes, not
whose customer it clashes with (its name, company, owner).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.access import Actor, may_see
from crm_bridge.keys import name_key
from crm_bridge.models import Contact, Customer, Email, Phone

__all__ = ["SIMILAR_NAME_RATIO", "find_duplicates"]

SIMILAR_NAME_RATIO = 0.85


async def find_duplicates(
    session: AsyncSession,
    *,
    names: Sequence[str],
    company: str,
    e164s: Sequence[str],
    emails: Sequence[str],
    actor: Actor,
    exclude_customer: int | None = None,
) -> list[dict[str, Any]]:
    """Customers sharing a number or an email, or with a similar name in the same
    company. Each candidate: id, name, company, owner, reasons."""
    found: dict[int, set[str]] = {}
    if e164s:
        for cid, e in await session.execute(
            select(Phone.customer_id, Phone.e164).where(Phone.e164.in_(set(e164s)))
        ):
            found.setdefault(cid, set()).add(f"phone {e}")
    keys = {e.strip().lower() for e in emails}
    if keys:
        for cid, a in await session.execute(
            select(Email.customer_id, Email.address_key).where(Email.address_key.in_(keys))
        ):
            found.setdefault(cid, set()).add(f"email {a}")
    ckey = name_key(company)
    wanted = {name_key(n) for n in names if name_key(n)}
    if ckey and wanted:
        same_company = (
            await session.execute(
                select(Customer.id, Customer.name_key)
                .where(Customer.company_key == ckey)
                .limit(2000)
            )
        ).all()
        ids = [cid for cid, _ in same_company]
        candidates = list(same_company)
        if ids:
            candidates += (
                await session.execute(
                    select(Contact.customer_id, Contact.name_key).where(
                        Contact.customer_id.in_(ids)
                    )
                )
            ).all()
        for cid, key in candidates:
            for w in wanted:
                if key == w or difflib.SequenceMatcher(None, key, w).ratio() >= (
                    SIMILAR_NAME_RATIO
                ):
                    found.setdefault(cid, set()).add("similar name in the same company")
    found.pop(exclude_customer or -1, None)
    if not found:
        return []
    rows = await session.scalars(select(Customer).where(Customer.id.in_(found)))
    return [
        {
            "id": c.id,
            "name": c.name,
            "company": c.company,
            "owner": c.owner,
            "visible": True,
            "reasons": sorted(found[c.id]),
        }
        if may_see(actor, c.owner)
        else {"visible": False, "reasons": sorted(found[c.id])}
        for c in sorted(rows, key=lambda c: c.id)
    ]
