"""Database access for recordings and their audit trail (SQLAlchemy 2 async)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import func, select

from cti.cluster.once import claim_once
from cti.store.db import Database, is_data_error
from cti.store.hot_read import Statement
from cti.store.hot_write import Write, WritePlan, detached, full_row
from cti.store.insert import insert_ignore, insert_ignore_on
from cti.store.models import Call, clip_text, utcnow
from recordings.models import Recording, RecordingAudit, RecordingNode
from recordings.naming import EXTENSIONS

__all__ = ["CLAIM_STALE_S", "PROCESSABLE", "RecordingFilter", "RecordingStore", "to_json"]

#: How long :meth:`RecordingStore.add` gathers rows before one transaction writes them,
#: and how many rows one transaction writes at most.
BATCH_WINDOW_S = 0.005
BATCH_MAX = 100

#: statuses whose file may still be processed (``missing``: a pull from the spool sidecar
#: that failed is tried again by reconcile)
PROCESSABLE = ("recording", "processing", "missing")
#: a processing claim older than this was left by a process that died: it may be taken
#: (waiting for MixMonitor, a transcoding backlog and an hour's WAV take minutes at most)
CLAIM_STALE_S = 900.0

# The CRM's interaction table, read (never written) for the disposition filter. It is a
# table, not an import: features never import each other (design.md §1).
_INTERACTIONS = sa.table(
    "crm_interactions", sa.column("linkedid", sa.String()), sa.column("disposition", sa.String())
)


_RECORDINGS = cast(sa.Table, Recording.__table__)
_ALL = tuple(c.key for c in _RECORDINGS.columns)
_COLUMNS = tuple(c.key for c in _RECORDINGS.columns if c.key != "id")
#: a recording row, every column given (what the ORM's flush wrote), its id and path back;
#: nothing when its file has a row already (one row per file: uq_recordings_path)
_ADD_ROW = Write(
    lambda dialect: insert_ignore_on(dialect, _RECORDINGS).returning(
        _RECORDINGS.c.id, _RECORDINGS.c.path
    ),
    _COLUMNS,
)
_ROW_OF = Statement(
    sa.select(*_RECORDINGS.columns).where(_RECORDINGS.c.id == sa.bindparam("row_id"))
)
_AUDIT = cast(sa.Table, RecordingAudit.__table__)
# The QA feature's evaluations, scored against a recording by id: re-pointed (never
# otherwise written) when a row is merged. A table, not an import (design.md §1).
_QA_EVALUATIONS = sa.table("qa_evaluations", sa.column("recording_id", sa.Integer()))


def _repoint(table: sa.TableClause) -> Write:
    """The rows of ``table`` that name recording ``row_id`` name ``into``."""
    return Write(
        sa.update(table)
        .where(table.c.recording_id == sa.bindparam("row_id"))
        .values(recording_id=sa.bindparam("into")),
        ("row_id", "into"),
    )


#: a second row of one file goes: what names it by id (its audit rows, the QA
#: evaluations; what recordings_0005's merge re-points) names the file's row
_REFERRERS_TO = (_repoint(_AUDIT), _repoint(_QA_EVALUATIONS))
_DELETE = Write(
    sa.delete(_RECORDINGS).where(_RECORDINGS.c.id == sa.bindparam("row_id")), ("row_id",)
)
_ROW_AT = Statement(
    sa.select(*_RECORDINGS.columns).where(_RECORDINGS.c.path == sa.bindparam("path"))
)
_CLAIM = Write(
    sa.update(_RECORDINGS)
    .where(
        _RECORDINGS.c.id == sa.bindparam("row_id"),
        sa.or_(*(_RECORDINGS.c.status == status for status in PROCESSABLE)),
        sa.or_(
            _RECORDINGS.c.claimed_at.is_(None),
            _RECORDINGS.c.claimed_at < sa.bindparam("stale_before"),
        ),
    )
    .values(claimed_at=sa.bindparam("now"), updated_at=sa.bindparam("now")),
    ("row_id", "stale_before", "now"),
)


@functools.lru_cache(maxsize=64)
def _update_of(keys: tuple[str, ...]) -> Write:
    """UPDATE of the columns ``keys`` of one row (``row_id``), the whole row back."""
    return Write(
        sa.update(_RECORDINGS)
        .where(_RECORDINGS.c.id == sa.bindparam("row_id"))
        .values({_RECORDINGS.c[k]: sa.bindparam(f"v_{k}") for k in keys})
        .returning(*_RECORDINGS.columns),
        ("row_id", *(f"v_{k}" for k in keys)),
    )


def _formats_of(path: str) -> list[str]:
    """``path`` and the same recording's name in the other formats."""
    stem, dot, ext = path.rpartition(".")
    if not dot or f".{ext}" not in EXTENSIONS.values():
        return [path]
    return [stem + suffix for suffix in EXTENSIONS.values()]


