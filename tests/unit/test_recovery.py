"""Recovery rebuilds the row the live path would have written, from Asterisk's records:
the CDR file (boundaries, caller, DNIS, the dialplan's outcome mark) and queue_log (read
with the same parser and entry derivation as the statistics)."""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.calls.model import CallModel
from cti.calls.recovery import _cdr_end, parse_cdr, read_since, recover
from cti.events import CallRecord
from cti.queue_log import parse_line

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def at(s: float) -> float:
    return (T0 + timedelta(seconds=s)).timestamp()


def cdr_line(linkedid: str, uniqueid: str, start: float, end: float, **kw: str) -> str:
    v = {
        "linkedid": linkedid, "uniqueid": uniqueid, "start": f"{at(start):.6f}",
        "answer": f"{at(start):.6f}", "end": f"{at(end):.6f}", "src": "13800138000",
        "dst": "4008001234", "dcontext": "cti-inbound", "clid": '"Zhang" <13800138000>',
        "channel": "PJSIP/trunk-1", "dstchannel": "", "lastapp": "Queue",
        "disposition": "ANSWERED", "duration": "1", "billsec": "1", "userfield": "4008001234",
        "outcome": "", **kw,
    }  # fmt: skip
    out = io.StringIO()
    csv.writer(out).writerow(v.values())
    return out.getvalue().strip()


def qlog(callid: str, *lines: tuple[float, str, str, str]) -> list[str]:
    return [f"{int(at(t))}|{callid}|support|{agent}|{ev}|{data}" for t, agent, ev, data in lines]


def one(cdr: list[str], queue_log: list[str]) -> CallRecord:
    (rec,) = recover(
        ended=[], cdr=parse_cdr("\n".join(cdr)),
        queue_log=[r for r in map(parse_line, queue_log) if r is not None],
        since=T0, fallback_end=T0,
    )  # fmt: skip
    return rec


def test_exit_with_key_wait_is_the_waittime_column_and_a_callback() -> None:
    rec = one(
        [cdr_line("L1", "L1", 0, 30)],
        qlog("L1", (1, "NONE", "ENTERQUEUE", "|13800138000|1"),
             (7, "NONE", "EXITWITHKEY", "1|2|1|6")),
    )  # fmt: skip
    assert (rec.disposition, rec.queue, rec.wait_s) == ("callback", "support", 6.0)


def test_timeout_empty_and_abandon_are_what_queue_log_says() -> None:
    for event, data, disposition in (
        ("EXITWITHTIMEOUT", "1|1|30", "timeout"),
        ("EXITEMPTY", "1|1|30", "exit_empty"),
        ("ABANDON", "1|1|30", "abandoned"),
    ):
        rec = one(
            [cdr_line("L1", "L1", 0, 40)],
            qlog("L1", (1, "NONE", "ENTERQUEUE", "|1|1"), (31, "NONE", event, data)),
        )
        assert (rec.disposition, rec.wait_s) == (disposition, 30.0), event


def test_answered_call_has_agent_answer_time_wait_and_talk() -> None:
    rec = one(
        [cdr_line("L1", "L1", 0, 50), cdr_line("L1", "L1.2", 0.1, 50)],
        qlog("L1.2", (1, "NONE", "ENTERQUEUE", "|1|1"), (5, "agent101", "CONNECT", "4|M1|2"),
             (45, "agent101", "COMPLETECALLER", "4|40|1")),
    )  # fmt: skip
    assert (rec.disposition, rec.agent, rec.wait_s, rec.talk_s) == ("answered", "agent101", 4, 40)
    assert rec.answered_at == datetime.fromtimestamp(int(at(5)), UTC)
    assert rec.started_at == T0 and rec.ended_at == T0 + timedelta(seconds=50)
    assert (rec.caller_num, rec.caller_name, rec.dnis) == ("13800138000", "Zhang", "4008001234")


def test_an_ivr_callback_marked_in_the_cdr_is_a_callback() -> None:
    rec = one([cdr_line("L1", "L1", 0, 20, lastapp="Hangup", outcome="callback")], [])
    assert rec.disposition == "callback"
    rec = one([cdr_line("L2", "L2", 0, 20, lastapp="AGI")], [])
    assert rec.disposition == "ivr_abandon"


def test_a_call_answered_by_a_dial_is_answered_when_that_dial_was() -> None:
    """An agent-first campaign call: the agent's channel (answered first) dialled the
    customer, no queue; the customer's answer is the Dial's (its CDR's answer)."""
    agent_leg = cdr_line("cti-camp-1", "cti-camp-1", 0, 30, channel="Local/3231@sim-1;1",
                         dstchannel="PJSIP/carrier-7", lastapp="Dial", userfield="",
                         answer=f"{at(6):.6f}")  # fmt: skip
    rec = one([agent_leg], [])
    assert rec.disposition == "answered" and rec.agent == ""
    assert rec.answered_at == T0 + timedelta(seconds=6)
    unanswered = cdr_line("cti-camp-2", "cti-camp-2", 0, 30, dstchannel="PJSIP/carrier-8",
                          lastapp="Dial", disposition="NO ANSWER", userfield="")  # fmt: skip
    rec = one([unanswered], [])
    assert rec.disposition != "answered" and rec.answered_at is None


def test_a_call_adopted_after_a_restart_gets_its_facts_from_the_records() -> None:
    """The daemon restarted mid-call: it saw the call only from its snapshot."""
    model = CallModel()
    snap = [{"Uniqueid": "L1", "Linkedid": "L1", "Channel": "PJSIP/trunk-1",
             "Duration": "00:00:20"}]  # fmt: skip
    model.resync(snap, T0 + timedelta(seconds=20.9), T0 + timedelta(seconds=20.9))
    call = model.calls.pop("L1")
    (rec,) = recover(
        ended=[call],
        cdr=parse_cdr(cdr_line("L1", "L1", 0.3, 60)),
        queue_log=[
            r for r in map(parse_line, qlog(
                "L1", (1, "NONE", "ENTERQUEUE", "|1|1"), (9, "agent7", "CONNECT", "8|M|1"),
                (59, "agent7", "COMPLETEAGENT", "8|50|1"),
            )) if r is not None
        ],
        since=T0, fallback_end=T0 + timedelta(seconds=70),
    )  # fmt: skip
    assert rec.started_at == T0 + timedelta(seconds=0.3)  # the CDR's, not Duration's
    assert (rec.disposition, rec.queue, rec.agent, rec.wait_s, rec.talk_s) == (
        "answered", "support", "agent7", 8, 50,
    )  # fmt: skip
    assert rec.ended_at == T0 + timedelta(seconds=60) and rec.source == "cdr"


def test_read_since_reads_back_only_the_window_and_into_the_rotated_file(
    tmp_path: Path,
) -> None:
    old = tmp_path / "cti-cdr.csv.1"
    cur = tmp_path / "cti-cdr.csv"
    day = 86400.0
    old.write_text("\n".join(cdr_line(f"o{i}", f"o{i}", -2 * day + i, -2 * day + i + 1)
                             for i in range(3)) + "\n")  # fmt: skip
    lines = [cdr_line(f"c{i}", f"c{i}", -day + i * 60, -day + i * 60 + 30) for i in range(3000)]
    cur.write_text("\n".join(lines) + "\npartial,line-being-wri")
    os.utime(old, (at(-2 * day), at(-2 * day)))
    got = read_since(cur, T0 - timedelta(hours=2), _cdr_end, block=4096)
    ends = [_cdr_end(x) for x in got]
    assert all(e is not None for e in ends)
    assert got[-1] == lines[-1]  # the torn last line is not read
    assert len(got) < len(lines)  # not the whole file
    window = [x for x in lines if (_cdr_end(x) or 0) >= at(-2 * 3600)]
    assert got[-len(window) :] == window
    # a window older than the file's first line goes on into the rotated file
    got = read_since(cur, T0 - timedelta(days=3), _cdr_end, block=4096)
    assert got[0].startswith("o0,") and got[-1] == lines[-1]
