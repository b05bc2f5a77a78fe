"""Customer search: the ``crm_search`` row kept per customer, and the queries over it.

Search matches the customer's and its contacts' names, the company, any part of a phone
number and any part of an e-mail (docs/decisions/0011-crm-search.md). :func:`reindex`
rewrites a customer's row in the transaction that changed one of those fields;
:func:`search` matches against it (``method="index"``) or against the customer,
contact, phone and e-mail tables themselves (``"scan"``: the reference, same results,
bench/crm_search.py's baseline).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, exists, func, literal_column, or_, select, table, union
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.access import Actor, visible
from crm_bridge.keys import name_key, region_of, tags_list
from crm_bridge.models import Contact, Customer, CustomerSearch, Email, Phone
from crm_bridge.records import customer_dict
from cti.store.db import Database

__all__ = ["Filters", "Needles", "filtered", "needles", "reindex", "search"]

#: (name key, number parts, email part) to look for
Needles = tuple[str, tuple[str, ...], str]


async def reindex(session: AsyncSession, customer_id: int) -> None:
    """Rewrite the customer's :class:`CustomerSearch` row from its current rows (call in
    the transaction that changed a name, company, contact, number or email)."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        return
    contact_keys = (
        await session.scalars(select(Contact.name_key).where(Contact.customer_id == customer_id))
    ).all()
    numbers = (
        await session.scalars(
            select(Phone.e164).where(Phone.customer_id == customer_id).order_by(Phone.id)
        )
    ).all()
    addresses = (
        await session.scalars(select(Email.address_key).where(Email.customer_id == customer_id))
    ).all()
    row = await session.get(CustomerSearch, customer_id)
    if row is None:
        row = CustomerSearch(customer_id=customer_id)
        session.add(row)
    tag_keys = [name_key(t) for t in tags_list(customer.tags)]
    row.names = "\n".join([customer.name_key, customer.company_key, *contact_keys, *tag_keys])
    region = region_of(numbers[0]) if numbers else ""
    if customer.region != region:
        customer.region = region
    row.phones = "\n".join(numbers)
    row.emails = "\n".join(addresses)
    await session.flush()


async def search(
    db: Database,
    q: str,
    actor: Actor,
    *,
    e164: Callable[[str], str],
    limit: int = 50,
    offset: int = 0,
    owner: str | None = None,
    method: Literal["index", "scan"] = "index",
    filters: Filters | None = None,
) -> list[dict[str, Any]]:
    """Customers whose name, company, contact name, tag, any part of a number or email
    contains ``q`` (case-insensitive; separators ignored in names and numbers), newest
    first. ``e164``: the site's number normaliser."""
    wanted = needles(q, e164)
    if wanted == ("", (), ""):
        return []
    fts = db.engine.dialect.name == "sqlite"
    stmt = filtered(select(Customer), wanted, actor, owner, filters, method, fts=fts)
    stmt = stmt.order_by(Customer.id.desc()).limit(limit).offset(offset)
    async with db.session() as session:
        return [customer_dict(c) for c in (await session.scalars(stmt)).all()]


@dataclass(frozen=True, slots=True)
class Filters:
    """The customer list's filters beside the search text (all optional, combined)."""

    tier: str | None = None
    region: str | None = None  # any part of the 号码归属地 ("江苏" finds "江苏省常州市")
    tag: str | None = None  # a whole tag
    contacted_after: datetime | None = None
    contacted_before: datetime | None = None  # also: never contacted
    ids: tuple[int, ...] | None = None


