"""Side effects that must happen once per cause across the nodes of a cluster.

Two nodes may handle the same cause: a domain event consumed on both (``remote=True``),
a call completed by its driver and again by the driver that took the server over and
recovered it from the CDR, the overlap of a lease (decision 0028). Before acting, a node
calls :func:`fire_once` with the cause's key (for a rule-triggered message: the rule and
the call's Linkedid); the store's primary key on ``(scope, key)`` admits one insert, so
exactly one caller in the cluster gets True and acts, whatever the timing (a plain
"was it sent already?" read lets both through when they look at the same moment).

At most once: the claim is taken before the act; a node that dies between the two
(milliseconds) leaves the act undone rather than done twice. On one node (SQLite) the
same holds across restarts. Exactly once: :func:`claim_once` takes the claim inside the
caller's transaction, so the record of the act to do (messaging's outbox row) commits
with the claim or not at all, and whoever drains those records does the act.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cti.store.db import Database
from cti.store.insert import insert_ignore
from cti.store.models import FiredOnce

__all__ = ["claim_once", "fire_once"]


async def claim_once(session: AsyncSession, scope: str, key: str) -> bool:
    """Claim ``(scope, key)`` in ``session``'s transaction: True for the first caller in the
    store (once that transaction commits), False for every other."""
    result = await session.execute(
        insert_ignore(session, FiredOnce, ["scope", "key"]).values(scope=scope, key=key)
    )
    return bool(getattr(result, "rowcount", 0))


async def fire_once(db: Database, scope: str, key: str) -> bool:
    """True for the first caller with ``(scope, key)`` in the store, False for every other."""
    async with db.session() as session, session.begin():
        return await claim_once(session, scope, key)
