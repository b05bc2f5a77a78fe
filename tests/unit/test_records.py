"""Asterisk's records in the store (decision 0029): a table row reads as the queue_log line
Asterisk wrote to its file, through the one parser; the generated Asterisk configuration
points res_config_pgsql and cdr_pgsql at the store under the server's name, and refuses
what Asterisk's config files or libpq's conninfo cannot carry."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from cti.asterisk.instance import render_dialplans
from cti.asterisk.runner import DIALPLANS, spec_from_settings
from cti.config import ConfigError, Settings
from cti.queue_log import RawLine, derive_entries, parse_line
from cti.records.asterisk_conf import RecordsDb, records_db, write_records_conf
from cti.records.backfill import missing_lines
from cti.records.postgres import queue_log_line

PG = "postgresql+asyncpg://cti:s3cret@db.example:6432/cti"


def row(event: str, *data: str, plain: str | None = None) -> SimpleNamespace:
    padded = [*data, "", "", "", "", ""][:5]
    if len(data) > 5:  # logger.c's adaptive split: the fifth field keeps the rest
        padded[4] = "|".join(data[4:])
    return SimpleNamespace(
        time=datetime(2026, 11, 29, 14, 0, 5, 999_999), callid="cti-x-1.2", queuename="q1",
        agent="ag1", event=event, data=plain, data1=padded[0], data2=padded[1],
        data3=padded[2], data4=padded[3], data5=padded[4],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("ENTERQUEUE", ("", "13900001111", "1")),  # an empty first field stays
        ("CONNECT", ("5", "cti-x-1.3", "1")),
        ("ADDMEMBER", ()),  # no data at all: the file's line ends with "|"
        ("ATTENDEDTRANSFER", ("BRIDGE", "b-1", "3", "40", "1")),
        ("SOMETHING", ("1", "2", "3", "4", "5", "6", "7")),  # more than five fields
    ],
)
def test_a_row_reads_as_the_line_asterisk_wrote_to_its_file(
    event: str, data: tuple[str, ...]
) -> None:
    file_line = "|".join(["1795960805", "cti-x-1.2", "q1", "ag1", event, *data])
    if not data:
        file_line += "|"
    assert queue_log_line(row(event, *data)) == file_line  # adaptive (data1..data5)
    assert queue_log_line(row(event, plain="|".join(data))) == file_line  # plain (data)
    assert parse_line(queue_log_line(row(event, *data))) == parse_line(file_line)


def test_rows_derive_the_entries_the_file_does() -> None:
    rows = [row("ENTERQUEUE", "", "13900001111", "1"), row("CONNECT", "5", "cti-x-1.3", "1"),
            row("COMPLETECALLER", "5", "40", "1")]  # fmt: skip
    lines = [parse_line(queue_log_line(r)) for r in rows]
    (entry,) = derive_entries([ln for ln in lines if ln is not None])
    assert (entry.outcome, entry.wait_s, entry.talk_s, entry.caller) == (
        "answered",
        5.0,
        40.0,
        "13900001111",
    )


def test_records_postgresql_points_asterisk_at_the_store(tmp_path: Path) -> None:
    s = Settings(
        database={"url": PG}, ami={"secret": "k" * 32},
        asterisk={"instance": "pbx1", "records": "postgresql", "records_host": "10.0.0.5"},
    )  # fmt: skip
    db = records_db(s)
    assert db == RecordsDb("10.0.0.5", 6432, "cti", "cti", "s3cret", "pbx1")
    spec = spec_from_settings(s)
    assert spec.records == db
    render_dialplans(DIALPLANS, tmp_path, spec.placeholders())
    write_records_conf(tmp_path, db)
    assert "queue_log => pgsql,cti,asterisk_queue_log" in (tmp_path / "extconfig.conf").read_text()
    res = (tmp_path / "res_pgsql.conf").read_text()
    assert "dbhost = 10.0.0.5" in res and "dbappname = pbx1" in res
    cdr = (tmp_path / "cdr_pgsql.conf").read_text()
    assert "table = asterisk_cdr" in cdr and "appname = pbx1" in cdr and "port = 6432" in cdr
    modules = (tmp_path / "modules.conf").read_text()
    assert "load => res_config_pgsql.so" in modules and "load => cdr_pgsql.so" in modules
    write_records_conf(tmp_path, db)  # again (a restart): the modules are loaded once
    assert (tmp_path / "modules.conf").read_text().count("load => cdr_pgsql.so") == 1
    # the cluster's name of the server wins over the instance's
    s.cluster.server = "a"
    assert (records := records_db(s)) is not None and records.server == "a"


def test_records_files_leave_asterisk_on_files(tmp_path: Path) -> None:
    assert records_db(Settings()) is None
    (tmp_path / "res_pgsql.conf").write_text("[general]\n")  # left from an earlier setup
    write_records_conf(tmp_path, None)
    assert (tmp_path / "extconfig.conf").read_text() == "[settings]\n"
    assert not (tmp_path / "res_pgsql.conf").exists()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite+aiosqlite:///var/cti.db", "PostgreSQL"),
        ("postgresql+asyncpg://cti:a;b@db/cti", "password"),  # ';' starts a comment there
        ("postgresql+asyncpg://cti:a%20b@db/cti", "password"),  # a space ends a conninfo value
        ("postgresql+asyncpg://cti@/cti", "host"),  # a socket: not inside Asterisk's root
    ],
)
def test_what_asterisk_cannot_carry_is_refused(url: str, match: str) -> None:
    s = Settings(database={"url": url}, asterisk={"records": "postgresql"})
    with pytest.raises(ConfigError, match=match):
        records_db(s)


def test_backfill_inserts_only_the_lines_the_table_lacks() -> None:
    def ln(text: str) -> RawLine:
        parsed = parse_line(text)
        assert parsed is not None
        return parsed

    file = [ln(f"179596080{i}|c{i}|q1|NONE|ENTERQUEUE||1390000000{i}|1") for i in range(3)]
    # in the table: the first with the next second (the file's clock is read after the
    # row's), the third; the second was written while PostgreSQL was down
    table = [ln("1795960801|c0|q1|NONE|ENTERQUEUE||13900000000|1"), file[2]]
    assert missing_lines(file, table) == [file[1]]
    assert missing_lines(file, [*table, file[1]]) == []  # run again: nothing
    # a row answers for one line only: the same line twice in the file, once in the table
    assert missing_lines([file[2], file[2]], table) == [file[2]]
