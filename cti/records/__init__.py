"""Where a daemon node reads its Asterisk server's own records: queue_log and CDR.

Two sources behind one interface, :class:`RecordSource`, read by the one queue_log parser
(:mod:`cti.queue_log`) and the one recovery (:mod:`cti.calls.recovery`):

- ``files`` (the single box, ``make up``): ``<asterisk.log_dir>/queue_log`` and
  ``cdr-custom/cti-cdr.csv``, as Asterisk writes them beside itself
  (:class:`cti.records.files.FileRecords`);
- ``postgresql`` (``[asterisk] records = "postgresql"``, a cluster whose nodes run on
  other hosts than their servers): the tables Asterisk writes itself into the store
  through its own modules (realtime queue_log over res_config_pgsql, cdr_pgsql), one
  set of tables for every server, rows keyed by server
  (:class:`cti.records.postgres.PgRecords`); no shared mount of the log directory.

Decision 0029 says why and what Asterisk does when PostgreSQL is briefly unreachable.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cti.config import ConfigError, Settings
from cti.queue_log import RawLine

if TYPE_CHECKING:
    from cti.calls.recovery import CdrRow
    from cti.records.tail import TailPosition
    from cti.store.db import Database

__all__ = ["RecordSource", "make_source"]


class RecordSource(Protocol):
    """One Asterisk server's queue_log lines and CDR rows (every method is async and
    never blocks the event loop)."""

    #: the ingest cursor's key in ``stats_ingest_state`` (a file's path, or the server's)
    key: str

    async def cdr_since(self, since: datetime) -> list[CdrRow]:
        """CDRs that ended at or after ``since`` (and some before: a margin)."""
        ...

    async def cdr_linkedids(self, linkedids: Collection[str], since: datetime) -> set[str]:
        """Which of ``linkedids`` have a CDR that ended at or after ``since`` (or in the
        margin before): a question about a few calls, not a read of every CDR since."""
        ...

    async def queue_log_since(self, since: datetime) -> list[RawLine]:
        """queue_log lines written at or after ``since`` (and some before: a margin)."""
        ...

    async def queue_log_after(
        self, pos: TailPosition | None
    ) -> tuple[list[RawLine], TailPosition | None]:
        """Lines written after ``pos`` (None: from the start) and the position after them;
        a call may return only part of what is there (the rest on the next)."""
        ...

    async def queue_log_all(self) -> tuple[list[RawLine], TailPosition | None]:
        """Every line there is, and the position at its end."""
        ...


def make_source(settings: Settings, db: Database) -> RecordSource:
    """The source ``[asterisk] records`` names (ConfigError when it cannot work)."""
    if settings.asterisk.records == "postgresql":
        from cti.records.postgres import PgRecords

        if db.engine.dialect.name != "postgresql":
            raise ConfigError(
                'asterisk.records = "postgresql" needs database.url on PostgreSQL: Asterisk '
                "writes its queue_log and CDR into the store's tables"
            )
        return PgRecords(db, settings.server_name)
    from cti.records.files import FileRecords

    if settings.asterisk.log_dir is None:
        raise ConfigError(
            "asterisk.log_dir is not set and no local Asterisk instance (cti asterisk up) "
            "was found: set it to the host directory of the instance's logs (queue_log, "
            'cdr-custom/), or set asterisk.records = "postgresql" (decision 0029); calls '
            "that end while the AMI link is down are recovered from these records"
        )
    return FileRecords.in_log_dir(Path(settings.asterisk.log_dir))
