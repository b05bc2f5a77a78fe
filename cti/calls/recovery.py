"""Recover calls that ended while the AMI connection (or the daemon) was down.

AMI replays nothing after a reconnect. What happened meanwhile is read back from Asterisk's
own records: the CDR CSV written by ``cdr_custom`` (dialplans/cdr_custom.conf: one line per
CDR with the Linkedid) gives each call's boundaries, caller and DNIS; ``queue_log`` gives
its queue facts (queue, agent, wait, talk, outcome), joined to the call through the CDR's
Uniqueid. Pure functions over lines, plus two small readers the daemon runs in a thread.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cti.calls.model import Call
from cti.events import CallRecord

CDR_COLUMNS = (
    "linkedid", "uniqueid", "start", "answer", "end", "src", "dst", "dcontext", "clid",
    "channel", "dstchannel", "lastapp", "disposition", "duration", "billsec", "userfield",
)  # fmt: skip
_CLID = re.compile(r'^\s*"?(?P<name>.*?)"?\s*<(?P<num>[^>]*)>\s*$')


@dataclass(frozen=True, slots=True)
class CdrRow:
    linkedid: str
    uniqueid: str
    start: datetime | None
    answer: datetime | None
    end: datetime | None
    src: str
    dst: str
    dcontext: str
    clid: str
    channel: str
    dstchannel: str
    lastapp: str
    disposition: str
    userfield: str


@dataclass(frozen=True, slots=True)
class QueueLogLine:
    at: datetime
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def _ts(value: str) -> datetime | None:
    try:
        f = float(value)
    except ValueError:
        return None
    return datetime.fromtimestamp(f, UTC) if f > 0 else None


def parse_cdr(text: str) -> list[CdrRow]:
    rows: list[CdrRow] = []
    for fields in csv.reader(io.StringIO(text)):
        if len(fields) < len(CDR_COLUMNS) - 1:
            continue  # a torn or foreign line: skip it, never fail recovery
        v = dict(zip(CDR_COLUMNS, fields, strict=False))
        rows.append(
            CdrRow(
                linkedid=v["linkedid"], uniqueid=v["uniqueid"], start=_ts(v["start"]),
                answer=_ts(v["answer"]), end=_ts(v["end"]), src=v["src"], dst=v["dst"],
                dcontext=v["dcontext"], clid=v["clid"], channel=v["channel"],
                dstchannel=v["dstchannel"], lastapp=v["lastapp"],
                disposition=v["disposition"], userfield=v.get("userfield", ""),
            )
        )  # fmt: skip
    return rows


def parse_queue_log(text: str) -> list[QueueLogLine]:
    out: list[QueueLogLine] = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5:
            continue
        at = _ts(parts[0])
        if at is None:
            continue
        out.append(QueueLogLine(at, parts[1], parts[2], parts[3], parts[4], tuple(parts[5:])))
    return out


def read_text(path: Path) -> str:
    """A log file's text (blocking: the daemon runs it in a thread). Missing file -> ""."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class _Facts:
    rows: list[CdrRow] = field(default_factory=list)
    qlog: list[QueueLogLine] = field(default_factory=list)


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def recover(
    *,
    ended: Iterable[Call],
    cdr: Iterable[CdrRow],
    queue_log: Iterable[QueueLogLine],
    since: datetime,
    fallback_end: datetime,
    skip: set[str] | frozenset[str] = frozenset(),
) -> list[CallRecord]:
    """Records for calls that ended at or after ``since``.

    ``ended``: calls the live model had in progress that were gone at resync; they are
    always returned (completed with CDR/queue_log facts where found, else ended at
    ``fallback_end``, e.g. Asterisk was killed and wrote no CDR). Calls found only in the
    CDR (started and ended while we were away) are returned unless in ``skip``.
    """
    facts: dict[str, _Facts] = defaultdict(_Facts)
    uid_to_linkedid: dict[str, str] = {}
    for row in cdr:
        facts[row.linkedid].rows.append(row)
        uid_to_linkedid[row.uniqueid] = row.linkedid
    for line in queue_log:
        linkedid = uid_to_linkedid.get(line.callid)
        if linkedid:
            facts[linkedid].qlog.append(line)

    out: list[CallRecord] = []
    partial = {c.linkedid: c for c in ended}
    for linkedid, call in partial.items():
        base = call.to_record(call.closing_since or fallback_end, source="resync")
        f = facts.get(linkedid)
        out.append(_apply(base, f) if f else base)
    for linkedid, f in facts.items():
        if linkedid in partial or linkedid in skip or not f.rows:
            continue
        ends = [r.end for r in f.rows if r.end]
        if not ends or max(ends) < since:
            continue
        starts = [r.start for r in f.rows if r.start] or ends
        base = CallRecord(linkedid=linkedid, started_at=min(starts), ended_at=max(ends))
        out.append(_apply(base, f))
    return out


def _apply(rec: CallRecord, f: _Facts) -> CallRecord:
    rows = sorted(f.rows, key=lambda r: r.start or datetime.min.replace(tzinfo=UTC))
    if rows:
        origin = next((r for r in rows if r.uniqueid == r.linkedid), rows[0])
        ends = [r.end for r in rows if r.end]
        starts = [r.start for r in rows if r.start]
        m = _CLID.match(origin.clid)
        rec = replace(
            rec,
            started_at=min([*starts, rec.started_at]),
            ended_at=max(ends) if ends else rec.ended_at,
            caller_num=rec.caller_num or origin.src,
            caller_name=rec.caller_name or (m.group("name") if m else ""),
            dnis=rec.dnis or next((r.userfield for r in rows if r.userfield), ""),
            source="cdr",
        )
    disposition = rec.disposition
    for line in sorted(f.qlog, key=lambda q: q.at):
        d = line.data
        if line.event == "ENTERQUEUE":
            rec = replace(rec, queue=line.queue)
        elif line.event == "CONNECT":
            rec = replace(
                rec,
                queue=line.queue,
                agent=line.agent,
                answered_at=line.at,
                wait_s=_float(d[0]) if d else rec.wait_s,
            )
            disposition = "answered"
        elif line.event in ("COMPLETEAGENT", "COMPLETECALLER"):
            rec = replace(rec, talk_s=_float(d[1]) if len(d) > 1 else rec.talk_s)
            disposition = "answered"
        elif line.event == "ABANDON":
            rec = replace(rec, queue=line.queue, wait_s=_float(d[2]) if len(d) > 2 else None)
            disposition = "abandoned"
        elif line.event in ("EXITWITHTIMEOUT", "EXITWITHKEY", "EXITEMPTY"):
            rec = replace(rec, queue=line.queue, wait_s=_float(d[2]) if len(d) > 2 else None)
            disposition = "timeout"
    if disposition in ("unknown", "no_answer", "ivr_abandon") and not f.qlog:
        bridged = any(r.dstchannel and r.disposition == "ANSWERED" for r in rows)
        if bridged:
            disposition = "answered"
        elif rec.dnis:
            disposition = "ivr_abandon"
    return replace(rec, disposition=disposition)