def _detached(row: Sequence[Any]) -> Recording:
    """The row as the detached object an ORM session returned (every column loaded)."""
    return detached(Recording, _ALL, row)


def _written(row_id: int, row: dict[str, Any]) -> Recording:
    """A row just inserted (every column of :func:`full_row`) and its new id, as the
    detached object an ORM session returned."""
    return detached(Recording, ("id", *row), (row_id, *row.values()))


def to_json(r: Recording) -> dict[str, Any]:
    return {
        "id": r.id, "linkedid": r.linkedid, "agent": r.agent, "queue": r.queue,
        "caller_num": r.caller_num, "customer_id": r.customer_id,
        "customer_name": r.customer_name, "mode": r.mode,
        "started_at": r.started_at.isoformat(),
        "ended_at": r.ended_at.isoformat() if r.ended_at else None,
        "duration_s": r.duration_s, "paused_s": r.paused_s, "size_bytes": r.size_bytes,
        "format": r.format, "checksum": r.checksum, "status": r.status, "reason": r.reason,
    }  # fmt: skip


@dataclass(frozen=True)
class RecordingFilter:
    since: datetime | None = None
    until: datetime | None = None
    queue: str = ""
    agent: str = ""
    customer: str = ""  # customer id (digits) or part of the name
    number: str = ""  # part of the caller's number
    disposition: str = ""
    linkedid: str = ""
    status: str = ""
    limit: int = 100
    before_id: int | None = None


