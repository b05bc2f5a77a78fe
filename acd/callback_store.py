"""Store access for callback requests (:class:`acd.models.CallbackRow`).

Every state change goes through :func:`update` with the statuses it may start from, so
two writers (an AMI event and an agent's REST call) cannot both move one request.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy import update as sa_update

from acd.models import CallbackRow
from cti.store.db import Database
from cti.store.models import clip_text

__all__ = [
    "FINISHED",
    "OPEN",
    "create",
    "get",
    "list_callbacks",
    "reached_since",
    "update",
    "view",
    "with_status",
]

OPEN = ("waiting", "queued", "dialing", "unreached")
FINISHED = ("done",)


def view(r: CallbackRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "number": r.number,
        "caller_name": r.caller_name,
        "queue": r.queue,
        "source": r.source,
        "requested_at": r.requested_at.isoformat(),
        "status": r.status,
        "attempts": r.attempts,
        "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
        "position": r.position,
        "linkedid": r.linkedid,
        "agent": r.agent,
        "call_linkedid": r.call_linkedid,
        "outcome": r.outcome,
        "reached_at": r.reached_at.isoformat() if r.reached_at else None,
        "closed_at": r.closed_at.isoformat() if r.closed_at else None,
    }


async def create(
    db: Database,
    *,
    number: str,
    caller_key: str,
    caller_name: str,
    queue: str,
    source: str,
    at: datetime,
    linkedid: str,
    position: int,
) -> dict[str, Any]:
    async with db.session() as s, s.begin():
        row = CallbackRow(
            number=clip_text(number, 32), caller_key=clip_text(caller_key, 64),
            caller_name=clip_text(caller_name, 128), queue=clip_text(queue, 64),
            source=source, requested_at=at, status="waiting", attempts=0,
            next_attempt_at=at, position=max(0, position), linkedid=clip_text(linkedid, 64),
            agent="", call_linkedid="", outcome="", updated_at=at,
        )  # fmt: skip
        s.add(row)
        await s.flush()
        return view(row)


async def get(db: Database, callback_id: int) -> dict[str, Any] | None:
    async with db.session() as s:
        row = await s.get(CallbackRow, callback_id)
        return None if row is None else view(row)


async def update(db: Database, callback_id: int, from_status: Iterable[str], **values: Any) -> bool:
    """Set ``values`` if the request is in one of ``from_status``; False otherwise."""
    async with db.session() as s, s.begin():
        result = await s.execute(
            sa_update(CallbackRow)
            .where(CallbackRow.id == callback_id, CallbackRow.status.in_(list(from_status)))
            .values(**values)
        )
        return bool(getattr(result, "rowcount", 0))


async def with_status(db: Database, statuses: Iterable[str]) -> list[dict[str, Any]]:
    async with db.session() as s:
        rows = await s.execute(
            select(CallbackRow)
            .where(CallbackRow.status.in_(list(statuses)))
            .order_by(CallbackRow.requested_at, CallbackRow.id)
        )
        return [view(r) for r in rows.scalars()]


async def list_callbacks(
    db: Database, *, status: str, queues: Iterable[str] | None, agent: str, limit: int
) -> list[dict[str, Any]]:
    """``status``: open | done | all. ``queues`` None: every queue; else only requests of
    those queues or assigned to ``agent``."""
    q = select(CallbackRow).order_by(CallbackRow.requested_at.desc(), CallbackRow.id.desc())
    if status == "open":
        q = q.where(CallbackRow.status.in_(OPEN))
    elif status == "done":
        q = q.where(CallbackRow.status.in_(FINISHED))
    if queues is not None:
        q = q.where(CallbackRow.queue.in_(list(queues)) | (CallbackRow.agent == agent))
    async with db.session() as s:
        rows = await s.execute(q.limit(limit))
        return [view(r) for r in rows.scalars()]


async def reached_since(db: Database, caller_key: str, since: datetime) -> str:
    """The call linkedid of a callback to ``caller_key`` reached at or after ``since``."""
    async with db.session() as s:
        row = (
            await s.execute(
                select(CallbackRow.call_linkedid)
                .where(
                    CallbackRow.caller_key == caller_key,
                    CallbackRow.reached_at.is_not(None),
                    CallbackRow.reached_at >= since,
                )
                .limit(1)
            )
        ).first()
        return "" if row is None else str(row[0])
