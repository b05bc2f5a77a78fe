"""The CRM as :class:`cti.services.CustomerRecipients`: customers as messages go to them
(used by the messaging feature, which may not import the CRM)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from sqlalchemy import select

from crm_bridge.access import Actor, may_see
from crm_bridge.errors import CrmError
from crm_bridge.models import Customer, Email, Phone
from crm_bridge.search import Filters, filtered, needles
from crm_bridge.store import CrmStore
from cti.principal import Principal
from cti.services import Recipient

__all__ = ["StoreRecipients"]


def _day(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise CrmError("a date YYYY-MM-DD") from None
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


class StoreRecipients:
    def __init__(self, store: CrmStore) -> None:
        self.store = store

    async def _build(self, customers: Sequence[Customer]) -> list[Recipient]:
        ids = [c.id for c in customers]
        if not ids:
            return []
        phones: dict[int, list[str]] = {}
        emails: dict[int, list[str]] = {}
        async with self.store.db.session() as session:
            for cid, e164 in await session.execute(
                select(Phone.customer_id, Phone.e164)
                .where(Phone.customer_id.in_(ids))
                .order_by(Phone.id)
            ):
                phones.setdefault(cid, []).append(e164)
            for cid, address in await session.execute(
                select(Email.customer_id, Email.address)
                .where(Email.customer_id.in_(ids))
                .order_by(Email.id)
            ):
                emails.setdefault(cid, []).append(address)
        out = []
        for c in customers:
            custom = {k: str(v) for k, v in json.loads(c.custom or "{}").items()}
            fields = {
                "name": c.name,
                "company": c.company,
                "owner": c.owner or "",
                "tier": c.tier,
                "region": c.region,
                **custom,
            }
            out.append(
                Recipient(
                    customer_id=c.id,
                    name=c.name,
                    owner=c.owner or "",
                    phones=tuple(dict.fromkeys(phones.get(c.id, []))),
                    emails=tuple(dict.fromkeys(emails.get(c.id, []))),
                    fields=tuple(fields.items()),
                )
            )
        return out

    async def recipient(self, customer_id: int, actor: Principal) -> Recipient | None:
        async with self.store.db.session() as session:
            c = await session.get(Customer, customer_id)
        if c is None or not may_see(Actor(actor.name, actor.role), c.owner):
            return None
        return (await self._build([c]))[0]

    async def recipients(
        self, query: Mapping[str, str], actor: Principal, limit: int
    ) -> list[Recipient]:
        q = str(query.get("q", ""))[:256]
        wanted = needles(q, self.store.e164)
        if wanted == ("", (), ""):
            return []
        owner = query.get("owner")
        filters = Filters(
            tier=query.get("tier") or None,
            region=query.get("region") or None,
            tag=query.get("tag") or None,
            contacted_after=_day(query.get("contacted_after")),
            contacted_before=_day(query.get("contacted_before")),
        )
        stmt = (
            filtered(
                select(Customer),
                wanted,
                Actor(actor.name, actor.role),
                owner,
                filters,
                dialect=self.store.db.engine.dialect.name,
            )
            .order_by(Customer.id.desc())
            .limit(limit)
        )
        async with self.store.db.session() as session:
            rows = (await session.scalars(stmt)).all()
        return await self._build(rows)

    async def by_number(self, e164: str) -> Recipient | None:
        async with self.store.db.session() as session:
            cid = await session.scalar(
                select(Phone.customer_id).where(Phone.e164 == e164).order_by(Phone.id).limit(1)
            )
            c = await session.get(Customer, cid) if cid is not None else None
        if c is None:
            return None
        return (await self._build([c]))[0]

    async def by_email(self, address: str) -> Recipient | None:
        key = address.strip().lower()
        if not key:
            return None
        async with self.store.db.session() as session:
            cid = await session.scalar(
                select(Email.customer_id)
                .where(Email.address_key == key)
                .order_by(Email.id)
                .limit(1)
            )
            c = await session.get(Customer, cid) if cid is not None else None
        if c is None:
            return None
        return (await self._build([c]))[0]
