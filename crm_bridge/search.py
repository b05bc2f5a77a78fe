"""Customer search: the ``crm_search`` row kept per customer, and the queries over it.

Search matches the customer's and its contacts' names, the company, any part of a phone
number and any part of an e-mail (docs/decisions/0011-crm-search.md). :func:`reindex`
rewrites a customer's row in the transaction that changed one of those fields;
:func:`search` matches against it (``method="index"``) or against the customer,
contact, phone and e-mail tables themselves (``"scan"``: the reference, same results,
bench/crm_search.py's baseline).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    Text,
    and_,
    bindparam,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    union,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from crm_bridge.access import Actor, visible
from crm_bridge.keys import digit_runs, name_key, region_of, search_grams, tags_list
from crm_bridge.models import Contact, Customer, CustomerSearch, Email, Phone
from crm_bridge.records import customer_dict
from crm_bridge.search_walk import (
    Restriction,
    contains_pattern,
    custom_plans,
    has_word,
    page_statement,
    word,
)
from cti.store.db import Database

__all__ = ["Filters", "Needles", "filtered", "needles", "reindex", "restriction", "search"]

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
    row.grams = search_grams(row.names, row.phones, row.emails)
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
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Customers whose name, company, contact name, tag, any part of a number or email
    contains ``q`` (case-insensitive; separators ignored in names and numbers), newest
    first. ``e164``: the site's number normaliser. ``before``: only customers with a
    smaller id (the keyset cursor of the next page: the last id of this one; ``offset``
    reads and skips that many rows first).

    Never reads the whole match set for a page: on SQLite the page is read off an FTS5
    index in customer order (newest first) and stops when full; on PostgreSQL off the
    rarest trigram's list in ``crm_search_trigrams``, also newest first
    (:mod:`crm_bridge.search_walk`, docs/decisions/0011-crm-search.md)."""
    wanted = needles(q, e164)
    if wanted == ("", (), ""):
        return []
    dialect = db.engine.dialect.name
    if wanted is not None and method == "index" and dialect == "sqlite":
        return await _newest_first(db, wanted, actor, owner, filters, limit, offset, before)
    if wanted is not None and method == "index" and dialect == "postgresql":
        return await _newest_walked(db, wanted, actor, owner, filters, limit, offset, before)
    async with db.session() as session:
        if dialect == "postgresql":
            await custom_plans(session)
        stmt = filtered(select(Customer), wanted, actor, owner, filters, method, dialect=dialect)
        if before is not None:
            stmt = stmt.where(Customer.id < before)
        stmt = stmt.order_by(Customer.id.desc()).limit(limit).offset(offset)
        return [customer_dict(c) for c in (await session.scalars(stmt)).all()]


async def _newest_walked(
    db: Database,
    wanted: Needles,
    actor: Actor,
    owner: str | None,
    filters: Filters | None,
    limit: int,
    offset: int,
    before: int | None,
) -> list[dict[str, Any]]:
    """PostgreSQL: the page and its customers' rows in one statement
    (:func:`crm_bridge.search_walk.page_statement`) on a reader connection in autocommit:
    one round trip, no ``BEGIN``/``ROLLBACK`` (a connection that sat idle is pinged
    first, :func:`cti.store.db.ping_when_idle`). On the caller's loop, not
    :meth:`cti.store.db.Database.read`'s: measured at load 15, the hop to that loop's
    thread and back made the median 14 ms instead of 9, the p99 80 instead of 36."""
    stmt, params = page_statement(
        _terms(*wanted), restriction(actor, owner, filters), limit, offset, before
    )
    async with db.reader.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        # the statement's one plan (the generic one) for every needle: left to itself, at
        # 1M PostgreSQL kept planning it per run (its estimates favour custom plans),
        # 1.3-4 ms a search (王秀英 1.7 ms a run vs 0.4 generic, 5678 8.1 vs 4.2); the
        # setting is the session's, so it is reset before the connection goes back
        await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        try:
            async with AsyncSession(bind=conn) as session:
                rows = (await session.scalars(stmt, params)).all()
                return [customer_dict(c) for c in rows]
        finally:
            await conn.exec_driver_sql("RESET plan_cache_mode")


