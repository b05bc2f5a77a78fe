"""``cti records backfill``: put back into the store's tables what Asterisk kept only in its
files while PostgreSQL was unreachable (decision 0029).

Neither of Asterisk's modules buffers a row it could not write: the realtime queue_log
line and cdr_pgsql's CDR of that time are in the files on Asterisk's host only. Run on
that host (it reads the files: ``asterisk.log_dir``), this inserts, for one server, the
queue_log lines and CDRs of the files since a time that the tables lack; what is there
already is left alone, so running it twice inserts nothing more. Nodes pick the lines up
on their next statistics tail (new ids; lines keyed by hash as always).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert

from cti.calls.recovery import CdrRow
from cti.queue_log import RawLine
from cti.records.files import FileRecords
from cti.records.postgres import CDR, QUEUE_LOG, PgRecords
from cti.store.db import Database

__all__ = ["BackfillResult", "backfill", "missing_cdrs", "missing_lines"]

#: the file's second and the row's may differ by one (time(NULL) read after the row's)
SLACK_S = 1.0


@dataclass(frozen=True, slots=True)
class BackfillResult:
    lines: int
    cdrs: int


def _line_key(r: RawLine) -> tuple[str, str, str, str, tuple[str, ...]]:
    data = list(r.data)
    while data and not data[-1]:  # the adaptive columns do not keep trailing empty fields
        data.pop()
    return (r.callid, r.queue, r.agent, r.event, tuple(data))


def missing_lines(files: Iterable[RawLine], table: Iterable[RawLine]) -> list[RawLine]:
    """The file's lines with no table row of the same content within a second (each row
    answers for one line)."""
    there: dict[tuple[str, str, str, str, tuple[str, ...]], list[datetime]] = defaultdict(list)
    for r in table:
        there[_line_key(r)].append(r.at)
    out: list[RawLine] = []
    for line in files:
        times = there.get(_line_key(line), [])
        match = next((t for t in times if abs((t - line.at).total_seconds()) <= SLACK_S), None)
        if match is None:
            out.append(line)
        else:
            times.remove(match)
    return out


def _cdr_key(r: CdrRow) -> tuple[str, str, float]:
    start = round(r.start.timestamp(), 3) if r.start else 0.0
    return (r.linkedid, r.uniqueid, start)


def missing_cdrs(files: Iterable[CdrRow], table: Iterable[CdrRow]) -> list[CdrRow]:
    """The file's CDRs with no table row of the same Linkedid, Uniqueid and start."""
    there: dict[tuple[str, str, float], int] = defaultdict(int)
    for r in table:
        there[_cdr_key(r)] += 1
    out: list[CdrRow] = []
    for r in files:
        key = _cdr_key(r)
        if there[key]:
            there[key] -= 1
        else:
            out.append(r)
    return out


def _epoch(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


async def backfill(
    files: FileRecords, db: Database, server: str, since: datetime
) -> BackfillResult:
    """Insert the files' lines and CDRs since ``since`` that ``server``'s rows lack."""
    table = PgRecords(db, server)
    lines = [
        ln for ln in await files.queue_log_since(since) if ln.at >= since
    ]  # the readers' margin reads before ``since``: compare from ``since`` on
    lines = missing_lines(lines, await table.queue_log_since(since))
    cdrs = [r for r in await files.cdr_since(since) if r.end and r.end >= since]
    cdrs = missing_cdrs(cdrs, await table.cdr_since(since))
    async with db.session() as session, session.begin():
        if lines:
            await session.execute(
                insert(QUEUE_LOG),
                [
                    {"server": server, "time": ln.at.astimezone(UTC).replace(tzinfo=None),
                     "callid": ln.callid, "queuename": ln.queue, "agent": ln.agent,
                     "event": ln.event, "data": "|".join(ln.data)}
                    for ln in lines
                ],
            )  # fmt: skip
        if cdrs:
            await session.execute(
                insert(CDR),
                [
                    {"server": server, "linkedid": r.linkedid, "uniqueid": r.uniqueid,
                     "start": _epoch(r.start), "answer": _epoch(r.answer) or 0.0,
                     "end": _epoch(r.end), "src": r.src, "dst": r.dst, "dcontext": r.dcontext,
                     "clid": r.clid, "channel": r.channel, "dstchannel": r.dstchannel,
                     "lastapp": r.lastapp, "disposition": r.disposition,
                     "userfield": r.userfield, "cti_outcome": r.outcome}
                    for r in cdrs
                ],
            )  # fmt: skip
    return BackfillResult(len(lines), len(cdrs))
