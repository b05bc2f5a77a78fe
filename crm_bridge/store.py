"""The CRM store: customers, contacts, duplicates, search, visibility, audit.

Every method takes the acting :class:`Actor` (name + role). Visibility: an agent sees
the customers it owns and the public pool (``owner IS NULL``); it may change only its
own; supervisors and admins see and change everything. A customer the actor may not see
is reported as not found (its existence is not leaked).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import Select, delete, func, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.models import (
    AuditEntry,
    Contact,
    Customer,
    CustomerSearch,
    Email,
    Interaction,
    Phone,
)
from crm_bridge.schemas import ContactIn, ContactPatch, CustomerIn, CustomerPatch, PhoneIn
from cti.phone import normalize
from cti.store.db import Database
from cti.store.models import utcnow

__all__ = [
    "Actor",
    "CrmError",
    "CrmStore",
    "DuplicateError",
    "Forbidden",
    "NotFound",
    "customer_dict",
    "name_key",
]

S = TypeVar("S", bound=Select[*tuple[Any, ...]])

SIMILAR_NAME_RATIO = 0.85
_SPACES = re.compile("[\\s\u3000\u00b7.,\uff0c\u3002\\-_]+")


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: str  # agent | supervisor | admin

    @property
    def sees_all(self) -> bool:
        return self.role in ("supervisor", "admin")


SYSTEM = Actor("system", "admin")


class CrmError(Exception):
    status = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class NotFound(CrmError):
    status = 404


class Forbidden(CrmError):
    status = 403


class Conflict(CrmError):
    status = 409


class DuplicateError(Conflict):
    def __init__(self, candidates: list[dict[str, Any]]) -> None:
        super().__init__("possible duplicate of existing customers", candidates=candidates)
        self.candidates = candidates


def name_key(name: str) -> str:
    """Casefolded, separators removed: "Zhang  San" == "zhangsan", "张 三" == "张三"."""
    return _SPACES.sub("", name.casefold())


def tags_text(tags: Iterable[str]) -> str:
    unique = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    return f",{','.join(unique)}," if unique else ""


def tags_list(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def customer_dict(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "company": c.company,
        "tier": c.tier,
        "tags": tags_list(c.tags),
        "notes": c.notes,
        "owner": c.owner,
        "owned_since": _iso(c.owned_since),
        "last_contact_at": _iso(c.last_contact_at),
        "created_at": _iso(c.created_at),
        "updated_at": _iso(c.updated_at),
    }


def contact_dict(c: Contact, phones: Sequence[Phone], emails: Sequence[Email]) -> dict[str, Any]:
    return {
        "id": c.id,
        "customer_id": c.customer_id,
        "name": c.name,
        "title": c.title,
        "birthday": _iso(c.birthday),
        "tags": tags_list(c.tags),
        "notes": c.notes,
        "phones": [{"id": p.id, "raw": p.raw, "e164": p.e164, "label": p.label} for p in phones],
        "emails": [e.address for e in emails],
    }


def interaction_dict(i: Interaction) -> dict[str, Any]:
    return {
        "id": i.id,
        "linkedid": i.linkedid,
        "customer_id": i.customer_id,
        "contact_id": i.contact_id,
        "kind": i.kind,
        "caller_num": i.caller_num,
        "agent": i.agent,
        "queue": i.queue,
        "started_at": _iso(i.started_at),
        "ended_at": _iso(i.ended_at),
        "wait_s": i.wait_s,
        "talk_s": i.talk_s,
        "outcome": i.outcome,
        "disposition": i.disposition,
        "notes": i.notes,
        "recording": i.recording,
        "ivr_path": i.ivr_path,
        "updated_at": _iso(i.updated_at),
    }


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

    def visible(self, stmt: S, actor: Actor) -> S:
        if actor.sees_all:
            return stmt
        return stmt.where(or_(Customer.owner == actor.name, Customer.owner.is_(None)))

    async def _customer(
        self, session: AsyncSession, customer_id: int, actor: Actor, *, write: bool
    ) -> Customer:
        row = await session.get(Customer, customer_id)
        if row is None or not (actor.sees_all or row.owner in (None, actor.name)):
            raise NotFound(f"customer {customer_id} not found")
        if write and not actor.sees_all and row.owner != actor.name:
            raise Forbidden(f"customer {customer_id} is in the public pool: claim it first")
        return row

    # --- duplicates ------------------------------------------------------------------

    async def find_duplicates(
        self,
        session: AsyncSession,
        *,
        names: Sequence[str],
        company: str,
        e164s: Sequence[str],
        emails: Sequence[str],
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
                "reasons": sorted(found[c.id]),
            }
            for c in sorted(rows, key=lambda c: c.id)
        ]

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
            dups = await self.find_duplicates(
                session,
                names=[data.name, *(c.name for c in contacts)],
                company=data.company,
                e164s=[e for rows in phone_rows for _, e, _ in rows],
                emails=[e for c in contacts for e in c.emails],
            )
            if dups:
                raise DuplicateError(dups)
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
        )
        session.add(customer)
        await session.flush()
        for contact, rows in zip(contacts, phone_rows, strict=True):
            await self._add_contact(session, customer.id, contact, rows)
        await self.reindex(session, customer.id)
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

    async def reindex(self, session: AsyncSession, customer_id: int) -> None:
        """Rewrite the customer's :class:`CustomerSearch` row from its current rows (call in
        the transaction that changed a name, company, contact, number or email)."""
        customer = await session.get(Customer, customer_id)
        if customer is None:
            return
        contact_keys = (
            await session.scalars(
                select(Contact.name_key).where(Contact.customer_id == customer_id)
            )
        ).all()
        numbers = (
            await session.scalars(select(Phone.e164).where(Phone.customer_id == customer_id))
        ).all()
        addresses = (
            await session.scalars(select(Email.address_key).where(Email.customer_id == customer_id))
        ).all()
        row = await session.get(CustomerSearch, customer_id)
        if row is None:
            row = CustomerSearch(customer_id=customer_id)
            session.add(row)
        row.names = "\n".join([customer.name_key, customer.company_key, *contact_keys])
        row.phones = "\n".join(numbers)
        row.emails = "\n".join(addresses)
        await session.flush()

    async def get_customer(self, customer_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as session:
            return await self._full(
                session, await self._customer(session, customer_id, actor, write=False)
            )

    async def update_customer(
        self, customer_id: int, patch: CustomerPatch, actor: Actor
    ) -> dict[str, Any]:
        async with self.db.session() as session, session.begin():
            c = await self._customer(session, customer_id, actor, write=True)
            values = patch.model_dump(exclude_unset=True)
            changes: dict[str, Any] = {}
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
                dups = await self.find_duplicates(
                    session,
                    names=[c.name],
                    company=c.company,
                    e164s=[],
                    emails=[],
                    exclude_customer=c.id,
                )
                if dups:
                    raise DuplicateError(dups)
                await self.reindex(session, c.id)
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
            c = await self._customer(session, customer_id, actor, write=True)
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
            c = await self._customer(session, customer_id, actor, write=True)
            rows = self._phone_rows(data.phones, "phones")
            if not force:
                dups = await self.find_duplicates(
                    session,
                    names=[],
                    company="",
                    e164s=[e for _, e, _ in rows],
                    emails=data.emails,
                )
                if dups:
                    raise DuplicateError(dups)
            contact = await self._add_contact(session, c.id, data, rows)
            await self.reindex(session, c.id)
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
            await self._customer(session, contact.customer_id, actor, write=write)
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
                dups = await self.find_duplicates(
                    session,
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
            await self.reindex(session, contact.customer_id)
            audit(session, actor, "update", "contact", contact.id, contact.customer_id, values)
            return await self._contact_out(session, contact)

    # --- search ----------------------------------------------------------------------

    async def search(
        self,
        q: str,
        actor: Actor,
        *,
        limit: int = 50,
        offset: int = 0,
        owner: str | None = None,
        method: Literal["index", "scan"] = "index",
    ) -> list[dict[str, Any]]:
        """Customers whose name, company, contact name, any part of a number or email
        contains ``q`` (case-insensitive; separators ignored in names and numbers).

        ``method="index"`` matches against ``crm_search`` (one narrow row per customer,
        trigram-indexed on PostgreSQL); ``"scan"`` against the customer, contact, phone and
        email tables themselves (the reference: same results, bench/crm_search.py's
        baseline)."""
        stmt = select(Customer)
        needles = self._needles(q)
        if needles is not None:
            if needles == ("", (), ""):
                return []
            match = self._match_index if method == "index" else self._match_scan
            stmt = stmt.where(Customer.id.in_(match(*needles)))
        if owner is not None:
            stmt = stmt.where(Customer.owner == owner if owner else Customer.owner.is_(None))
        stmt = self.visible(stmt, actor).order_by(Customer.id.desc()).limit(limit).offset(offset)
        async with self.db.session() as session:
            return [customer_dict(c) for c in (await session.scalars(stmt)).all()]

    def _needles(self, q: str) -> tuple[str, tuple[str, ...], str] | None:
        """(name key, number parts, email part) to look for; None: no filter at all."""
        q = q.strip()
        if not q:
            return None
        key = name_key(q)
        numbers: tuple[str, ...] = ()
        digits = re.sub(r"\D", "", q)
        if len(digits) >= 3 and len(digits) * 2 >= len(re.sub(r"[\s\-().+]", "", q)):
            parts = {digits, digits.lstrip("0") or digits}
            full = self.e164(q)
            if full:
                parts.add(full.lstrip("+"))
            numbers = tuple(sorted(parts))
        # an address holds no white space: such a needle cannot match one
        email = q.lower() if ("@" in q or "." in q or len(q) >= 3) else ""
        if re.search(r"\s", email):
            email = ""
        return key, numbers, email

    @staticmethod
    def _match_index(key: str, numbers: Sequence[str], email: str) -> Select[Any]:
        wanted = [CustomerSearch.names.contains(key, autoescape=True)] if key else []
        wanted += [CustomerSearch.phones.contains(p, autoescape=True) for p in numbers]
        if email:
            wanted.append(CustomerSearch.emails.contains(email, autoescape=True))
        return select(CustomerSearch.customer_id).where(or_(*wanted))

    @staticmethod
    def _match_scan(key: str, numbers: Sequence[str], email: str) -> Any:
        subqueries: list[Select[Any]] = []
        if key:
            subqueries += [
                select(Customer.id).where(Customer.name_key.contains(key, autoescape=True)),
                select(Customer.id).where(Customer.company_key.contains(key, autoescape=True)),
                select(Contact.customer_id).where(Contact.name_key.contains(key, autoescape=True)),
            ]
        if numbers:
            subqueries.append(
                select(Phone.customer_id).where(
                    or_(*(Phone.e164.contains(p, autoescape=True) for p in numbers))
                )
            )
        if email:
            subqueries.append(
                select(Email.customer_id).where(Email.address_key.contains(email, autoescape=True))
            )
        return union(*subqueries)

    async def count(self) -> int:
        async with self.db.session() as session:
            return int(await session.scalar(select(func.count(Customer.id))) or 0)

    async def audit_log(self, customer_id: int, actor: Actor) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            await self._customer(session, customer_id, actor, write=False)
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.customer_id == customer_id)
                .order_by(AuditEntry.id)
            )
            return [
                {
                    "id": a.id,
                    "at": _iso(a.at),
                    "actor": a.actor,
                    "action": a.action,
                    "entity": a.entity,
                    "entity_id": a.entity_id,
                    "changes": json.loads(a.changes),
                }
                for a in rows
            ]