async def _newest_first(
    db: Database,
    wanted: Needles,
    actor: Actor,
    owner: str | None,
    filters: Filters | None,
    limit: int,
    offset: int,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """SQLite: the page read off the FTS5 indexes in rowid (= customer id) order, newest
    first, stopping when full however many rows match (a frequent needle: 王, garcia),
    in one hop (:meth:`cti.store.db.Database.read`: a reader connection in a thread,
    neither the writer's queue nor a thread round trip per step). Needles of both
    lengths (``0013`` finds ``0013`` in names, ``13`` in numbers) read each index's
    first ``offset + limit`` and merge: the page's rows are among them."""
    statements = [
        _newest_matches(fts, query, terms, actor, owner, filters, before)
        for fts, (query, terms) in _fts_queries(_terms(*wanted)).items()
    ]

    def page(session: Session) -> list[dict[str, Any]]:
        if len(statements) == 1:
            rows = session.scalars(statements[0].limit(limit).offset(offset)).all()
            return [customer_dict(c) for c in rows]
        found: dict[int, Customer] = {}
        for stmt in statements:
            for c in session.scalars(stmt.limit(offset + limit)).all():
                found[c.id] = c
        newest = sorted(found.values(), key=lambda c: c.id, reverse=True)
        return [customer_dict(c) for c in newest[offset : offset + limit]]

    return await db.read(page)


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
    dialect: str = "",
) -> Select[Any]:
    """``stmt`` (over :class:`Customer`) limited to the search, owner, filters and what
    ``actor`` may see. ``dialect``: the database's, for its search indexes."""
    if wanted is not None:
        match = (
            _match_index(*wanted, dialect=dialect) if method == "index" else _match_scan(*wanted)
        )
        stmt = stmt.where(Customer.id.in_(match))
    kept = restriction(actor, owner, filters)
    return stmt if kept is None else _restricted(kept.key, stmt, kept.params)


def restriction(actor: Actor, owner: str | None, filters: Filters | None) -> Restriction | None:
    """The owner, filters and what ``actor`` may see as conditions with bind parameters
    (:class:`crm_bridge.search_walk.Restriction`: its key says which conditions there
    are, its params their values; no value is ever written into the SQL); None when
    nothing restricts (a supervisor's unfiltered list)."""
    f = filters or Filters()
    owner_kind = None if owner is None else ("pool" if not owner else "owner")
    key = (
        actor.sees_all,
        owner_kind,
        f.tier is not None,
        bool(f.region),
        bool(f.tag),
        f.contacted_after is not None,
        f.contacted_before is not None,
        f.ids is not None,
    )
    if key == (True, None, False, False, False, False, False, False):
        return None
    values = {
        "crm_f_actor": actor.name,
        "crm_f_owner": owner,
        "crm_f_tier": f.tier,
        "crm_f_region": contains_pattern(f.region or ""),
        "crm_f_tag": contains_pattern(f",{f.tag},"),
        "crm_f_after": f.contacted_after,
        "crm_f_before": f.contacted_before,
        "crm_f_ids": list(f.ids or ()),
    }
    return Restriction(key, functools.partial(_restricted, key), values)


def _restricted(
    key: Any, stmt: Select[Any], values: Mapping[str, Any] | None = None
) -> Select[Any]:
    """``stmt`` (over :class:`Customer`) with the conditions of a :func:`restriction`'s
    key, each value a bind parameter named as in its params: given ``values``, or
    required at execution (a statement kept for every restriction of this key)."""
    sees_all, owner_kind, tier, region, tag, after, before, ids = key

    def value(name: str, type_: Any = None) -> Any:
        many = name == "crm_f_ids"  # IN (...): one parameter per id
        if values is None:
            return bindparam(name, type_=type_, expanding=many)
        return bindparam(name, values[name], type_=type_, expanding=many)

    if owner_kind == "owner":
        stmt = stmt.where(Customer.owner == value("crm_f_owner", Text))
    elif owner_kind == "pool":
        stmt = stmt.where(Customer.owner.is_(None))
    if tier:
        stmt = stmt.where(Customer.tier == value("crm_f_tier", Text))
    if region:
        stmt = stmt.where(Customer.region.like(value("crm_f_region", Text), escape="/"))
    if tag:
        stmt = stmt.where(Customer.tags.like(value("crm_f_tag", Text), escape="/"))
    if after:
        stmt = stmt.where(Customer.last_contact_at >= value("crm_f_after"))
    if before:
        stmt = stmt.where(
            or_(
                Customer.last_contact_at.is_(None), Customer.last_contact_at < value("crm_f_before")
            )
        )
    if ids:
        stmt = stmt.where(Customer.id.in_(value("crm_f_ids")))
    if sees_all:
        return stmt
    return visible(stmt, Actor("", "agent"), name=value("crm_f_actor", Text))


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
        # a part holding another is found by it (the LIKEs are ORed): one search less
        numbers = tuple(sorted(p for p in parts if not any(o != p and o in p for o in parts)))
    # an address holds no white space: such a needle cannot match one
    email = q.lower() if ("@" in q or "." in q or len(q) >= 3) else ""
    if re.search(r"\s", email):
        email = ""
    return key, numbers, email