class RecordingStore:
    """Recording rows and their audit trail.

    :meth:`add` is batched: rows added within ``BATCH_WINDOW_S`` of each other (a burst
    of answers) are inserted in one transaction by one writer task, up to ``BATCH_MAX``
    a transaction, each caller getting its own row back (with its id) as before. On
    PostgreSQL a transaction is several round trips the event loop drives; one per
    recording was a fifth of the loop in a 200-call burst (decision 0027). A database
    that is down or locked fails the batch's callers at once (each retries with its own
    backoff, ``Recorder._write``, as before); a row the database refuses for its values
    makes the batch's rows be tried alone, so it fails only its own caller."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._batch: list[tuple[dict[str, Any], asyncio.Future[Recording]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, **values: Any) -> Recording:
        for key in ("customer_name", "reason", "caller_num", "channel"):
            if isinstance(values.get(key), str):
                values[key] = clip_text(values[key], 64 if key == "caller_num" else 128)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Recording] = loop.create_future()
        self._batch.append((values, fut))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_batches(), name="recording-rows")
        return await fut

    async def close(self) -> None:
        """Wait for the rows already added to be written (the daemon's stop)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    async def _write_batches(self) -> None:
        await asyncio.sleep(BATCH_WINDOW_S)
        while self._batch:
            batch, self._batch = self._batch[:BATCH_MAX], self._batch[BATCH_MAX:]
            try:
                rows = await self._insert([v for v, _ in batch])
            except Exception as exc:
                if not is_data_error(exc) or len(batch) == 1:
                    # down or locked: every caller retries with its own backoff
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for values, fut in batch:  # alone: one bad row fails only itself
                    try:
                        (row,) = await self._insert([values])
                    except Exception as exc:
                        if not fut.done():
                            fut.set_exception(exc)
                    else:
                        if not fut.done():
                            fut.set_result(row)
                continue
            for (_, fut), row in zip(batch, rows, strict=True):
                if not fut.done():
                    fut.set_result(row)

    async def _insert(self, batch: list[dict[str, Any]]) -> list[Recording]:
        """The rows in one transaction (:meth:`Database.write`: Core, no ORM session),
        returned as the detached objects an ORM session gave: every column's value (the
        columns' defaults filled as the ORM filled them) and the new id. A row naming a
        file that has its row already (another node's, an adopted orphan's, an earlier
        one of the batch) is not written: its caller gets the file's row."""
        rows = [full_row(_RECORDINGS, values) for values in batch]

        def plan() -> WritePlan[list[Recording]]:
            got: list[list[tuple[Any, ...]]] = yield _ADD_ROW.many(rows)
            # the rows written, in order: a row not written returns none (on PostgreSQL
            # the list then has fewer entries than rows); a path is written at most once
            made = iter([each for rows_of in got for each in rows_of])
            out: list[Recording] = []
            written = next(made, None)
            for row in rows:
                if written is not None and (not row["path"] or written[1] == row["path"]):
                    out.append(_written(written[0], row))
                    written = next(made, None)
                    continue
                held: list[tuple[Any, ...]] = []
                if row["path"]:
                    held = yield _ROW_AT(path=row["path"])
                if not held:  # the conflicting row went meanwhile: the caller tries again
                    raise RuntimeError(f"recording row for {row['path']!r} not written")
                out.append(_detached(held[0]))
            return out

        return await self.db.write(plan)

    async def get(self, recording_id: int) -> Recording | None:
        """The row (on the writer path, as the processing that just wrote it reads it)."""

        def plan() -> WritePlan[Recording | None]:
            rows: list[tuple[Any, ...]] = yield _ROW_OF(row_id=recording_id)
            return _detached(rows[0]) if rows else None

        return await self.db.write(plan)

    async def update(self, recording_id: int, **values: Any) -> Recording | None:
        """Set these columns (and ``updated_at``) of the row; the row as it is then, None
        when there is none. One statement on the writer (``Database.write``: the stop's
        and the processing's updates are the call's hot path, decision 0027)."""
        if isinstance(values.get("reason"), str):
            values["reason"] = clip_text(values["reason"], 256)
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise TypeError(f"recordings: no column {sorted(unknown)}")
        values["updated_at"] = utcnow()
        keys = tuple(sorted(values))
        change = _update_of(keys)
        params = {"row_id": recording_id, **{f"v_{k}": values[k] for k in keys}}

        def plan() -> WritePlan[Recording | None]:
            rows: list[tuple[Any, ...]] = yield change(**params)
            return _detached(rows[0]) if rows else None

        return await self.db.write(plan)

    async def claim(self, recording_id: int, *, stale_s: float = CLAIM_STALE_S) -> bool:
        """Take the right to process this recording's file: True for one caller at a time
        in the store (live side, reconcile, CLI, another node), until the result is
        written with ``claimed_at=None`` or the claim is ``stale_s`` old."""
        now = utcnow()
        stale_before = now - timedelta(seconds=stale_s)

        def plan() -> WritePlan[int]:
            count: int = yield _CLAIM(row_id=recording_id, stale_before=stale_before, now=now)
            return count

        return bool(await self.db.write(plan))

    async def announce(self, node: str, url: str) -> None:
        """Where the other nodes reach ``node`` (one writer per node name)."""
        async with self.db.session() as s:
            row = await s.get(RecordingNode, node)
            if row is None:
                s.add(RecordingNode(node=node, url=url, updated_at=utcnow()))
            elif row.url != url:
                row.url = url
            await s.commit()

    async def node_url(self, node: str) -> str:
        """How to reach ``node`` ("" when it never said)."""
        async with self.db.session() as s:
            row = await s.get(RecordingNode, node)
            return "" if row is None else row.url

    async def by_linkedid(self, linkedid: str) -> list[Recording]:
        async with self.db.session() as s:
            q = select(Recording).where(Recording.linkedid == linkedid).order_by(Recording.id)
            return list((await s.scalars(q)).all())

    async def with_status(self, *statuses: str) -> list[Recording]:
        async with self.db.session() as s:
            q = select(Recording).where(Recording.status.in_(statuses)).order_by(Recording.id)
            return list((await s.scalars(q)).all())

    async def expired(
        self, queue_cutoffs: dict[str, datetime], default: datetime
    ) -> list[Recording]:
        """Rows with a file whose retention has run out (per queue, else ``default``)."""
        conds = [
            sa.and_(Recording.queue == q, Recording.started_at < c)
            for q, c in queue_cutoffs.items()
        ]
        conds.append(
            sa.and_(Recording.queue.not_in(list(queue_cutoffs)), Recording.started_at < default)
        )
        async with self.db.session() as s:
            q = select(Recording).where(
                Recording.status.in_(("ready", "processing", "missing")), sa.or_(*conds)
            )
            return list((await s.scalars(q)).all())

    async def referenced_paths(self) -> dict[str, str]:
        """The path of every row that has a file, with the row's status."""
        async with self.db.session() as s:
            q = select(Recording.path, Recording.status).where(
                Recording.path != "", Recording.status != "deleted"
            )
            return {path: status for path, status in (await s.execute(q)).all()}

    async def call_of_file(self, name_id: str, started: datetime) -> Call | None:
        """The call whose Linkedid a recording's name carries (``name_id``: the Linkedid
        with dots as ``_``, recordings.naming.safe_id) and that started within a day of
        the name's time: None when the store has no such call."""
        day = timedelta(days=1)
        q = (
            select(Call)
            .where(
                func.replace(Call.linkedid, ".", "_") == name_id,
                Call.started_at >= started - day, Call.started_at <= started + day,
            )
            .order_by(Call.id.desc())
            .limit(1)
        )  # fmt: skip
        async with self.db.session() as s:
            return (await s.scalars(q)).first()

    async def adopt(self, **values: Any) -> Recording | None:
        """A row for a file no row named (``values["path"]``), made once in the store:
        None when another reconcile (this node's, another node's) adopted it already, or
        a row names it (in any format) by now: the live side's, written since the
        caller looked (one row per file, decision 0033)."""
        path = values["path"]
        row = full_row(_RECORDINGS, values)
        async with self.db.session() as s, s.begin():
            if not await claim_once(s, "recording_file", path):
                return None
            named = select(Recording.id).where(Recording.path.in_(_formats_of(path)))
            if await s.scalar(named.limit(1)) is not None:
                return None
            ins = insert_ignore(s, _RECORDINGS).values(row).returning(_RECORDINGS.c.id)
            row_id = await s.scalar(ins)
        if row_id is None:  # written meanwhile (the index's guard)
            return None
        return _written(row_id, row)

    async def merge(self, row_id: int, *, into: int) -> None:
        """Row ``row_id`` named the file of row ``into``: what named it (its audit rows,
        the QA evaluations scored against it) names ``into``, and it goes (one row per
        file, decision 0033), in one transaction."""

        def plan() -> WritePlan[None]:
            for repoint in _REFERRERS_TO:
                yield repoint(row_id=row_id, into=into)
            yield _DELETE(row_id=row_id)

        await self.db.write(plan)

    async def at_path(self, path: str) -> Recording | None:
        """The row of the file at ``path`` (one at most: uq_recordings_path)."""

        def plan() -> WritePlan[Recording | None]:
            rows: list[tuple[Any, ...]] = yield _ROW_AT(path=path)
            return _detached(rows[0]) if rows else None

        return await self.db.write(plan)

    async def answered_without_row(self, since: datetime, until: datetime) -> list[Call]:
        """Answered calls (with an agent) that ended in [since, until) and have no row."""
        has_row = select(Recording.id).where(Recording.linkedid == Call.linkedid).exists()
        async with self.db.session() as s:
            q = (
                select(Call)
                .where(
                    Call.answered_at.is_not(None), Call.agent != "", Call.ended_at >= since,
                    Call.ended_at < until, ~has_row,
                )
                .order_by(Call.id)
            )  # fmt: skip
            return list((await s.scalars(q)).all())

    async def search(self, f: RecordingFilter) -> list[Recording]:
        q = select(Recording)
        if f.since is not None:
            q = q.where(Recording.started_at >= f.since)
        if f.until is not None:
            q = q.where(Recording.started_at < f.until)
        if f.queue:
            q = q.where(Recording.queue == f.queue)
        if f.agent:
            q = q.where(Recording.agent == f.agent)
        if f.linkedid:
            q = q.where(Recording.linkedid == f.linkedid)
        if f.status:
            q = q.where(Recording.status == f.status)
        if f.number:
            q = q.where(Recording.caller_num.contains(f.number, autoescape=True))
        if f.customer:
            # an id: ASCII digits that fit the column ('²' is a digit to str.isdigit)
            if f.customer.isascii() and f.customer.isdigit() and len(f.customer) <= 18:
                q = q.where(Recording.customer_id == int(f.customer))
            else:
                pattern = f.customer.lower()
                q = q.where(func.lower(Recording.customer_name).contains(pattern, autoescape=True))
        if f.disposition:
            with_disp = select(_INTERACTIONS.c.linkedid).where(
                _INTERACTIONS.c.disposition == f.disposition
            )
            q = q.where(Recording.linkedid.in_(with_disp))
        if f.before_id is not None:
            q = q.where(Recording.id < f.before_id)
        q = q.order_by(Recording.id.desc()).limit(f.limit)
        async with self.db.session() as s:
            return list((await s.scalars(q)).all())

    async def audit(
        self, actor: str, role: str, action: str, *, recording_id: int | None = None,
        linkedid: str = "", detail: str = "",
    ) -> None:  # fmt: skip
        async with self.db.session() as s:
            s.add(
                RecordingAudit(
                    at=utcnow(), actor=clip_text(actor, 128), role=role, action=action,
                    recording_id=recording_id, linkedid=clip_text(linkedid, 64),
                    detail=clip_text(detail, 256),
                )
            )  # fmt: skip
            await s.commit()

    async def audit_log(
        self, *, recording_id: int | None = None, actor: str = "", limit: int = 200
    ) -> list[dict[str, Any]]:
        q = select(RecordingAudit)
        if recording_id is not None:
            q = q.where(RecordingAudit.recording_id == recording_id)
        if actor:
            q = q.where(RecordingAudit.actor == actor)
        q = q.order_by(RecordingAudit.id.desc()).limit(limit)
        async with self.db.session() as s:
            rows = (await s.scalars(q)).all()
        return [
            {
                "id": a.id, "at": a.at.isoformat(), "actor": a.actor, "role": a.role,
                "action": a.action, "recording_id": a.recording_id, "linkedid": a.linkedid,
                "detail": a.detail,
            }
            for a in rows
        ]  # fmt: skip
