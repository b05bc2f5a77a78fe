"""Recordings: one row per recording file (decision 0033, "two rows naming one file").

Two systems adopting the same MixMonitor file each made a row of their own (both nodes
of one server in a lease overlap, a reconcile adopting a file a live row already names):
the second row ended ``missing`` beside the first's ``ready`` one. A unique index on
``recordings.path`` (rows with a file; ``""`` is the path of rows without one) now makes
the second writer find the first's row.

Rows already duplicated are merged first, per recording: the rows whose paths are one
recording's name in any format (``X.wav``, ``X.mp3``, ``X.ogg``: the second row's WAV
beside the first's mp3 is the case seen) keep the one that says most about the file
(ready, processing, recording, deleted, empty, missing, failed, not_recorded; the older
on ties). The others are deleted: what they knew of the call that the kept row lacks
(uniqueid, channel, agent, queue, caller, customer, end) is copied onto it, and the
audit rows (and QA evaluations) that named them name the kept row (the same file; who
did what when is left as it was). Downgrade drops the index; merged rows are
not brought back.

Revision ID: recordings_0005
Revises: recordings_0004
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "recordings_0005"
down_revision: str | Sequence[str] | None = "recordings_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

#: which of one file's rows is kept: the one that says most about the file
RANK = ("ready", "processing", "recording", "deleted", "empty", "missing", "failed", "not_recorded")
#: what a row may know of its call, "" when not
_TEXT_FACTS = ("uniqueid", "channel", "agent", "queue", "caller_num", "customer_name")
#: ... and None when not
_NULL_FACTS = ("customer_id", "ended_at")

_RECORDINGS = sa.table(
    "recordings",
    *(sa.column(c) for c in ("id", "path", "status", "created_at", *_TEXT_FACTS, *_NULL_FACTS)),
)
#: the tables whose rows name a recording by id: its audit trail, and the QA feature's
#: evaluations (scored against a recording; a table by name, as the store reads the CRM's)
_REFERRERS = ("recording_audit", "qa_evaluations")
_HAS_FILE = sa.text("path <> ''")


def _stem(path: Any) -> Any:
    """The recording a path names, whatever its format (the extension off)."""
    formats = sa.or_(path.like("%.wav"), path.like("%.mp3"), path.like("%.ogg"))
    return sa.case((formats, sa.func.substr(path, 1, sa.func.length(path) - 4)), else_=path)


def _rank(row: Any) -> tuple[int, Any, int]:
    status = RANK.index(row.status) if row.status in RANK else len(RANK)
    return (status, row.created_at, row.id)


def merge_duplicates(conn: sa.Connection) -> int:
    """Merge the rows of each recording named by more than one row; how many went."""
    r = _RECORDINGS.c
    stem = _stem(r.path)
    shared = (
        sa.select(stem.label("stem"))
        .where(r.path != "")
        .group_by(sa.text("stem"))
        .having(sa.func.count() > 1)
        .subquery()
    )
    rows = conn.execute(
        sa.select(*_RECORDINGS.c, stem.label("stem"))
        .where(r.path != "", stem.in_(sa.select(shared.c.stem)))
        .order_by(r.id)
    ).all()
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(row.stem, []).append(row)
    tables = sa.inspect(conn)
    referrers = [
        sa.table(name, sa.column("recording_id")) for name in _REFERRERS if tables.has_table(name)
    ]
    merged = 0
    for group in groups.values():
        kept, *others = sorted(group, key=_rank)
        known: dict[str, Any] = {}
        for fact in (*_TEXT_FACTS, *_NULL_FACTS):
            if getattr(kept, fact) in ("", None):
                found = [getattr(o, fact) for o in others if getattr(o, fact) not in ("", None)]
                if found:
                    known[fact] = found[0]
        if known:
            conn.execute(sa.update(_RECORDINGS).where(r.id == kept.id).values(known))
        gone = [o.id for o in others]
        for referrer in referrers:
            conn.execute(
                sa.update(referrer)
                .where(referrer.c.recording_id.in_(gone))
                .values(recording_id=kept.id)
            )
        conn.execute(sa.delete(_RECORDINGS).where(r.id.in_(gone)))
        log.info("recordings %s merged into %s (one file: %s)", gone, kept.id, kept.path)
        merged += len(gone)
    return merged


def upgrade() -> None:
    merge_duplicates(op.get_bind())
    op.create_index(
        "uq_recordings_path", "recordings", ["path"], unique=True,
        sqlite_where=_HAS_FILE, postgresql_where=_HAS_FILE,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("uq_recordings_path", table_name="recordings")
