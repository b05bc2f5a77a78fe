"""The call recorder: every :class:`~cti.events.CallCompleted` becomes one ``calls`` row.

The bus handler only submits to a :class:`~cti.worker.QueueWorker` (bounded, never
blocking: a full queue drops the record with an error log and a count in
:attr:`CallRecorder.dropped` and ``cti_queue_worker_dropped_total{worker="calls"}``), which
UPSERTs batches by Linkedid with the dialect's ``INSERT ... ON CONFLICT (linkedid) DO
UPDATE``.

Merge rule when a Linkedid is written again (AMI first, CDR recovery later, or the
reverse): a non-empty new value wins, an empty new value keeps what is stored. Empty
means ``""`` for text, ``None`` for times and durations, ``""``/``"unknown"`` for the
disposition. ``started_at``, ``ended_at`` and ``source`` are always set, so the last
write's values win for those.

An IVR abandon (:class:`~cti.events.IvrAbandoned`: the caller hung up in the IVR, before
any queue) marks the call's row with the disposition ``ivr_abandon``, whatever order it
and the call's ``CallCompleted`` arrive in: it is written as a record of its own
(``source="ivr"``, times = the hang-up, no text) that creates the row if the call is not
written yet and otherwise changes only the disposition; once a row says ``ivr_abandon``
no later write changes that; a later ``CallCompleted`` still sets the times and source.

Text is cleaned (NUL and lone surrogates become U+FFFD) and cut to the column's limit
(caller names are attacker-controlled); a record whose Linkedid is empty or longer than
the column is refused at the door (logged, counted in :attr:`CallRecorder.rejected`).

Database errors (the worker's guarantees): the batch stays in hand and is retried with
exponential backoff for as long as it takes (a database that is down or not migrated yet
loses nothing; meanwhile the queue fills and later records are dropped loudly). An error
caused by the data itself (:func:`cti.store.db.is_data_error`) is retried a few times,
then the batch is written record by record and a record the database still refuses is
logged in full at ERROR level and counted in :attr:`CallRecorder.failed`.

A graceful stop (the daemon's, after AMI stopped and the closing calls were finalised)
drains the queue for a bounded time (:meth:`CallRecorder.close`'s ``grace_s``); the
records left then are kept in the store (cti.pending) and written first at the next
start: none is lost, and the CDR recovery at start (from the last call end recorded)
cannot skip them. The upsert is idempotent, so a record in hand at the stop may be
written twice harmlessly. If the store does not answer at the stop they are logged by
Linkedid, as before; the CDR recovery can only find those that ended after the last
call end recorded.

The read side for ``GET /api/v1/calls`` is :func:`list_calls` at the end of this module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, case, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import ColumnElement, Executable

from cti.bus import EventBus
from cti.events import CallCompleted, CallRecord, IvrAbandoned, SurveyAnswered
from cti.pending import PendingStore
from cti.phone import normalize
from cti.store.db import Database, is_data_error
from cti.store.models import BoundedText, Call, clean_text, clip_text, utcnow
from cti.worker import QueueWorker, WorkerMetrics

__all__ = ["IVR_ABANDON", "MAX_LIST_LIMIT", "CallRecorder", "call_to_dict", "list_calls"]

log = logging.getLogger(__name__)

CALLS: Table = cast(Table, Call.__table__)

#: Character limits of the text columns, read from the model.
TEXT_LIMITS: dict[str, int] = {
    col.name: col.type.length for col in CALLS.columns if isinstance(col.type, BoundedText)
}

# Text columns where a non-empty new value wins and "" keeps the stored one.
_MERGED_TEXT = (
    "caller_num_raw",
    "caller_num_e164",
    "caller_name",
    "dnis",
    "queue",
    "agent",
    "hangup_cause",
)
_MERGED_NULLABLE = ("answered_at", "wait_s", "talk_s", "survey_score")
#: satisfaction scores waiting for their call's record (the survey ends before the call)
_MAX_PENDING_SURVEYS = 10_000
_LAST_WINS = ("started_at", "ended_at", "source", "updated_at")
_EMPTY_DISPOSITIONS = ("", "unknown")
#: The disposition of a call whose caller hung up in the IVR, and its record's source.
IVR_ABANDON = "ivr_abandon"
IVR_SOURCE = "ivr"


def _upsert_statement(dialect: str) -> Executable:
    """INSERT ... ON CONFLICT (linkedid) DO UPDATE with the merge rule (module doc)."""
    if dialect == "postgresql":
        pg = pg_insert(CALLS)
        return pg.on_conflict_do_update(
            index_elements=[CALLS.c.linkedid], set_=_merge_set(pg.excluded)
        )
    if dialect == "sqlite":
        lite = sqlite_insert(CALLS)
        return lite.on_conflict_do_update(
            index_elements=[CALLS.c.linkedid], set_=_merge_set(lite.excluded)
        )
    raise ValueError(f"no upsert for database dialect {dialect!r}")


def _merge_set(excluded: Any) -> dict[str, ColumnElement[Any]]:
    set_: dict[str, ColumnElement[Any]] = {}
    for name in _MERGED_TEXT:
        set_[name] = case((excluded[name] != "", excluded[name]), else_=CALLS.c[name])
    known = and_(*(excluded.disposition != empty for empty in _EMPTY_DISPOSITIONS))
    set_["disposition"] = case(
        (CALLS.c.disposition == IVR_ABANDON, CALLS.c.disposition),
        (known, excluded.disposition),
        else_=CALLS.c.disposition,
    )
    for name in _MERGED_NULLABLE:
        set_[name] = func.coalesce(excluded[name], CALLS.c[name])
    ivr_mark = excluded.source == IVR_SOURCE  # an IVR abandon mark on a row: times stay
    for name in _LAST_WINS:
        if name == "updated_at":
            set_[name] = excluded[name]
        else:
            set_[name] = case((ivr_mark, CALLS.c[name]), else_=excluded[name])
    return set_


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _unique_runs(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split rows, in order, into runs without a repeated Linkedid (PostgreSQL refuses to
    upsert the same row twice in one statement; in order so the last write wins)."""
    runs: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        if row["linkedid"] in seen:
            runs.append(current)
            current, seen = [], set()
        current.append(row)
        seen.add(row["linkedid"])
    if current:
        runs.append(current)
    return runs


