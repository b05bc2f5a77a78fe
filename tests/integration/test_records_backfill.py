"""``cti records backfill`` (decision 0029): run where an Asterisk server's files are, it
inserts into the store's tables the queue_log lines and CDRs the files have and the
tables lack (written while PostgreSQL was unreachable for Asterisk), once; the tables
then read as the files do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from cti.calls.recovery import CdrRow
from cti.queue_log import parse_line
from cti.records.files import FileRecords
from cti.records.postgres import CDR, QUEUE_LOG, PgRecords
from cti.store.db import Database
from tests.conftest import _pg_url
from tests.integration.test_cli import cti_here

pytestmark = pytest.mark.postgres

T0 = 1795960800  # 2026-11-29 14:00:00 UTC
LINES = [
    f"{T0}|pbx-1.0|q1|NONE|ENTERQUEUE||13900000001|1",
    f"{T0 + 3}|pbx-1.0|q1|Local/3401@agents|CONNECT|3|pbx-1.2|1",
    f"{T0 + 40}|pbx-1.0|q1|Local/3401@agents|COMPLETECALLER|3|37|1",
]
CDRS = [  # linkedid,uniqueid,start,answer,end,src,dst,dcontext,clid,channel,dstchannel,
    # lastapp,disposition,duration,billsec,userfield,cti_outcome
    f'"pbx-1.0","pbx-1.0","{T0 - 2}.250000","{T0 - 2}.260000","{T0 + 40}.500000",'
    '"13900000001","s","cti-inbound","""x"" <13900000001>","Local/a;1","","Queue",'
    '"ANSWERED","42","42","4008001234",""',
    f'"pbx-1.0","pbx-1.2","{T0 + 2}.100000","{T0 + 3}.000000","{T0 + 40}.400000",'
    '"13900000001","3401","agents","""x"" <13900000001>","Local/b;2","","Hangup",'
    '"ANSWERED","38","37","",""',
]


@pytest.fixture
async def pg_url(_pg_databases: Any) -> AsyncIterator[str]:
    name = await asyncio.to_thread(_pg_databases.take, True)
    try:
        yield _pg_url(name)
    finally:
        _pg_databases.to_drop.put(name)


def config(tmp_path: Path, url: str, records: str = "postgresql") -> str:
    (tmp_path / "log" / "cdr-custom").mkdir(parents=True, exist_ok=True)
    (tmp_path / "log" / "queue_log").write_text("".join(ln + "\n" for ln in LINES))
    (tmp_path / "log" / "cdr-custom" / "cti-cdr.csv").write_text("\n".join(CDRS) + "\n")
    conf = tmp_path / "pbx1.toml"
    conf.write_text(
        f'[database]\nurl = "{url}"\n'
        f'[asterisk]\ninstance = "pbx1"\nrecords = "{records}"\nlog_dir = "{tmp_path / "log"}"\n'
    )
    return str(conf)


async def test_backfill_puts_back_what_the_tables_lack_once(pg_url: str, tmp_path: Path) -> None:
    conf = config(tmp_path, pg_url)
    db = Database.from_url(pg_url)
    try:
        # what Asterisk wrote before PostgreSQL went away: the first line and the first
        # CDR, and a row of another server (not this one's to fill or to count)
        async with db.session() as s, s.begin():
            await s.execute(insert(QUEUE_LOG).values(
                server="pbx1", time=datetime.fromtimestamp(T0, UTC).replace(tzinfo=None),
                callid="pbx-1.0", queuename="q1", agent="NONE", event="ENTERQUEUE",
                data1="", data2="13900000001", data3="1",
            ))  # fmt: skip
            await s.execute(insert(CDR).values(
                server="pbx1", linkedid="pbx-1.0", uniqueid="pbx-1.0", start=T0 - 2 + 0.25,
                answer=T0 - 2 + 0.26, end=T0 + 40.5, src="13900000001", dst="s",
            ))  # fmt: skip
            await s.execute(insert(QUEUE_LOG).values(
                server="pbx2", time=datetime.fromtimestamp(T0, UTC).replace(tzinfo=None),
                callid="pbx-1.0", queuename="q1", agent="NONE", event="CONNECT",
            ))  # fmt: skip
        since = datetime.fromtimestamp(T0 - 60, UTC).isoformat()
        args = ("--config", conf, "records", "backfill", "--since", since)
        done = await asyncio.to_thread(cti_here, *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "pbx1: 2 queue_log line(s), 1 CDR(s) inserted"
        again = await asyncio.to_thread(cti_here, *args)
        assert again.stdout.strip() == "pbx1: 0 queue_log line(s), 0 CDR(s) inserted"

        table = PgRecords(db, "pbx1")
        when = datetime.fromtimestamp(T0 - 60, UTC)
        files = FileRecords.in_log_dir(tmp_path / "log")
        got = sorted((r.at, r.event, r.data) for r in await table.queue_log_since(when))
        want = sorted((r.at, r.event, r.data) for r in map(parse_line, LINES) if r is not None)
        assert got == want

        def cdrs(rows: list[CdrRow]) -> list[tuple[Any, ...]]:
            return sorted((r.linkedid, r.uniqueid, r.start, r.end, r.src) for r in rows)

        assert cdrs(await table.cdr_since(when)) == cdrs(await files.cdr_since(when))
        # which of some calls have their CDR (the CDR watch's question), in both sources
        known = {r.linkedid for r in await files.cdr_since(when)}
        assert known
        asked = {*known, "pbx-no-such-call"}
        assert await table.cdr_linkedids(asked, when) == known
        assert await files.cdr_linkedids(asked, when) == known
        assert await table.cdr_linkedids(set(), when) == set()
    finally:
        await db.dispose()


def test_backfill_is_for_records_in_postgresql(tmp_path: Path) -> None:
    files = config(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db", records="files")
    proc = cti_here("--config", files, "records", "backfill", "--since", "2026-11-29T14:00")
    assert proc.returncode == 2 and 'asterisk.records = "postgresql"' in proc.stderr
    bad = cti_here("--config", files, "records", "backfill", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr
