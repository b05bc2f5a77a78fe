"""PostgreSQL: a page of search results read newest first off ``crm_search_trigrams``
(migration crm_0007), stopping when the page is full (docs/decisions/0011-crm-search.md).

For each (column, needle) of 3+ characters: the needle's trigrams (and 5-digit windows,
each in few rows where digit trigrams are in very many) are looked up in the B-tree on
``(gram, customer_id)``, at most :data:`SAMPLE` entries each below the page's
cursor, which tells how rare each is (fewer entries, or the same number spread over
more customer ids). The rarest trigram's list is then walked newest first, each
candidate checked with the ``LIKE`` that decides a match, until the page is full: a
needle in a share ``f`` of the rows that holds a trigram in a share ``g`` costs about
``page x g / f`` candidates, whatever the store's size. A trigram in no row ends the
search at once. When :data:`BUDGET` candidates did not fill the page (a rare needle made
of frequent trigrams) the matches are few, and the pg_trgm GIN
bitmaps (crm_0002) find them. Needles of 1-2 characters use crm_0006's word index as
before. Every path ends in the ``LIKE``, so the results are the scan's exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select, column, func, literal_column, select, table, text, true
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.keys import digit_runs
from crm_bridge.models import Customer, CustomerSearch

__all__ = ["BUDGET", "SAMPLE", "custom_plans", "newest_ids"]

#: entries of a trigram's list read to judge its frequency (a shorter list is read whole)
SAMPLE = 1000
#: candidates walked for one needle before leaving it to the GIN bitmaps
BUDGET = 5000
#: further grams each candidate must be in (index probes) before its row is read
PROBES = 2

TRIGRAMS = table("crm_search_trigrams", column("gram"), column("customer_id"))

_KIND = {"names": "n", "phones": "p", "emails": "e"}

# per trigram: how many of its newest SAMPLE entries exist below the cursor, and the
# oldest customer id among them (the same count over more ids: a rarer trigram)
_SAMPLE_SQL = text(
    """
    SELECT g.gram, s.n, s.oldest
    FROM unnest(CAST(:grams AS text[])) AS g (gram),
    LATERAL (
        SELECT count(*) AS n, min(t.customer_id) AS oldest
        FROM (
            SELECT customer_id FROM crm_search_trigrams
            WHERE gram = g.gram AND customer_id < :before
            ORDER BY customer_id DESC LIMIT :sample
        ) AS t
    ) AS s
    """
)

#: a statement's customer conditions (owner, filters, visibility) on a Select over Customer
Restrict = Callable[[Select[Any]], Select[Any]] | None

NO_CURSOR = 2**31 - 1  # above every customer id (integer primary key)


async def custom_plans(session: AsyncSession) -> None:
    """A plan per run for the rest of the transaction: the right plan of a ``LIKE`` over
    the GIN indexes depends on the needle's frequency (walk or bitmap), asyncpg prepares
    statements, and after five runs PostgreSQL may keep one generic plan for every
    needle (measured: 6 ms, then 1 s a query at 1M). The walks' plans do not depend on
    it (their shape is fixed by ``LATERAL`` and ``OFFSET 0``): it is set only before a
    statement that needs it."""
    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def trigrams(column_name: str, needle: str) -> list[str]:
    """The ``crm_search_trigrams.gram`` spellings of ``needle``'s trigrams and 5-digit
    windows in a column (``p138``, ``p13800``: the kind letter, then the characters)."""
    kind = _KIND[column_name]
    pieces = {needle[i : i + 3] for i in range(len(needle) - 2)} | digit_runs(needle)
    return sorted(kind + piece for piece in pieces)


async def newest_ids(
    session: AsyncSession,
    terms: Sequence[tuple[str, str]],
    fallback: Callable[[str, str], Select[Any]],
    restrict: Restrict,
    limit: int,
    before: int | None,
) -> list[int]:
    """The newest ``limit`` customer ids (below ``before``) matching any of ``terms``
    ((crm_search column, needle) pairs) and ``restrict``. ``fallback(column, needle)``:
    the ids matching one term (a Select over crm_search, any order), for needles of 1-2
    characters and the walks that ran out of budget."""
    cursor = NO_CURSOR if before is None else before
    long_terms = [(c, n) for c, n in terms if len(n) >= 3]
    rarest: dict[tuple[str, str], tuple[list[str], bool]] = {}
    if long_terms:
        wanted = sorted({g for c, n in long_terms for g in trigrams(c, n)})
        sampled = {
            row.gram: (row.n, row.oldest)
            for row in await session.execute(
                _SAMPLE_SQL, {"grams": wanted, "before": cursor, "sample": SAMPLE}
            )
        }
        for term in long_terms:
            seen = [(sampled[g], g) for g in trigrams(*term)]
            if any(n == 0 for (n, _), _ in seen):
                continue  # a trigram in no row (below the cursor): no match
            # fewest entries; at the sample's size, the one reaching furthest back
            ranked = sorted(seen, key=lambda x: (x[0][0], x[0][1]))
            rarest[term] = ([g for _, g in ranked], ranked[0][0][0] < SAMPLE)
    found: set[int] = set()
    planned = False
    for col, needle in terms:
        if len(needle) >= 3 and (col, needle) not in rarest:
            continue
        if (col, needle) in rarest:
            order, whole = rarest[(col, needle)]
            ids = await _walk(session, col, needle, order, restrict, limit, cursor)
            if len(ids) >= limit or whole or await _short(session, order[0], cursor):
                found.update(ids)  # a full page, or every candidate was checked
                continue
        if not planned:
            await custom_plans(session)
            planned = True
        stmt = _restricted(fallback(col, needle), restrict)
        stmt = stmt.where(CustomerSearch.customer_id < cursor)
        stmt = stmt.order_by(CustomerSearch.customer_id.desc()).limit(limit)
        found.update((await session.scalars(stmt)).all())
    return sorted(found, reverse=True)[:limit]


async def _walk(
    session: AsyncSession,
    col: str,
    needle: str,
    grams: Sequence[str],
    restrict: Restrict,
    limit: int,
    cursor: int,
) -> list[int]:
    """The newest ``limit`` matches of ``needle`` in ``col`` among the newest
    :data:`BUDGET` customers holding ``grams[0]`` (nested loop in the list's order: no
    sort, stops when full). Each candidate is first looked up in the lists of the next
    :data:`PROBES` rarest grams (an index probe each), then its row checked."""
    candidates = (
        select(TRIGRAMS.c.customer_id)
        .where(TRIGRAMS.c.gram == grams[0], TRIGRAMS.c.customer_id < cursor)
        .order_by(TRIGRAMS.c.customer_id.desc())
        .limit(BUDGET)
        .subquery("candidates")
    )
    joined: Any = candidates
    for i, gram in enumerate(grams[1 : 1 + PROBES]):
        also = table("crm_search_trigrams", column("gram"), column("customer_id")).alias(f"also{i}")
        probe = (
            select(literal_column("1").label("ok"))
            .select_from(also)
            .where(also.c.gram == gram, also.c.customer_id == candidates.c.customer_id)
            .offset(0)
            .lateral(f"probe{i}")
        )
        joined = joined.join(probe, true())
    # each candidate checked on its own (a LATERAL kept apart by OFFSET 0): otherwise the
    # planner may hash-join the candidates with every LIKE match from the GIN index
    # (measured at 1M: 34 ms for a needle in 11,320 rows, 0.6 ms walking)
    check: Select[Any] = (
        select(literal_column("1").label("ok"))
        .select_from(CustomerSearch)
        .where(
            CustomerSearch.customer_id == candidates.c.customer_id,
            getattr(CustomerSearch, col).contains(needle, autoescape=True),
        )
    )
    checked = _restricted(check, restrict).offset(0).lateral("checked")
    stmt = (
        select(candidates.c.customer_id)
        .select_from(joined.join(checked, true()))
        .order_by(candidates.c.customer_id.desc())
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def _short(session: AsyncSession, gram: str, cursor: int) -> bool:
    """Whether ``gram``'s list below ``cursor`` is shorter than :data:`BUDGET` (a walk of
    it checked every candidate)."""
    within = (
        select(literal_column("1"))
        .select_from(TRIGRAMS)
        .where(TRIGRAMS.c.gram == gram, TRIGRAMS.c.customer_id < cursor)
        .limit(BUDGET)
        .subquery()
    )
    n = await session.scalar(select(func.count()).select_from(within))
    return (n or 0) < BUDGET


def _restricted(stmt: Select[Any], restrict: Restrict) -> Select[Any]:
    if restrict is None:
        return stmt
    return restrict(stmt.join(Customer, Customer.id == CustomerSearch.customer_id))
