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

The handlers of the workers that keep items are idempotent: an item that was in hand when
a stop's bound ran out or the process died may have had part of its effect already, and
is applied again.

Not covered: without a journal, a crash loses the queue in memory; a store unreachable at
a stop leaves the items not yet in it logged in full at ERROR level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, select, update

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

    async def load(self, worker: str, limit: int) -> list[tuple[int, T]]:
        """At most ``limit`` of the rows of ``worker`` (id, item), oldest first; they stay
        in the store."""
        async with self._db.session() as s:
            rows = (
                await s.execute(
                    select(PendingItem.id, PendingItem.payload)
                    .where(PendingItem.worker == worker)
                    .order_by(PendingItem.id)
                    .limit(limit)
                )
            ).all()
        return [(row_id, decode_value(payload, self._classes)) for row_id, payload in rows]
