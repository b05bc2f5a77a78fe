"""The audit log: every change (who, when, from where, what, before -> after) and every
sign-in and failed sign-in, written through one function, :meth:`AuditLog.record`.

Features record their changes with :func:`cti.web.auth.audit` (which takes the actor and
address from the request). Snapshots are JSON; secrets (password hashes, TOTP secrets,
token hashes) are never put in them — :func:`redact` drops them by name. The admin API
reads and exports it (CSV with formula neutralising).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from cti.principal import Principal
from cti.spreadsheet import cell
from cti.store.db import Database
from cti.store.models import AuditEntry, clip_text, utcnow

__all__ = ["AuditFilter", "AuditLog", "redact", "to_csv"]

SECRET_FIELDS = frozenset(
    {"password", "password_hash", "totp_secret", "token", "token_hash", "secret"}
)
_MAX_SNAPSHOT = 16 * 1024


def redact(snapshot: Any) -> Any:
    """``snapshot`` without secret fields (recursively), bounded in size."""
    if isinstance(snapshot, Mapping):
        return {
            str(k): ("***" if str(k) in SECRET_FIELDS else redact(v)) for k, v in snapshot.items()
        }
    if isinstance(snapshot, list | tuple | set | frozenset):
        return [redact(v) for v in snapshot]
    if isinstance(snapshot, datetime):
        return snapshot.isoformat()
    if snapshot is None or isinstance(snapshot, bool | int | float | str):
        return snapshot
    return str(snapshot)


def _bounded(snapshot: Any) -> Any:
    if snapshot is None:
        return None
    clean = redact(snapshot)
    text = json.dumps(clean, ensure_ascii=False, default=str)
    if len(text) > _MAX_SNAPSHOT:
        return {"truncated": text[:_MAX_SNAPSHOT]}
    return clean


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor: str = ""
    action: str = ""  # exact, or a prefix ending in "." ("user." = every user change)
    target_type: str = ""
    target_id: str = ""
    before_id: int | None = None
    limit: int = 200


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        action: str,
        *,
        actor: Principal | str | None,
        address: str = "",
        target_type: str = "",
        target_id: str | int = "",
        before: Any = None,
        after: Any = None,
        detail: str = "",
    ) -> None:
        """Write one entry (its own transaction: an audit row is never lost with a
        rolled-back change that is retried, nor does it roll one back)."""
        if isinstance(actor, Principal):
            who, role = actor.actor, actor.role
        else:
            who, role = (actor or ""), ""
        entry = AuditEntry(
            at=utcnow(),
            actor=clip_text(who, 128),
            actor_role=role,
            address=clip_text(address, 64),
            action=clip_text(action, 64),
            target_type=clip_text(target_type, 32),
            target_id=clip_text(str(target_id), 128),
            before=_bounded(before),
            after=_bounded(after),
            detail=clip_text(detail, 2000),
        )
        async with self.db.session() as session, session.begin():
            session.add(entry)

    async def query(self, f: AuditFilter) -> list[dict[str, Any]]:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(f.limit)
        if f.since is not None:
            q = q.where(AuditEntry.at >= f.since)
        if f.until is not None:
            q = q.where(AuditEntry.at < f.until)
        if f.actor:
            q = q.where(AuditEntry.actor == f.actor)
        if f.action.endswith("."):
            q = q.where(AuditEntry.action.startswith(f.action, autoescape=True))
        elif f.action:
            q = q.where(AuditEntry.action == f.action)
        if f.target_type:
            q = q.where(AuditEntry.target_type == f.target_type)
        if f.target_id:
            q = q.where(AuditEntry.target_id == f.target_id)
        if f.before_id is not None:
            q = q.where(AuditEntry.id < f.before_id)
        async with self.db.session() as session:
            rows = (await session.scalars(q)).all()
        return [to_json(r) for r in rows]

    async def count_since(
        self, action: str, since: datetime, *, actor: str | None = None, address: str | None = None
    ) -> tuple[int, datetime | None]:
        """How many ``action`` entries since ``since`` for that actor or address, and the
        oldest of them (for Retry-After)."""
        q = select(func.count(), func.min(AuditEntry.at)).where(
            AuditEntry.action == action, AuditEntry.at >= since
        )
        if actor is not None:
            q = q.where(AuditEntry.actor == actor)
        if address is not None:
            q = q.where(AuditEntry.address == address)
        async with self.db.session() as session:
            n, oldest = (await session.execute(q)).one()
        return int(n), oldest

    async def last(self, action: str, *, actor: str) -> datetime | None:
        q = select(func.max(AuditEntry.at)).where(
            AuditEntry.action == action, AuditEntry.actor == actor
        )
        async with self.db.session() as session:
            return (await session.execute(q)).scalar_one_or_none()


def to_json(r: AuditEntry) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at.isoformat(),
        "actor": r.actor,
        "actor_role": r.actor_role,
        "address": r.address,
        "action": r.action,
        "target_type": r.target_type,
        "target_id": r.target_id,
        "before": r.before,
        "after": r.after,
        "detail": r.detail,
    }


_CSV_COLUMNS = ("id", "at", "actor", "actor_role", "address", "action", "target_type",
                "target_id", "before", "after", "detail")  # fmt: skip


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The entries as CSV, every text cell formula-neutralised (:mod:`cti.spreadsheet`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(_CSV_COLUMNS)
    for r in rows:
        w.writerow([cell(r.get(c)) for c in _CSV_COLUMNS])
    return buf.getvalue()
