"""Asterisk's queue_log, as data: parse lines, derive one row per queue entry. Pure.

A line is ``epoch|callid|queue|agent|EVENT|data1|data2|…`` (callid = the caller channel's
Uniqueid). What each event's data means (Asterisk 22, apps/app_queue.c):

====================  ================================================  ===============
event                 data                                              outcome
====================  ================================================  ===============
ENTERQUEUE            url|callerid                                      (entry starts)
RINGNOANSWER          ring ms                                           (missed by agent)
CONNECT               holdtime|bridged uniqueid|ringtime                answered
COMPLETEAGENT/CALLER  holdtime|calltime|origposition                    (handled)
BLINDTRANSFER         extension|context|holdtime|calltime|origposition  (handled)
ATTENDEDTRANSFER      method|…|holdtime|calltime|origposition           (handled)
ABANDON               position|origposition|waittime                    abandoned
EXITWITHTIMEOUT       position|origposition|waittime                    timeout
EXITWITHKEY           key|position|origposition|waittime                exit_key
EXITEMPTY             position|origposition|waittime                    exit_empty
FULL/JOINEMPTY/       (none)                                            refused
JOINUNAVAIL
WRAPUPEND             seconds|how it ended                              (after-call work)
SURVEY                score (1-5)                                       (satisfaction)
====================  ================================================  ===============

``WRAPUPEND`` and ``SURVEY`` are not app_queue's: the ACD writes the first (AMI QueueLog)
when an agent's enforced after-call work of that entry ends (acd.wrapup), the quality
feature the second when the caller scored the call (decision 0026).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["DerivedEntry", "RawLine", "derive_entries", "line_key", "parse_line"]

REFUSED_EVENTS = frozenset({"FULL", "JOINEMPTY", "JOINUNAVAIL"})
WRAPUP_EVENT = "WRAPUPEND"
SURVEY_EVENT = "SURVEY"
COMPLETE_EVENTS = frozenset({"COMPLETEAGENT", "COMPLETECALLER"})
TRANSFER_EVENTS = frozenset({"TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"})
# within one second several lines of one call share a timestamp: apply them in call order
_RANK = {"ENTERQUEUE": 0, "RINGNOANSWER": 1, "RINGCANCELED": 1, "CONNECT": 2}


@dataclass(frozen=True, slots=True)
class RawLine:
    key: str  # hash of the line: re-reading the file never stores a line twice
    at: datetime
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def line_key(line: str) -> str:
    return hashlib.blake2b(line.encode("utf-8", "replace"), digest_size=20).hexdigest()


def parse_line(line: str) -> RawLine | None:
    """One queue_log line, or None for anything torn or foreign (never fails)."""
    line = line.rstrip("\r\n")
    parts = line.split("|")
    if len(parts) < 5 or not parts[4]:
        return None
    try:
        ts = float(parts[0])
    except ValueError:
        return None
    if not 0 < ts < 1e11:
        return None
    return RawLine(
        line_key(line), datetime.fromtimestamp(ts, UTC), parts[1][:64], parts[2][:64],
        parts[3][:128], parts[4][:32], tuple(p[:256] for p in parts[5:]),
    )  # fmt: skip


def _num(data: tuple[str, ...], index: int) -> float | None:
    try:
        return float(data[index])
    except (IndexError, ValueError):
        return None


@dataclass(slots=True)
class DerivedEntry:
    callid: str
    queue: str
    entered_at: datetime
    outcome: str = "waiting"
    wait_s: float = 0.0
    talk_s: float | None = None
    completed: bool = False
    agent: str = ""
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    ringnoanswer: int = 0
    missed_by: list[str] = field(default_factory=list)
    wrapup_s: float | None = None  # measured after-call work (WRAPUPEND), if any
    survey_score: int | None = None  # the caller's satisfaction score (SURVEY), if any
    caller: str = ""  # ENTERQUEUE's caller ID number (as the dialplan filtered it)


def derive_entries(lines: Iterable[RawLine]) -> list[DerivedEntry]:
    """Queue entries of the given lines (any number of calls, any order).

    Lines of an entry whose ENTERQUEUE is not among them (it lies before a rebuild's
    ``--since``) are ignored: that entry belongs to an earlier hour.
    """
    by_call: dict[str, list[RawLine]] = {}
    for ln in lines:
        by_call.setdefault(ln.callid, []).append(ln)
    out: list[DerivedEntry] = []
    for callid, rows in by_call.items():
        rows.sort(key=lambda r: (r.at, _RANK.get(r.event, 3)))
        current: dict[str, DerivedEntry] = {}
        latest: dict[str, DerivedEntry] = {}  # ended or not: wrap-up comes after the end
        for r in rows:
            if r.event == "ENTERQUEUE":
                e = current[r.queue] = latest[r.queue] = DerivedEntry(callid, r.queue, r.at)
                e.caller = r.data[1][:32] if len(r.data) > 1 else ""
                out.append(e)
                continue
            if r.event == WRAPUP_EVENT:
                done = latest.get(r.queue)
                seconds = _num(r.data, 0)
                if done is not None and seconds is not None and 0 <= seconds < 86400:
                    done.wrapup_s = (done.wrapup_s or 0.0) + seconds
                continue
            if r.event == SURVEY_EVENT:
                done = latest.get(r.queue)
                score = r.data[0] if r.data else ""
                if done is not None and score in ("1", "2", "3", "4", "5"):
                    done.survey_score = int(score)
                continue
            if r.event in REFUSED_EVENTS:
                out.append(DerivedEntry(callid, r.queue, r.at, "refused", ended_at=r.at))
                continue
            e2 = current.get(r.queue)
            if e2 is None:
                continue
            _apply(e2, r)
            if e2.ended_at is not None:
                del current[r.queue]
    return out


def _apply(e: DerivedEntry, r: RawLine) -> None:
    d = r.data
    ev = r.event
    if ev == "RINGNOANSWER":
        e.ringnoanswer += 1
        if r.agent:
            e.missed_by.append(r.agent)
    elif ev == "CONNECT":
        e.outcome = "answered"
        e.wait_s = _num(d, 0) or 0.0
        e.agent = r.agent
        e.answered_at = r.at
    elif ev in COMPLETE_EVENTS:
        e.outcome = "answered"
        e.completed = True
        e.talk_s = _num(d, 1)
        if e.answered_at is None:
            e.wait_s = _num(d, 0) or 0.0
            e.agent = r.agent
        e.ended_at = r.at
    elif ev in TRANSFER_EVENTS:
        e.outcome = "answered"
        e.completed = True
        e.talk_s = _num(d, len(d) - 2) if len(d) >= 2 else None
        e.ended_at = r.at
    elif ev == "ABANDON":
        e.outcome, e.wait_s, e.ended_at = "abandoned", _num(d, 2) or 0.0, r.at
    elif ev == "EXITWITHTIMEOUT":
        e.outcome, e.wait_s, e.ended_at = "timeout", _num(d, 2) or 0.0, r.at
    elif ev == "EXITWITHKEY":
        e.outcome, e.wait_s, e.ended_at = "exit_key", _num(d, 3) or 0.0, r.at
    elif ev == "EXITEMPTY":
        e.outcome, e.wait_s, e.ended_at = "exit_empty", _num(d, 2) or 0.0, r.at
