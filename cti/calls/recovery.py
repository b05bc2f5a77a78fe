"""Complete calls from Asterisk's own records when the AMI stream cannot.

AMI replays nothing after a reconnect. Calls that ended while the AMI connection (or the
daemon) was down, and calls whose events had a gap (adopted after a daemon restart, in
progress across an outage) are completed from what Asterisk wrote itself:

- the CDR CSV of ``cdr_custom`` (dialplans/cdr_custom.conf: one line per CDR with the
  Linkedid, the DNIS in ``userfield`` and the dialplan's outcome mark ``cti_outcome``)
  gives each call's boundaries, caller and DNIS;
- ``queue_log`` gives its queue facts, joined to the call through the CDR's Uniqueids and
  read with the one queue_log parser and entry derivation the statistics use
  (:mod:`cti.queue_log`), so a recovered row says what the live path would have said.

Pure functions over lines, the file readers (blocking, run in a thread; they read a file
from its end back to the window asked for, not the whole history) and :class:`Recovery`,
which the daemon calls. Where the records come from (these files, or the store's tables
Asterisk writes in a cluster) is a :class:`cti.records.RecordSource`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cti.calls.model import OUTCOME_DISPOSITION, Call
from cti.events import CallRecord
from cti.queue_log import RawLine, derive_entries, parse_line

if TYPE_CHECKING:
    from cti.records import RecordSource

__all__ = ["CdrRow", "Recovery", "cdr_row", "parse_cdr", "read_since", "recover"]

CDR_COLUMNS = (
    "linkedid", "uniqueid", "start", "answer", "end", "src", "dst", "dcontext", "clid",
    "channel", "dstchannel", "lastapp", "disposition", "duration", "billsec", "userfield",
    "outcome",
)  # fmt: skip
_CLID = re.compile(r'^\s*"?(?P<name>.*?)"?\s*<(?P<num>[^>]*)>\s*$')
#: Lines are appended roughly in time order (a CDR line at the call's end): read this much
#: further back than asked, so a slightly out-of-order line is not missed.
READ_MARGIN = timedelta(hours=1)
BLOCK = 1 << 20


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
    outcome: str = ""  # the dialplan's CDR(cti_outcome): "callback" for an IVR callback


def _ts(value: str) -> datetime | None:
    try:
        f = float(value)
    except ValueError:
        return None
    return datetime.fromtimestamp(f, UTC) if f > 0 else None


def cdr_row(v: Mapping[str, str]) -> CdrRow:
    """One CDR from its fields by :data:`CDR_COLUMNS` name (times: epoch seconds), as the
    CSV line or the ``asterisk_cdr`` row (cti.records) gives them."""
    return CdrRow(
        linkedid=v["linkedid"], uniqueid=v["uniqueid"], start=_ts(v["start"]),
        answer=_ts(v["answer"]), end=_ts(v["end"]), src=v["src"], dst=v["dst"],
        dcontext=v["dcontext"], clid=v["clid"], channel=v["channel"],
        dstchannel=v["dstchannel"], lastapp=v["lastapp"], disposition=v["disposition"],
        userfield=v.get("userfield", ""), outcome=v.get("outcome", ""),
    )  # fmt: skip


def parse_cdr(text: str) -> list[CdrRow]:
    rows: list[CdrRow] = []
    for fields in csv.reader(io.StringIO(text)):
        if len(fields) < len(CDR_COLUMNS) - 2:
            continue  # a torn or foreign line: skip it, never fail recovery
        rows.append(cdr_row(dict(zip(CDR_COLUMNS, fields, strict=False))))
    return rows


# --- reading (blocking) -------------------------------------------------------------------


def _cdr_end(line: str) -> float | None:
    try:
        fields = next(csv.reader([line]))
        return float(fields[4])
    except (StopIteration, IndexError, ValueError, csv.Error):
        return None


def _qlog_time(line: str) -> float | None:
    try:
        return float(line.split("|", 1)[0])
    except ValueError:
        return None


def _siblings(path: Path) -> list[Path]:
    """Rotated, uncompressed siblings (``queue_log.1``, ``cti-cdr.csv-20261123``), newest
    first."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found = []
    for name in names:
        if name == path.name or not name.startswith(path.name):
            continue
        if name.endswith((".gz", ".bz2", ".xz", ".zst")):
            continue
        try:
            found.append((os.stat(path.parent / name).st_mtime, path.parent / name))
        except OSError:
            continue
    return [p for _, p in sorted(found, reverse=True)]


