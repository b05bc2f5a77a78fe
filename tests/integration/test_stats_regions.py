"""The report by caller region (号码归属地, decision 0026) on SQLite and PostgreSQL: the
caller number ENTERQUEUE logged, read through cti.phone.region, grouped; figures equal a
direct count over the same queue_log lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cti.records.files import FileRecords
from cti.store.db import Database
from stats import reports
from stats.service import StatsService
from stats.settings import StatsSettings

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
CALLERS = {  # callid -> (caller ID as logged, answered?)
    "r1": ("13800138000", True),  # Beijing mobile
    "r2": ("13800138000", False),
    "r3": ("02161234567", True),  # Shanghai landline
    "r4": ("anonymous", False),  # no number: region unknown
    "r5": ("+12025550123", True),  # Washington, D.C.
}


def lines() -> list[str]:
    out = []
    for i, (callid, (number, answered)) in enumerate(CALLERS.items()):
        t = int((T0 + timedelta(minutes=i)).timestamp())
        out.append(f"{t}|{callid}|support|NONE|ENTERQUEUE||{number}|1")
        if answered:
            out += [f"{t + 5}|{callid}|support|a1|CONNECT|5|x|1",
                    f"{t + 65}|{callid}|support|a1|COMPLETEAGENT|5|60|1"]  # fmt: skip
        else:
            out.append(f"{t + 9}|{callid}|support|NONE|ABANDON|1|1|9")
    return out


async def test_figures_by_caller_region(db: Database, tmp_path: Path) -> None:
    (tmp_path / "queue_log").write_text("\n".join(lines()) + "\n")
    svc = StatsService(db, TZ, FileRecords.in_log_dir(tmp_path), StatsSettings())
    await svc.tail()
    day = T0.astimezone(TZ).date()
    rows = await reports.region_report(db, day, day + timedelta(days=1), TZ, {}, "CN")
    got = {r["region"]: (r["region_en"], r["offered"], r["answered"], r["abandoned"]) for r in rows}
    assert got == {
        "北京市": ("Beijing", 2, 1, 1),
        "上海市": ("Shanghai", 1, 1, 0),
        "美国": ("Washington D.C.", 1, 1, 0),  # phonenumbers has only the country in zh
        "": ("", 1, 0, 1),
    }, got
    assert rows[0]["region"] == "北京市"  # most offered first
    assert sum(r["offered"] for r in rows) == len(CALLERS)
