"""The records as Asterisk writes them beside itself: queue_log and the CDR CSV of
``cdr_custom`` (dialplans/cdr_custom.conf). The blocking reads run in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

from cti.calls.recovery import CdrRow, read_cdr, read_queue_log
from cti.queue_log import RawLine, parse_line
from cti.records import tail

__all__ = ["FileRecords"]


def _parsed(texts: list[str]) -> list[RawLine]:
    return [r for r in map(parse_line, texts) if r is not None]


def _read_new(
    path: Path, pos: tail.TailPosition | None
) -> tuple[list[RawLine], tail.TailPosition | None]:
    texts, new_pos = tail.read_new(path, pos)
    return _parsed(texts), new_pos


def _read_all(path: Path) -> tuple[list[RawLine], tail.TailPosition | None]:
    texts, pos = tail.read_all(path)
    return _parsed(texts), pos


class FileRecords:
    """A server's records in files on this host (the single box, or a shared mount)."""

    def __init__(self, queue_log: Path, cdr: Path) -> None:
        self.queue_log = queue_log
        self.cdr = cdr
        self.key = str(queue_log)  # the tail's position is the file's (unchanged)

    @classmethod
    def in_log_dir(cls, log_dir: Path, queue_log: Path | None = None) -> FileRecords:
        return cls(queue_log or log_dir / "queue_log", log_dir / "cdr-custom" / "cti-cdr.csv")

    async def cdr_since(self, since: datetime) -> list[CdrRow]:
        return await asyncio.to_thread(read_cdr, self.cdr, since)

    async def cdr_linkedids(self, linkedids: Collection[str], since: datetime) -> set[str]:
        return {row.linkedid for row in await self.cdr_since(since)} & set(linkedids)

    async def queue_log_since(self, since: datetime) -> list[RawLine]:
        return await asyncio.to_thread(read_queue_log, self.queue_log, since)

    async def queue_log_after(
        self, pos: tail.TailPosition | None
    ) -> tuple[list[RawLine], tail.TailPosition | None]:
        return await asyncio.to_thread(_read_new, self.queue_log, pos)

    async def queue_log_all(self) -> tuple[list[RawLine], tail.TailPosition | None]:
        return await asyncio.to_thread(_read_all, self.queue_log)