def _read_back(
    path: Path, cutoff: float, time_of: Callable[[str], float | None], block: int = BLOCK
) -> list[str]:
    """Complete lines of ``path`` from the last block holding a line older than ``cutoff``
    to the end ([] for a missing file)."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return []
    with fh:
        size = fh.seek(0, os.SEEK_END)
        end = size
        data = b""
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            data = fh.read(end - start) + data
            end = start
            head = data.split(b"\n", 1)
            if start > 0 and len(head) == 2:
                older = _older_line_in(head[1], cutoff, time_of)
                if older:
                    data = head[1]
                    break
        if not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]  # a line being written: not yet
    return data.decode("utf-8", "replace").splitlines()


def _older_line_in(data: bytes, cutoff: float, time_of: Callable[[str], float | None]) -> bool:
    for raw in data.split(b"\n", 8):
        t = time_of(raw.decode("utf-8", "replace"))
        if t is not None:
            return t < cutoff
    return False


def read_since(
    path: Path,
    since: datetime,
    time_of: Callable[[str], float | None],
    *,
    max_files: int = 4,
    block: int = BLOCK,
) -> list[str]:
    """The lines of ``path`` written since ``since`` (and some before it), reading back from
    the end, into rotated siblings when the file itself starts later than ``since``."""
    cutoff = (since - READ_MARGIN).timestamp()
    out: list[str] = []
    for f in [path, *_siblings(path)][:max_files]:
        lines = _read_back(f, cutoff, time_of, block)
        out = lines + out
        first = next((t for t in map(time_of, lines) if t is not None), None)
        if first is not None and first < cutoff:
            break
    return out


def read_cdr(path: Path, since: datetime) -> list[CdrRow]:
    return parse_cdr("\n".join(read_since(path, since, _cdr_end)))


def read_queue_log(path: Path, since: datetime) -> list[RawLine]:
    return [r for r in map(parse_line, read_since(path, since, _qlog_time)) if r is not None]


# --- recovery (pure) ----------------------------------------------------------------------


@dataclass
class _Facts:
    rows: list[CdrRow] = field(default_factory=list)
    qlog: list[RawLine] = field(default_factory=list)


def recover(
    *,
    ended: Iterable[Call],
    cdr: Iterable[CdrRow],
    queue_log: Iterable[RawLine],
    since: datetime,
    fallback_end: datetime,
    skip: set[str] | frozenset[str] = frozenset(),
) -> list[CallRecord]:
    """Records for calls that ended at or after ``since``.

    ``ended``: calls the live model had (ended while we were away, or with a gap); they
    are always returned, completed with CDR/queue_log facts where found, else ended at
    their last hang-up or ``fallback_end`` (e.g. Asterisk was killed and wrote no CDR).
    Calls found only in the CDR (started and ended while we were away) are returned unless
    in ``skip``.
    """
    facts: dict[str, _Facts] = defaultdict(_Facts)
    uid_to_linkedid: dict[str, str] = {}
    for row in cdr:
        facts[row.linkedid].rows.append(row)
        uid_to_linkedid[row.uniqueid] = row.linkedid
    partial = {c.linkedid: c for c in ended}
    for call in partial.values():  # legs the CDR may not list (killed Asterisk)
        for uid in call.legs:
            uid_to_linkedid.setdefault(uid, call.linkedid)
    for line in queue_log:
        linkedid = uid_to_linkedid.get(line.callid)
        if linkedid:
            facts[linkedid].qlog.append(line)

    out: list[CallRecord] = []
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
    entries = sorted(derive_entries(f.qlog), key=lambda e: e.entered_at)
    answered = [e for e in entries if e.outcome == "answered"]
    if answered:
        a = answered[0]
        return replace(
            rec, queue=a.queue, agent=a.agent or rec.agent,
            answered_at=a.answered_at or rec.answered_at, wait_s=a.wait_s,
            talk_s=a.talk_s if a.talk_s is not None else rec.talk_s, disposition="answered",
        )  # fmt: skip
    if entries:
        last = entries[-1]
        if last.outcome in OUTCOME_DISPOSITION:
            return replace(
                rec, queue=last.queue, wait_s=last.wait_s,
                disposition=OUTCOME_DISPOSITION[last.outcome],
            )  # fmt: skip
        # still "waiting" when the records end (Asterisk died): nobody answered
        keep = rec.disposition not in ("unknown", "ivr_abandon")
        return replace(rec, queue=last.queue, disposition=rec.disposition if keep else "no_answer")
    if any(r.outcome == "callback" for r in rows):
        return replace(rec, disposition="callback")
    if rec.disposition in ("unknown", "no_answer", "ivr_abandon"):
        dialled = [r for r in rows if r.dstchannel and r.disposition == "ANSWERED"]
        if dialled:  # answered by a Dial, not a queue (an agent-first campaign call)
            at = rec.answered_at or min((r.answer for r in dialled if r.answer), default=None)
            return replace(rec, disposition="answered", answered_at=at)
        if rec.dnis:
            return replace(rec, disposition="ivr_abandon")
    return rec


# --- the daemon's side --------------------------------------------------------------------


class Recovery:
    """Reads the server's CDR and queue_log for a window (from its files or from the
    store's tables: :mod:`cti.records`) and completes calls."""

    def __init__(self, source: RecordSource) -> None:
        self.source = source

    async def run(
        self,
        *,
        ended: list[Call],
        since: datetime,
        fallback_end: datetime,
        known: Callable[[str], bool],
    ) -> list[CallRecord]:
        """Records of ``ended`` and of calls that ended since ``since`` which the live
        model does not know (``known``)."""
        early = min([since, *(c.started_at for c in ended)])
        cdr = await self.source.cdr_since(early)
        # queue facts of these calls may lie before ``since``: from their first start on
        starts = [r.start for r in cdr if r.start and r.end and r.end >= since]
        qlog = await self.source.queue_log_since(min([early, *starts]))
        return recover(
            ended=ended, cdr=cdr, queue_log=qlog, since=since, fallback_end=fallback_end,
            skip={r.linkedid for r in cdr if known(r.linkedid)},
        )  # fmt: skip
