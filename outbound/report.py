"""A campaign's report from its attempts (pure): by day, hour (site time zone), agent,
list or Asterisk server (a cluster dials a campaign on every server with its agents);
attempts, contacts (an agent took the call), conversions (sale or interested),
dropped calls, the abandon rate (dropped / answered by a person), talk and wait time."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cti.spreadsheet import cell

__all__ = ["COLUMNS", "campaign_report", "report_csv"]

CONVERSIONS = ("sale", "interested")
COLUMNS = ("attempts", "dialled", "answered", "contacts", "conversions", "abandoned",
           "abandon_rate", "busy", "no_answer", "failed", "machine", "refused",
           "talk_s", "wait_s")  # fmt: skip


def _key(attempt: dict[str, Any], by: str, tz: ZoneInfo, lists: dict[int, str]) -> str:
    if by == "agent":
        return str(attempt["agent"] or "")
    if by == "server":
        return str(attempt.get("server") or "")
    if by == "list":
        return lists.get(attempt["list_id"], str(attempt["list_id"]))
    started = datetime.fromisoformat(attempt["started_at"]).astimezone(tz)
    return started.strftime("%Y-%m-%d" if by == "day" else "%Y-%m-%d %H:00")


def _empty() -> dict[str, Any]:
    return {c: 0 for c in COLUMNS} | {"abandon_rate": 0.0, "talk_s": 0.0, "wait_s": 0.0}


def _add(row: dict[str, Any], a: dict[str, Any]) -> None:
    outcome = a["outcome"]
    row["attempts"] += 1
    if outcome not in ("refused", "not_dialled"):  # the customer's number was dialled
        row["dialled"] += 1
    if outcome in ("answered", "abandoned"):  # by a person (not a machine)
        row["answered"] += 1
    if a.get("connected_at"):
        row["contacts"] += 1
    if a.get("disposition") in CONVERSIONS:
        row["conversions"] += 1
    if outcome in ("abandoned", "busy", "no_answer", "failed", "machine", "refused"):
        row[outcome] += 1
    elif outcome == "congestion":
        row["failed"] += 1
    row["talk_s"] += float(a.get("talk_s") or 0.0)
    row["wait_s"] += float(a.get("wait_s") or 0.0)


def _close(row: dict[str, Any]) -> dict[str, Any]:
    row["abandon_rate"] = round(row["abandoned"] / row["answered"], 4) if row["answered"] else 0.0
    row["talk_s"] = round(row["talk_s"], 1)
    row["wait_s"] = round(row["wait_s"], 1)
    return row


def campaign_report(
    attempts: list[dict[str, Any]], by: str, timezone: str, lists: dict[int, str]
) -> dict[str, Any]:
    """Finished attempts only (an attempt in progress has no outcome yet)."""
    tz = ZoneInfo(timezone)
    groups: dict[str, dict[str, Any]] = {}
    total = _empty()
    for a in attempts:
        if not a["outcome"]:
            continue
        key = _key(a, by, tz, lists)
        _add(groups.setdefault(key, _empty()), a)
        _add(total, a)
    rows = [{by: key, **_close(row)} for key, row in sorted(groups.items())]
    return {"by": by, "rows": rows, "total": _close(total)}


def report_csv(report: dict[str, Any], by: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([by, *COLUMNS])
    for row in report["rows"]:
        w.writerow([cell(row[by]), *(cell(row[c]) for c in COLUMNS)])
    w.writerow(["total", *(cell(report["total"][c]) for c in COLUMNS)])
    return buf.getvalue()
