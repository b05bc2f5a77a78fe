"""The CRM store: customers and their contacts (create, read, change, delete).

Every method takes the acting :class:`~crm_bridge.access.Actor` and applies its
visibility (:mod:`crm_bridge.access`). Each change checks duplicates
(:mod:`crm_bridge.duplicates`), rewrites the customer's search row
(:mod:`crm_bridge.search`) and is audited (:mod:`crm_bridge.audit`) in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge import search as customer_search
from crm_bridge.access import Actor, customer_for
from crm_bridge.audit import audit, audit_entries
from crm_bridge.custom import check_values, load_fields
from crm_bridge.duplicates import find_duplicates
from crm_bridge.errors import CrmError, DuplicateError, Forbidden, NotFound
from crm_bridge.keys import name_key, tags_list, tags_text
from crm_bridge.models import Contact, Customer, CustomerSearch, Email, Phone
from crm_bridge.records import contact_dict, customer_dict
from crm_bridge.schemas import ContactIn, ContactPatch, CustomerIn, CustomerPatch, PhoneIn
from cti.phone import normalize
from cti.store.db import Database
from cti.store.models import utcnow

__all__ = ["CrmStore"]


class CrmStore:
    def __init__(self, db: Database, region: str) -> None:
        self.db = db
        self.region = region

    # --- helpers ---------------------------------------------------------------------

    def e164(self, number: str) -> str:
        return normalize(number, self.region)

    def _phone_rows(self, phones: Sequence[PhoneIn], field: str) -> list[tuple[str, str, str]]:
        rows = []
        for i, p in enumerate(phones):
            e = self.e164(p.number)
            if not e:
                raise CrmError(f"{field}[{i}]: {p.number[:48]!r} is not a phone number")
            rows.append((p.number, e, p.label))
        return rows

    # --- customers -------------------------------------------------------------------

    def _owner_for_new(self, data: CustomerIn, actor: Actor) -> str | None:
        if actor.sees_all:
            return data.owner
        if data.owner not in (None, actor.name):
            raise Forbidden("an agent creates customers for itself only")
        return actor.name

    async def create_customer(
        self, data: CustomerIn, actor: Actor, session: AsyncSession | None = None
    ) -> dict[str, Any]:
        """Create with contacts; raises :class:`DuplicateError` (unless ``force`` by a
        supervisor) and :class:`CrmError` for an invalid number. ``session``: join the
        caller's transaction (import)."""
        if session is None:
            async with self.db.session() as s, s.begin():
                return await self.create_customer(data, actor, s)
        owner = self._owner_for_new(data, actor)
        if data.force and not actor.sees_all:
            raise Forbidden("only a supervisor may force a duplicate")
        contacts = data.all_contacts()
        phone_rows = [
            self._phone_rows(c.phones, f"contacts[{i}].phones") for i, c in enumerate(contacts)
        ]
        if not data.force:
            dups = await find_duplicates(
                session,
                actor=actor,
                names=[data.name, *(c.name for c in contacts)],
                company=data.company,
                e164s=[e for rows in phone_rows for _, e, _ in rows],
                emails=[e for c in contacts for e in c.emails],
            )
            if dups:
                raise DuplicateError(dups)
        fields = await load_fields(session)
        custom = check_values(fields, {}, data.custom)
        now = utcnow()
        customer = Customer(
            kind=data.kind,
            name=data.name,
            name_key=name_key(data.name)[:256],
            company=data.company,
            company_key=name_key(data.company)[:256],
            tier=data.tier,
            tags=tags_text(data.tags),
            notes=data.notes,
            owner=owner,
            owned_since=now if owner else None,
            last_contact_at=None,
            custom=json.dumps(custom, ensure_ascii=False),
        )
        session.add(customer)
        await session.flush()
        for contact, rows in zip(contacts, phone_rows, strict=True):
            await self._add_contact(session, customer.id, contact, rows)
        await customer_search.reindex(session, customer.id)
        audit(
            session,
            actor,
            "create",
            "customer",
            customer.id,
            customer.id,
            data.model_dump(mode="json", exclude={"force"}),
        )
        return await self._full(session, customer)

    async def _add_contact(
        self,
        session: AsyncSession,
        customer_id: int,
        data: ContactIn,
        phone_rows: list[tuple[str, str, str]],
    ) -> Contact:
        contact = Contact(
            customer_id=customer_id,
            name=data.name,
            name_key=name_key(data.name)[:256],
            title=data.title,
            birthday=data.birthday,
            birthday_md=data.birthday.strftime("%m-%d") if data.birthday else None,
            tags=tags_text(data.tags),
            notes=data.notes,
        )
        session.add(contact)
        await session.flush()
        await self._set_numbers(session, contact, phone_rows, data.emails)
        return contact

    async def _set_numbers(
        self,
        session: AsyncSession,
        contact: Contact,
        phone_rows: list[tuple[str, str, str]] | None,
        emails: Sequence[str] | None,
    ) -> None:
        if phone_rows is not None:
            await session.execute(delete(Phone).where(Phone.contact_id == contact.id))
            for raw, e, label in phone_rows:
                session.add(
                    Phone(
                        contact_id=contact.id,
                        customer_id=contact.customer_id,
                        raw=raw,
                        e164=e,
                        label=label,
                    )
                )
        if emails is not None:
            await session.execute(delete(Email).where(Email.contact_id == contact.id))
            for a in dict.fromkeys(emails):
                session.add(
                    Email(
                        contact_id=contact.id,
                        customer_id=contact.customer_id,
                        address=a,
                        address_key=a.strip().lower(),
                    )
                )
        await session.flush()

    async def _full(self, session: AsyncSession, customer: Customer) -> dict[str, Any]:
        out = customer_dict(customer)
        contacts = (
            await session.scalars(
                select(Contact).where(Contact.customer_id == customer.id).order_by(Contact.id)
            )
        ).all()
        phones = (
            await session.scalars(
                select(Phone).where(Phone.customer_id == customer.id).order_by(Phone.id)
            )
        ).all()
        emails = (
            await session.scalars(
                select(Email).where(Email.customer_id == customer.id).order_by(Email.id)
            )
        ).all()
        out["contacts"] = [
            contact_dict(
                c,
                [p for p in phones if p.contact_id == c.id],
                [e for e in emails if e.contact_id == c.id],
            )
            for c in contacts
        ]
        return out

    async def get_customer(self, customer_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as session:
            return await self._full(
                session, await customer_for(session, customer_id, actor, write=False)
            )

    async def update_customer(
        self, customer_id: int, patch: CustomerPatch, actor: Actor
    ) -> dict[str, Any]:
        async with self.db.session() as session, session.begin():
            c = await customer_for(session, customer_id, actor, write=True)
            values = patch.model_dump(exclude_unset=True)
            changes: dict[str, Any] = {}
            if "custom" in values:
                new_custom = values.pop("custom")
                old_custom = json.loads(c.custom or "{}")
                if new_custom is not None:
                    merged = check_values(await load_fields(session), old_custom, new_custom)
                    if merged != old_custom:
                        changes["custom"] = [old_custom, merged]
                        c.custom = json.dumps(merged, ensure_ascii=False)
            for field, new in values.items():
                if new is None and field in ("kind", "name", "company", "tier", "tags", "notes"):
                    continue
                stored = tags_text(new) if field == "tags" else new
                old = getattr(c, field)
                if old != stored:
                    changes[field] = [
                        tags_list(old) if field == "tags" else old,
                        new,
                    ]
                    setattr(c, field, stored)
            if "name" in changes or "company" in changes:
                c.name_key = name_key(c.name)[:256]
                c.company_key = name_key(c.company)[:256]
                dups = await find_duplicates(
                    session,
                    actor=actor,
                    names=[c.name],
                    company=c.company,
                    e164s=[],
                    emails=[],
                    exclude_customer=c.id,
                )
                if dups:
                    raise DuplicateError(dups)
            if {"name", "company", "tags"} & changes.keys():
                await customer_search.reindex(session, c.id)
            if changes:
                audit(session, actor, "update", "customer", c.id, c.id, changes)
                if c.owner == actor.name:
                    c.last_contact_at = utcnow()
            await session.flush()
            return await self._full(session, c)

    async def delete_customer(self, customer_id: int, actor: Actor) -> None:
        if not actor.sees_all:
            raise Forbidden("needs role supervisor")
        async with self.db.session() as session, session.begin():
            c = await customer_for(session, customer_id, actor, write=True)
            audit(session, actor, "delete", "customer", c.id, c.id, customer_dict(c))
            await session.execute(delete(Phone).where(Phone.customer_id == c.id))
            await session.execute(delete(Email).where(Email.customer_id == c.id))
            await session.execute(delete(Contact).where(Contact.customer_id == c.id))
            await session.execute(delete(CustomerSearch).where(CustomerSearch.customer_id == c.id))
            await session.delete(c)

    # --- contacts --------------------------------------------------------------------

    async def add_contact(
        self, customer_id: int, data: ContactIn, actor: Actor, *, force: bool = False
    ) -> dict[str, Any]:
        if force and not actor.sees_all:
            raise Forbidden("only a supervisor may force a duplicate")
        async with self.db.session() as session, session.begin():
            c = await customer_for(session, customer_id, actor, write=True)
            rows = self._phone_rows(data.phones, "phones")
            if not force:
                dups = await find_duplicates(
                    session,
                    actor=actor,
                    names=[],
                    company="",
                    e164s=[e for _, e, _ in rows],
                    emails=data.emails,
                )
                if dups:
                    raise DuplicateError(dups)
            contact = await self._add_contact(session, c.id, data, rows)
            await customer_search.reindex(session, c.id)
            audit(
                session, actor, "create", "contact", contact.id, c.id, data.model_dump(mode="json")
            )
            return await self._contact_out(session, contact)

    async def _contact_out(self, session: AsyncSession, contact: Contact) -> dict[str, Any]:
        phones = (
            await session.scalars(
                select(Phone).where(Phone.contact_id == contact.id).order_by(Phone.id)
            )
        ).all()
        emails = (
            await session.scalars(
                select(Email).where(Email.contact_id == contact.id).order_by(Email.id)
            )
        ).all()
        return contact_dict(contact, phones, emails)

    async def _contact(
        self, session: AsyncSession, contact_id: int, actor: Actor, *, write: bool
    ) -> Contact:
        contact = await session.get(Contact, contact_id)
        if contact is None:
            raise NotFound(f"contact {contact_id} not found")
        try:
            await customer_for(session, contact.customer_id, actor, write=write)
        except NotFound:
            raise NotFound(f"contact {contact_id} not found") from None
        return contact

    async def get_contact(self, contact_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as session:
            contact = await self._contact(session, contact_id, actor, write=False)
            return await self._contact_out(session, contact)

    async def update_contact(
        self, contact_id: int, patch: ContactPatch, actor: Actor
    ) -> dict[str, Any]:
        async with self.db.session() as session, session.begin():
            contact = await self._contact(session, contact_id, actor, write=True)
            values = patch.model_dump(exclude_unset=True, mode="json")
            rows = self._phone_rows(patch.phones, "phones") if patch.phones is not None else None
            if rows or patch.emails:
                dups = await find_duplicates(
                    session,
                    actor=actor,
                    names=[],
                    company="",
                    e164s=[e for _, e, _ in rows or []],
                    emails=patch.emails or [],
                    exclude_customer=contact.customer_id,
                )
                if dups:
                    raise DuplicateError(dups)
            for field in ("name", "title", "notes"):
                if getattr(patch, field) is not None:
                    setattr(contact, field, getattr(patch, field))
            if patch.name is not None:
                contact.name_key = name_key(patch.name)[:256]
            if "birthday" in values:
                contact.birthday = patch.birthday
                contact.birthday_md = patch.birthday.strftime("%m-%d") if patch.birthday else None
            if patch.tags is not None:
                contact.tags = tags_text(patch.tags)
            await self._set_numbers(session, contact, rows, patch.emails)
            await customer_search.reindex(session, contact.customer_id)
            audit(session, actor, "update", "contact", contact.id, contact.customer_id, values)
            return await self._contact_out(session, contact)

    # --- search and history ------------------------------------------------------------

    async def search(
        self,
        q: str,
        actor: Actor,
        *,
        limit: int = 50,
        offset: int = 0,
        owner: str | None = None,
        method: Literal["index", "scan"] = "index",
        filters: customer_search.Filters | None = None,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """:func:`crm_bridge.search.search` with this site's number normaliser."""
        return await customer_search.search(
            self.db,
            q,
            actor,
            e164=self.e164,
            limit=limit,
            offset=offset,
            owner=owner,
            method=method,
            filters=filters,
            before=before,
        )

    async def count(self) -> int:
        async with self.db.session() as session:
            return int(await session.scalar(select(func.count(Customer.id))) or 0)

    async def audit_log(self, customer_id: int, actor: Actor) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            await customer_for(session, customer_id, actor, write=False)
            return await audit_entries(session, customer_id)