#: SQLite's FTS5 indexes over ``crm_search`` (migrations crm_0005, crm_0006)
TRIGRAMS, GRAMS = "crm_search_fts", "crm_search_fts_grams"


def _likes(terms: Sequence[tuple[str, str]]) -> list[ColumnElement[bool]]:
    """What decides a match: ``LIKE '%needle%'`` on the needle's ``crm_search`` column."""
    return [
        getattr(CustomerSearch, column).contains(needle, autoescape=True)
        for column, needle in terms
    ]


def _match_index(key: str, numbers: Sequence[str], email: str, *, dialect: str = "") -> Select[Any]:
    """The ids of the matching customers from ``crm_search``: the ``LIKE``s decide; the
    indexes only narrow (they may find more, never less), so the result is the scan's."""
    terms = _terms(key, numbers, email)
    likes = _likes(terms)
    if dialect == "postgresql":
        # pg_trgm's GIN indexes serve the LIKEs of 3+ characters; the words of crm_0006's
        # GIN array index the shorter ones
        likes = [
            and_(like, _pg_has_word(column, needle)) if len(needle) < 3 else like
            for like, (column, needle) in zip(likes, terms, strict=True)
        ]
    stmt = select(CustomerSearch.customer_id).where(or_(*likes))
    if dialect == "sqlite":
        rowids: list[Select[Any]] = [
            select(literal_column("rowid"))
            .select_from(table(fts))
            .where(literal_column(fts).op("MATCH", is_comparison=True)(query))
            for fts, (query, _) in _fts_queries(terms).items()
        ]
        narrowed = rowids[0] if len(rowids) == 1 else union_all(*rowids)
        stmt = stmt.where(CustomerSearch.customer_id.in_(narrowed))
    return stmt


def _newest_matches(
    fts: str,
    query: str,
    terms: Sequence[tuple[str, str]],
    actor: Actor,
    owner: str | None,
    filters: Filters | None,
    before: int | None = None,
) -> Select[Any]:
    """SQLite: the customers ``query`` finds in the FTS5 index ``fts`` whose ``terms``
    really match (``LIKE``), in the index's rowid order, newest first (no sort)."""
    index = table(fts, column("rowid"))
    stmt = (
        select(Customer)
        .select_from(index)
        .join(Customer, Customer.id == index.c.rowid)
        .join(CustomerSearch, CustomerSearch.customer_id == index.c.rowid)
        .where(literal_column(fts).op("MATCH", is_comparison=True)(query))
        .where(or_(*_likes(terms)))
    )
    if before is not None:
        stmt = stmt.where(index.c.rowid < before)  # FTS5 starts its read below the cursor
    return filtered(stmt, None, actor, owner, filters).order_by(index.c.rowid.desc())


def _fts_queries(terms: Sequence[tuple[str, str]]) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """SQLite: per FTS5 index, its query and the terms it serves: needles holding 5+
    digits as all their 5-digit words of the grams index (each in few rows, where digit
    trigrams are in very many), other 3+ character needles as phrases of the trigram
    index (column filter), shorter ones as words of the grams index."""
    runs = {term: sorted(digit_runs(term[1])) for term in terms}
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for fts, served in (
        (TRIGRAMS, [t for t in terms if len(t[1]) >= 3 and not runs[t]]),
        (GRAMS, [t for t in terms if len(t[1]) < 3 or runs[t]]),
    ):
        if not served:
            continue
        if fts == TRIGRAMS:
            # one phrase per needle, in all its columns (``{names phones} : "123"``)
            columns: dict[str, list[str]] = {}
            for c, n in served:
                columns.setdefault(n, []).append(c)
            parts = [f"{{{' '.join(cs)}}} : {_phrase(n)}" for n, cs in columns.items()]
        else:
            parts = [
                "(" + " AND ".join(_phrase(word(c, r)) for r in runs[(c, n)]) + ")"
                if runs[(c, n)]
                else _phrase(word(c, n))
                for c, n in served
            ]
        out[fts] = (" OR ".join(parts), served)
    return out


def _pg_has_word(column: str, needle: str) -> ColumnElement[bool]:
    return has_word(bindparam(None, [word(column, needle)], type_=ARRAY(Text())))


def _terms(key: str, numbers: Sequence[str], email: str) -> list[tuple[str, str]]:
    """(crm_search column, needle) pairs to look for."""
    terms = [("names", key), *(("phones", p) for p in numbers), ("emails", email)]
    return [(column, needle) for column, needle in terms if needle]


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