def filtered(
    stmt: Select[Any],
    wanted: Needles | None,
    actor: Actor,
    owner: str | None,
    filters: Filters | None,
    method: Literal["index", "scan"] = "index",
    *,
    fts: bool = False,
) -> Select[Any]:
    """``stmt`` (over :class:`Customer`) limited to the search, owner, filters and what
    ``actor`` may see. ``fts``: narrow through SQLite's FTS5 table (migration crm_0005)."""
    if wanted is not None and method == "index" and fts and not _trigrams(*wanted):
        # SQLite, a needle under 3 characters (no trigram): walk the customers newest first
        # and stop at the page's end (a frequent short needle, e.g. 张伟, ends early; on
        # PostgreSQL this measured slower than the IN below, so it keeps that)
        stmt = stmt.where(
            exists(_match_index(*wanted).where(CustomerSearch.customer_id == Customer.id))
        )
    elif wanted is not None:
        match = _match_index(*wanted, fts=fts) if method == "index" else _match_scan(*wanted)
        stmt = stmt.where(Customer.id.in_(match))
    if owner is not None:
        stmt = stmt.where(Customer.owner == owner if owner else Customer.owner.is_(None))
    f = filters or Filters()
    if f.tier is not None:
        stmt = stmt.where(Customer.tier == f.tier)
    if f.region:
        stmt = stmt.where(Customer.region.contains(f.region, autoescape=True))
    if f.tag:
        stmt = stmt.where(Customer.tags.contains(f",{f.tag},", autoescape=True))
    if f.contacted_after is not None:
        stmt = stmt.where(Customer.last_contact_at >= f.contacted_after)
    if f.contacted_before is not None:
        stmt = stmt.where(
            or_(Customer.last_contact_at.is_(None), Customer.last_contact_at < f.contacted_before)
        )
    if f.ids is not None:
        stmt = stmt.where(Customer.id.in_(f.ids))
    return visible(stmt, actor)


def needles(q: str, e164: Callable[[str], str]) -> Needles | None:
    """(name key, number parts, email part) to look for; None: no filter at all."""
    q = q.strip()
    if not q:
        return None
    key = name_key(q)
    numbers: tuple[str, ...] = ()
    digits = re.sub(r"\D", "", q)
    if len(digits) >= 3 and len(digits) * 2 >= len(re.sub(r"[\s\-().+]", "", q)):
        parts = {digits, digits.lstrip("0") or digits}
        full = e164(q)
        if full:
            parts.add(full.lstrip("+"))
        numbers = tuple(sorted(parts))
    # an address holds no white space: such a needle cannot match one
    email = q.lower() if ("@" in q or "." in q or len(q) >= 3) else ""
    if re.search(r"\s", email):
        email = ""
    return key, numbers, email


def _match_index(key: str, numbers: Sequence[str], email: str, *, fts: bool = False) -> Select[Any]:
    wanted = [CustomerSearch.names.contains(key, autoescape=True)] if key else []
    wanted += [CustomerSearch.phones.contains(p, autoescape=True) for p in numbers]
    if email:
        wanted.append(CustomerSearch.emails.contains(email, autoescape=True))
    stmt = select(CustomerSearch.customer_id).where(or_(*wanted))
    terms = _terms(key, numbers, email)
    if fts and _trigrams(key, numbers, email):
        # SQLite: the FTS5 trigram index narrows to the rows holding every trigram of a
        # needle; the LIKEs above still decide, so the result is the scan's exactly
        query = " OR ".join(f"{{{c}}} : {_phrase(n)}" for c, n in terms)
        rowids: Select[Any] = (
            select(literal_column("rowid"))
            .select_from(table("crm_search_fts"))
            .where(literal_column("crm_search_fts").op("MATCH", is_comparison=True)(query))
        )
        stmt = stmt.where(CustomerSearch.customer_id.in_(rowids))
    return stmt


def _terms(key: str, numbers: Sequence[str], email: str) -> list[tuple[str, str]]:
    """(crm_search column, needle) pairs to look for."""
    terms = [("names", key), *(("phones", p) for p in numbers), ("emails", email)]
    return [(column, needle) for column, needle in terms if needle]


def _trigrams(key: str, numbers: Sequence[str], email: str) -> bool:
    """Whether every needle has a trigram (3+ characters): the FTS5 index can narrow."""
    return all(len(needle) >= 3 for _, needle in _terms(key, numbers, email))


def _phrase(needle: str) -> str:
    return '"' + needle.replace('"', '""') + '"'


def _match_scan(key: str, numbers: Sequence[str], email: str) -> Any:
    subqueries: list[Select[Any]] = []
    if key:
        subqueries += [
            select(Customer.id).where(Customer.name_key.contains(key, autoescape=True)),
            select(Customer.id).where(Customer.company_key.contains(key, autoescape=True)),
            select(Contact.customer_id).where(Contact.name_key.contains(key, autoescape=True)),
            select(Customer.id).where(func.lower(Customer.tags).contains(key, autoescape=True)),
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
