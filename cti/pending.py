"""Items of a queue worker kept in the store (the worker's ``keep``; :class:`cti.worker.
QueueWorker`): what a graceful stop could not handle in its bound, and, for a worker with
a journal, every item from shortly after its submission until it is handled.

- **Kept at a stop** (:meth:`PendingStore.save`, :meth:`PendingStore.take`): what is still
  queued or in hand when a stop's bound runs out is written in one transaction (a row per
  item, JSON through :func:`cti.cluster.codec.encode_value`) and, at the next start, taken
  back (read and deleted in one transaction) onto the head of the worker's queue, in the
  original order.
- **Journal** (:meth:`PendingStore.write`, :meth:`PendingStore.load`): the worker writes
  the items submitted since its last write and deletes the rows of the items handled
  since, in one transaction per interval (``journal_s``); at its stop it rewrites the rows
  of the items still unhandled (their state then: e.g. a webhook's attempts) and adds
  those not written yet. The next start reads the rows (they stay until their items are
  handled) onto the head of the queue, in the original order. What this adds to a crash
  (SIGKILL, power loss) is in :mod:`cti.worker`.
- **Adoption** (:meth:`PendingStore.adopt`): the rows of another keep (a dead node's
  journal) move to the adopter's keep in one statement, ``UPDATE ... SET worker =
  adopter WHERE worker = dead``, in a transaction that first takes ``guard`` (the dead
  keep's PostgreSQL advisory lock, :mod:`cti.cluster.orphans`) for itself: while the
  keep's owner holds that lock nothing moves, and while rows move the owner cannot take
  it. Two adopters at the same moment take each row once: the second's UPDATE finds the
  rows under another name (PostgreSQL re-checks the WHERE on the row the first changed;
  SQLite has one writer).

The handlers of the workers that keep items are idempotent: an item that was in hand when
a stop's bound ran out or the process died may have had part of its effect already, and
is applied again.

Not covered: without a journal, a crash loses the queue in memory; a store unreachable at
a stop leaves the items not yet in it logged in full at ERROR level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, func, select, update

from cti.cluster.codec import decode_value, encode_value, known_classes
from cti.store.db import Database
from cti.store.models import PendingItem

__all__ = ["PendingStore"]

T = TypeVar("T")
#: rows named in one statement (SQLite allows 32766 parameters, asyncpg 32767)
CHUNK = 500


class PendingStore(Generic[T]):
    """The kept items of one worker (by its name); ``classes``: the dataclasses its items
    are made of besides those of :mod:`cti.events`."""

    def __init__(self, db: Database, *classes: type[Any]) -> None:
        self._db = db
        self._classes = known_classes() | {c.__name__: c for c in classes}

    async def save(self, worker: str, items: Sequence[T]) -> None:
        rows = [PendingItem(worker=worker, payload=encode_value(i)) for i in items]
        async with self._db.session() as s, s.begin():
            s.add_all(rows)

    async def take(self, worker: str) -> list[T]:
        """The items kept for ``worker``, oldest first, removed from the store."""
        async with self._db.session() as s, s.begin():
            rows = (
                await s.execute(
                    select(PendingItem.id, PendingItem.payload)
                    .where(PendingItem.worker == worker)
                    .order_by(PendingItem.id)
                )
            ).all()
            if rows:
                await s.execute(
                    delete(PendingItem).where(
                        PendingItem.worker == worker, PendingItem.id <= rows[-1][0]
                    )
                )
        return [decode_value(payload, self._classes) for _, payload in rows]

    # --- journal ---------------------------------------------------------------------------

    async def write(
        self,
        worker: str,
        add: Sequence[T] = (),
        *,
        rewrite: Mapping[int, T] | None = None,
        remove: Sequence[int] = (),
    ) -> list[int]:
        """In one transaction: rows for ``add`` (their ids returned, in order), the rows
        ``rewrite`` names given their item's state now, the rows ``remove`` names deleted."""
        rows = [PendingItem(worker=worker, payload=encode_value(i)) for i in add]
        changed = [{"id": k, "payload": encode_value(v)} for k, v in (rewrite or {}).items()]
        async with self._db.session() as s, s.begin():
            if rows:
                s.add_all(rows)
                await s.flush()
            if changed:
                await s.execute(update(PendingItem), changed)
            for at in range(0, len(remove), CHUNK):
                part = remove[at : at + CHUNK]
                await s.execute(delete(PendingItem).where(PendingItem.id.in_(part)))
        return [r.id for r in rows]

    async def load(
        self, worker: str, limit: int, *, below: int | None = None
    ) -> list[tuple[int, T]]:
        """At most ``limit`` of the rows of ``worker`` (id, item), oldest first (``below``:
        only rows with a smaller id); they stay in the store."""
        query = select(PendingItem.id, PendingItem.payload).where(PendingItem.worker == worker)
        if below is not None:
            query = query.where(PendingItem.id < below)
        async with self._db.session() as s:
            rows = (await s.execute(query.order_by(PendingItem.id).limit(limit))).all()
        return [(row_id, decode_value(payload, self._classes)) for row_id, payload in rows]

    # --- adoption ----------------------------------------------------------------------

    async def keeps(self, prefix: str) -> list[str]:
        """The names with rows in the store that start with ``prefix``."""
        async with self._db.session() as s:
            names = (await s.scalars(select(PendingItem.worker).distinct())).all()
        return sorted(n for n in names if n.startswith(prefix))

    async def adopt(
        self, dead: str, adopter: str, limit: int, *, guard: int | None = None
    ) -> list[tuple[int, T]]:
        """Move at most ``limit`` of the rows of ``dead`` (oldest first) to ``adopter``, in
        one transaction; returns them (id, item), oldest first. ``guard`` (PostgreSQL): an
        advisory lock key taken for the transaction first; held by another session (the
        keep's owner is alive), nothing moves and the result is empty."""
        if limit < 1:
            return []
        async with self._db.session() as s, s.begin():
            if guard is not None and not await s.scalar(
                select(func.pg_try_advisory_xact_lock(guard))
            ):
                return []
            oldest = (
                select(PendingItem.id)
                .where(PendingItem.worker == dead)
                .order_by(PendingItem.id)
                .limit(limit)
                .scalar_subquery()
            )
            rows = (
                await s.execute(
                    update(PendingItem)
                    .where(PendingItem.worker == dead, PendingItem.id.in_(oldest))
                    .values(worker=adopter)
                    .returning(PendingItem.id, PendingItem.payload)
                    .execution_options(synchronize_session=False)
                )
            ).all()
        return [(row_id, decode_value(payload, self._classes)) for row_id, payload in sorted(rows)]
