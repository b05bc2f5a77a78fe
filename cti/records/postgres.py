"""The records Asterisk writes itself into the store (PostgreSQL): ``asterisk_queue_log``
(realtime queue_log, res_config_pgsql) and ``asterisk_cdr`` (cdr_pgsql); migration
records_0001 creates them, cti.records.asterisk_conf points Asterisk at them.

Rows are turned into what the file source gives (a queue_log line, a CDR's fields) and
read by the same parser and recovery. Each server's rows are read by id: Asterisk writes
them through one connection per module, one statement at a time, so a server's ids
grow in the order its rows became visible; the statistics' cursor is the last id read.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    MetaData,
    Select,
    Table,
    Text,
    select,
)

from cti.calls.recovery import READ_MARGIN, CdrRow, cdr_row
from cti.queue_log import RawLine, parse_line
from cti.records.tail import TailPosition
from cti.store.db import Database

__all__ = ["BATCH", "CDR", "QUEUE_LOG", "PgRecords", "queue_log_line"]

#: rows per read of the statistics' tail (the rest comes on the next)
BATCH = 20_000

# Asterisk's tables, not the daemon's models (cti.store.migrate.include_object)
_meta = MetaData()
QUEUE_LOG = Table(
    "asterisk_queue_log", _meta,
    Column("id", BigInteger, primary_key=True), Column("server", Text),
    Column("time", DateTime(timezone=False)), Column("callid", Text),
    Column("queuename", Text), Column("agent", Text), Column("event", Text),
    *(Column(f"data{i}", Text) for i in range(1, 6)), Column("data", Text),
)  # fmt: skip
CDR = Table(
    "asterisk_cdr", _meta,
    Column("id", BigInteger, primary_key=True), Column("server", Text),
    Column("linkedid", Text), Column("uniqueid", Text), Column("start", Float),
    Column("answer", Float), Column("end", Float), Column("src", Text), Column("dst", Text),
    Column("dcontext", Text), Column("clid", Text), Column("channel", Text),
    Column("dstchannel", Text), Column("lastapp", Text), Column("disposition", Text),
    Column("userfield", Text), Column("cti_outcome", Text),
)  # fmt: skip
_CDR_TEXT = ("linkedid", "uniqueid", "src", "dst", "dcontext", "clid", "channel",
             "dstchannel", "lastapp", "disposition", "userfield")  # fmt: skip


def queue_log_line(row: Any) -> str:
    """The queue_log line Asterisk wrote to its file for this row: ``epoch|callid|queue|
    agent|event|data``. ``time`` is UTC (logger.conf ``queue_log_realtime_use_gmt``) with
    microseconds, the file's whole seconds. The data is ``data`` (logger.c's plain mode)
    or ``data1``…``data5`` joined (its adaptive mode splits the data at ``|`` into five,
    the fifth keeping the rest), less the empty fields the split added at the end."""
    data = row.data
    if data is None:
        parts = [row.data1, row.data2, row.data3, row.data4, row.data5]
        while parts and not parts[-1]:
            parts.pop()
        data = "|".join(p or "" for p in parts)
    epoch = int(row.time.replace(tzinfo=UTC).timestamp())
    fields = (row.callid, row.queuename, row.agent, row.event)
    return "|".join([str(epoch), *(f or "" for f in fields), data])


def _cdr(row: Any) -> CdrRow:
    v = {name: getattr(row, name) or "" for name in _CDR_TEXT}
    for name in ("start", "answer", "end"):
        value = getattr(row, name)
        v[name] = repr(float(value)) if value is not None else ""
    v["outcome"] = row.cti_outcome or ""
    return cdr_row(v)


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None)


class PgRecords:
    """One server's records in the store's ``asterisk_*`` tables."""

    def __init__(self, db: Database, server: str) -> None:
        self.db = db
        self.server = server
        self.key = f"postgresql:{server}"

    async def _rows(self, query: Select[Any]) -> list[Any]:
        async with self.db.read_session() as session:
            return list((await session.execute(query)).all())

    async def cdr_since(self, since: datetime) -> list[CdrRow]:
        cutoff = (since - READ_MARGIN).timestamp()
        query = (
            select(CDR).where(CDR.c.server == self.server, CDR.c.end >= cutoff).order_by(CDR.c.id)
        )
        return [_cdr(r) for r in await self._rows(query)]

    async def cdr_linkedids(self, linkedids: Collection[str], since: datetime) -> set[str]:
        if not linkedids:
            return set()
        cutoff = (since - READ_MARGIN).timestamp()
        query = (
            select(CDR.c.linkedid)
            .distinct()
            .where(CDR.c.server == self.server, CDR.c.end >= cutoff,
                   CDR.c.linkedid.in_(sorted(linkedids)))
        )  # fmt: skip
        return {row.linkedid for row in await self._rows(query)}

    async def queue_log_since(self, since: datetime) -> list[RawLine]:
        cutoff = _naive_utc(since - READ_MARGIN)
        query = (
            select(QUEUE_LOG)
            .where(QUEUE_LOG.c.server == self.server, QUEUE_LOG.c.time >= cutoff)
            .order_by(QUEUE_LOG.c.id)
        )
        return self._parsed(await self._rows(query))

    async def queue_log_after(
        self, pos: TailPosition | None
    ) -> tuple[list[RawLine], TailPosition | None]:
        after = pos.offset if pos is not None and pos.inode == 0 else 0
        query = (
            select(QUEUE_LOG)
            .where(QUEUE_LOG.c.server == self.server, QUEUE_LOG.c.id > after)
            .order_by(QUEUE_LOG.c.id)
            .limit(BATCH)
        )
        rows = await self._rows(query)
        if not rows:
            return [], pos
        return self._parsed(rows), TailPosition(0, int(rows[-1].id))

    async def queue_log_all(self) -> tuple[list[RawLine], TailPosition | None]:
        out: list[RawLine] = []
        pos: TailPosition | None = None
        while True:
            lines, new_pos = await self.queue_log_after(pos)
            out += lines
            if new_pos == pos:
                return out, pos
            pos = new_pos

    @staticmethod
    def _parsed(rows: list[Any]) -> list[RawLine]:
        return [r for r in (parse_line(queue_log_line(row)) for row in rows) if r is not None]