class CallRecorder:
    """Writes finished calls to the store. ``attach(bus)``, ``await start()``, and on
    shutdown ``await close()`` (flushes what is queued)."""

    def __init__(
        self,
        db: Database,
        *,
        default_region: str,
        queue_size: int = 10_000,
        batch_size: int = 200,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        data_error_attempts: int = 3,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._db = db
        self.default_region = default_region
        self._statement: Executable | None = None
        self._surveys: dict[str, int] = {}  # linkedid -> the caller's score (decision 0026)
        self._unsubscribe: Callable[[], None] | None = None
        self.worker: QueueWorker[CallRecord] = QueueWorker(
            "calls", self._upsert, queue_size=queue_size, batch_size=batch_size,
            retry_base_s=retry_base_s, retry_max_s=retry_max_s, permanent=is_data_error,
            permanent_attempts=data_error_attempts, describe=_describe_record,
            metrics=metrics, keep=PendingStore(db),
        )  # fmt: skip
        #: Records refused at the door (no usable Linkedid).
        self.rejected = 0

    # counters (the worker's)
    @property
    def enqueued(self) -> int:
        """Records accepted onto the queue."""
        return self.worker.enqueued

    @property
    def written(self) -> int:
        """Records written (inserted or merged)."""
        return self.worker.handled - self.worker.failed

    @property
    def dropped(self) -> int:
        """Records refused because the queue was full or the recorder closed."""
        return self.worker.dropped

    @property
    def failed(self) -> int:
        """Records the database refused even alone (logged in full)."""
        return self.worker.failed

    @property
    def errors(self) -> int:
        """Failed write attempts (each is logged; retried)."""
        return self.worker.errors

    @property
    def pending(self) -> int:
        """Records queued or being written."""
        return self.worker.pending

    # --- intake (synchronous, called from the bus) ----------------------------------

    def attach(self, bus: EventBus) -> None:
        """Subscribe to :class:`CallCompleted` on ``bus``."""
        if self._unsubscribe is not None:
            raise RuntimeError("CallRecorder is already attached to a bus")
        off_completed = bus.subscribe(CallCompleted, self._on_call_completed)
        off_ivr = bus.subscribe(IvrAbandoned, self._on_ivr_abandoned)
        off_survey = bus.subscribe(SurveyAnswered, self._on_survey)

        def unsubscribe() -> None:
            off_completed()
            off_ivr()
            off_survey()

        self._unsubscribe = unsubscribe

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_call_completed(self, event: CallCompleted) -> None:
        self.submit(event.record)

    def _on_survey(self, event: SurveyAnswered) -> None:
        """The caller's score arrives before the call ends: kept for its record."""
        if len(self._surveys) >= _MAX_PENDING_SURVEYS:
            self._surveys.pop(next(iter(self._surveys)))
        if 1 <= event.score <= 5:
            self._surveys[event.linkedid] = event.score

    def _on_ivr_abandoned(self, event: IvrAbandoned) -> None:
        self.submit(
            CallRecord(
                linkedid=event.linkedid,
                started_at=event.at,
                ended_at=event.at,
                disposition=IVR_ABANDON,
                source=IVR_SOURCE,
            )
        )

    def submit(self, record: CallRecord) -> bool:
        """Queue ``record`` for writing without waiting. False if it was refused."""
        linkedid = record.linkedid
        if not isinstance(linkedid, str) or not linkedid.strip():
            self.rejected += 1
            log.error("call record refused: empty linkedid (%r)", record)
            return False
        if len(linkedid) > TEXT_LIMITS["linkedid"]:
            self.rejected += 1
            log.error("call record refused: linkedid of %d characters", len(linkedid))
            return False
        return self.worker.submit(record)

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self.worker.resume()  # what the last stop left over, first
        self.worker.start()

    async def flush(self) -> None:
        """Wait until every record enqueued so far is written (or given up on)."""
        await self.worker.flush()

    async def close(self, grace_s: float | None = 30.0) -> None:
        """Stop taking records, write everything queued (waiting at most ``grace_s``
        seconds, None: as long as it takes; what is still unwritten then is logged by
        Linkedid), stop the worker. Idempotent."""
        self.detach()
        await self.worker.close(grace_s)

    # --- writing --------------------------------------------------------------------

    async def _upsert(self, batch: Sequence[CallRecord]) -> None:
        now = utcnow()
        rows = [self._row(record, now) for record in batch]
        if self._statement is None:
            self._statement = _upsert_statement(self._db.dialect)
        async with self._db.engine.begin() as conn:
            for run in _unique_runs(rows):
                await conn.execute(self._statement, run)

    def _row(self, record: CallRecord, now: datetime) -> dict[str, Any]:
        def text(name: str, value: str) -> str:
            return clip_text(value or "", TEXT_LIMITS[name])

        return {
            "linkedid": clean_text(record.linkedid),
            "caller_num_raw": text("caller_num_raw", record.caller_num),
            "caller_num_e164": normalize(record.caller_num, self.default_region),
            "caller_name": text("caller_name", record.caller_name),
            "dnis": text("dnis", record.dnis),
            "started_at": record.started_at,
            "answered_at": record.answered_at,
            "ended_at": record.ended_at,
            "queue": text("queue", record.queue),
            "agent": text("agent", record.agent),
            "wait_s": _finite(record.wait_s),
            "talk_s": _finite(record.talk_s),
            "disposition": text("disposition", record.disposition) or "unknown",
            "hangup_cause": text("hangup_cause", record.hangup_cause),
            "source": text("source", record.source) or "ami",
            "survey_score": self._surveys.pop(record.linkedid, None),
            "created_at": now,
            "updated_at": now,
        }


def _describe_record(record: CallRecord) -> str:
    return f"call {record.linkedid}"


# --- queries ----------------------------------------------------------------------------

#: Upper bound of :func:`list_calls`' ``limit``.
MAX_LIST_LIMIT = 1000


def call_to_dict(call: Call) -> dict[str, Any]:
    """A JSON-ready dict of a ``calls`` row (column names as keys, ISO 8601 times)."""
    out: dict[str, Any] = {}
    for col in CALLS.columns:
        value = getattr(call, col.key)
        out[col.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def list_calls(
    db: Database,
    *,
    limit: int = 100,
    since: datetime | None = None,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Calls newest first (by ``started_at``, then ``id``), as JSON-ready dicts.

    ``since``: only calls started at or after it. ``before_id``: the page after the call
    with that id (keyset pagination: pass the last ``id`` of the previous page; an
    unknown id gives an empty page). ``limit`` is clamped to 1..:data:`MAX_LIST_LIMIT`.
    """
    limit = max(1, min(int(limit), MAX_LIST_LIMIT))
    stmt = select(Call)
    if since is not None:
        stmt = stmt.where(Call.started_at >= since)
    async with db.session() as session:
        if before_id is not None:
            anchor = await session.scalar(select(Call.started_at).where(Call.id == before_id))
            if anchor is None:
                return []
            stmt = stmt.where(
                or_(
                    Call.started_at < anchor,
                    and_(Call.started_at == anchor, Call.id < before_id),
                )
            )
        stmt = stmt.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit)
        calls = (await session.scalars(stmt)).all()
    return [call_to_dict(c) for c in calls]
