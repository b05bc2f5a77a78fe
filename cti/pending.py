"""Items a queue worker could not handle within its stop's bound, kept in the store for
the next start (the worker's ``keep``; :class:`cti.worker.QueueWorker`).

A graceful stop drains each worker for a bounded time; what is still queued or in hand
then is written here in one transaction (a row per item, JSON through
:func:`cti.cluster.codec.encode_value`) and, at the next start, taken back (read and
deleted in one transaction) onto the head of the worker's queue, in the original order.
The handlers of the workers that keep items are idempotent: an item that was in hand when
the bound ran out may have had part of its effect already, and is applied again.

Not covered: a crash (SIGKILL, power loss) loses the queue in memory, as before; a store
unreachable at the stop leaves the items logged in full at ERROR level, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, select

from cti.cluster.codec import decode_value, encode_value, known_classes
from cti.store.db import Database
from cti.store.models import PendingItem

__all__ = ["PendingStore"]

T = TypeVar("T")


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
