"""Lost callers: every caller who left a queue unanswered (abandoned, timed out, no
agents, refused, asked for a callback; the reason is the call's disposition) goes
on a list that closes itself when a later call from that number is answered, or when
the number is reached by a callback or a click-to-call (:meth:`LostCallers.close_key`).
Calls the ACD places itself (callback placeholders, outbound calls) are never lost
callers and close nothing by themselves.

The bus handler only submits to a :class:`~cti.worker.QueueWorker` (the bus is
synchronous): bounded, drops counted in /metrics, database errors retried until the
database is back, a record the database refuses given up alone. A graceful stop drains
it for at most ``STOP_GRACE_S`` with the store open; the calls left then are kept in the
store (cti.pending) and applied first at the next start, in order: none is lost. Applying
a call twice changes nothing (one entry per Linkedid; closing closes what is open).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from acd.models import CallbackRow, LostCallerRow
from cti.events import CallCompleted, CallRecord
from cti.pending import PendingStore
from cti.phone import normalize
from cti.store.db import Database, is_data_error
from cti.store.hot_write import Write, WritePlan
from cti.store.models import clip_text
from cti.worker import QueueWorker, WorkerMetrics

__all__ = ["LOST_DISPOSITIONS", "LostCallers"]

log = logging.getLogger(__name__)

#: Callers who left a queue unanswered: hung up, timed out, the queue had no agents or
#: refused them, or they pressed the callback key (closed when the callback reaches them).
LOST_DISPOSITIONS = frozenset({"abandoned", "timeout", "exit_empty", "refused", "callback"})
_QUEUE_MAX = 10_000
STOP_GRACE_S = 2.0  # a stop's drain; the rest is kept for the next start (cti.pending)


def caller_key(num: str, region: str) -> str:
    """The number lost callers are matched on: E.164 when possible, else the digits."""
    return normalize(num, region) or clip_text("".join(c for c in num if c.isdigit()), 64)


#: close the open entries of a caller key lost before ``at`` (reached by call ``lid``)
_CLOSE = Write(
    update(LostCallerRow)
    .where(
        LostCallerRow.caller_key == bindparam("key"),
        LostCallerRow.closed_at.is_(None),
        LostCallerRow.lost_at <= bindparam("at"),
        LostCallerRow.linkedid != bindparam("lid"),
    )
    .values(closed_at=bindparam("at"), closed_by=bindparam("by"),
            closed_linkedid=bindparam("closing")),
    ("key", "at", "lid", "by", "closing"),
)  # fmt: skip


class LostCallers:
    def __init__(self, db: Database, region: str, *, metrics: WorkerMetrics | None = None) -> None:
        self._db = db
        self._region = region
        self.worker: QueueWorker[CallRecord] = QueueWorker(
            "acd-lost-callers", self._handle, queue_size=_QUEUE_MAX, permanent=is_data_error,
            describe=lambda r: f"call {r.linkedid}", metrics=metrics, keep=PendingStore(db),
        )  # fmt: skip

    @property
    def dropped(self) -> int:
        return self.worker.dropped

    def on_completed(self, event: CallCompleted) -> None:
        rec = event.record
        if not rec.queue and rec.disposition != "answered":
            return
        if rec.linkedid.startswith(("cti-out-", "cti-cb-")):  # acd.outbound's own calls
            return
        self.worker.submit(rec)

    async def start(self) -> None:
        await self.worker.resume()  # what the last stop left over, first
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.close(grace_s=STOP_GRACE_S)

    async def flush(self) -> None:
        await self.worker.flush()

    async def _handle(self, records: Sequence[CallRecord]) -> None:
        for rec in records:
            await self.apply(rec)

    async def apply(self, rec: CallRecord) -> None:
        key = caller_key(rec.caller_num, self._region)
        if not key:
            return
        if rec.disposition in LOST_DISPOSITIONS and rec.queue:
            async with self._db.session() as s:
                # a callback may have reached the number before this call's end was seen
                reached = (
                    await s.execute(
                        select(CallbackRow.call_linkedid, CallbackRow.reached_at)
                        .where(
                            CallbackRow.caller_key == key,
                            CallbackRow.reached_at.is_not(None),
                            CallbackRow.reached_at >= rec.ended_at,
                        )
                        .limit(1)
                    )
                ).first()
            async with self._db.session() as s:
                try:
                    async with s.begin():
                        s.add(
                            LostCallerRow(
                                linkedid=clip_text(rec.linkedid, 64),
                                caller_num=clip_text(rec.caller_num, 64),
                                caller_key=key,
                                caller_name=clip_text(rec.caller_name, 128),
                                queue=clip_text(rec.queue, 64),
                                reason=rec.disposition,
                                wait_s=rec.wait_s,
                                lost_at=rec.ended_at,
                                closed_at=reached[1] if reached else None,
                                closed_by="called_back" if reached else "",
                                closed_linkedid=reached[0] if reached else "",
                            )
                        )
                except IntegrityError:
                    pass  # the same call written twice (AMI then recovery)
        elif rec.disposition == "answered":
            await self.close_number(key, rec, "answered")

    async def close_number(self, key: str, rec: CallRecord, by: str) -> None:
        await self.close_key(key, rec.answered_at or rec.ended_at, rec.linkedid, by)

    async def close_key(self, key: str, at: datetime, linkedid: str, by: str) -> int:
        """Close the open entries of ``key`` lost before ``at`` (reached by ``linkedid``)."""
        if not key:
            return 0
        values = {"key": key, "at": at, "lid": linkedid, "by": by,
                  "closing": clip_text(linkedid, 64)}  # fmt: skip

        def plan() -> WritePlan[int]:  # one statement on the writer, no ORM (decision 0027)
            count: int = yield _CLOSE(**values)
            return count

        return max(0, await self._db.write(plan))

    async def open_for(self, num: str) -> list[int]:
        key = caller_key(num, self._region)
        async with self._db.session() as s:
            rows = await s.execute(
                select(LostCallerRow.id).where(
                    LostCallerRow.caller_key == key, LostCallerRow.closed_at.is_(None)
                )
            )
            return [r[0] for r in rows]
