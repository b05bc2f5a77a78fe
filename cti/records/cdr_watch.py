"""The driver keeps its Asterisk server's CDR backend writing (``records = "postgresql"``).

cdr_pgsql reads its table's columns when it loads (cdr/cdr_pgsql.c ``config_module``). An
Asterisk that booted while PostgreSQL was unreachable has the module loaded with no
columns: once PostgreSQL answers, ``pgsql_log`` connects again (its status then says
"Connected") but builds an empty INSERT and drops every record ("HARD ERROR ... DROPPING
CALL RECORD") until the module loads again; ``module reload`` does nothing while the file
is unchanged (``CONFIG_FLAG_FILEUNCHANGED``). Nothing it exposes over AMI tells the two
states apart (its status is a CLI command, and "connected" is true in both).

So the driver watches what matters, the rows: every call it saw end on its AMI link (its
server's calls: Asterisk's own Linkedids, which carry the server's ``systemname``, and
the ones the system originates with a Linkedid it chose, ``cti-camp-``, ``cti-out-``,
``cti-cb-``: cdr_pgsql writes those under that Linkedid too, cdr.conf logs unanswered
calls) must have its CDR in the table, under the server's name, a few seconds later
(``grace_s``). When ``strikes`` checks in a row find none of their calls'
CDRs (one missing call is a brief outage, which cdr_pgsql survives by itself: it
reconnects with its columns), cdr_pgsql is loaded again (AMI ``ModuleLoad`` unload +
load: its table is read then), at most once per ``cooldown_s``; a module that is not
loaded at all is loaded on connect. What this costs: the CDRs of the calls that revealed
the fault are not in the table (they are in Asterisk's CSV file: ``cti records
backfill`` puts them back); the next calls' are. While PostgreSQL is unreachable for
Asterisk a reload does not connect either: the missing rows after it returns trigger the
reload that heals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.events import CallCompleted
from cti.records import RecordSource

__all__ = ["MODULE", "CdrWatch"]

log = logging.getLogger(__name__)

MODULE = "cdr_pgsql.so"
_AMI_ERRORS = (AmiActionError, NotConnected, TimeoutError)


class CdrWatch:
    """Reloads cdr_pgsql on the server this node drives when its CDRs stop reaching the
    table (see the module docstring). Only calls seen live on this node's AMI link count."""

    def __init__(
        self, ami: AmiClient, records: RecordSource, *, grace_s: float = 5.0,
        cooldown_s: float = 30.0, every_s: float = 1.0, strikes: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.ami = ami
        self.records = records
        self.grace_s = grace_s
        self.cooldown_s = cooldown_s
        self.every_s = every_s
        self.strikes = strikes
        self._missing = 0  # checks in a row that found none of their calls' CDRs
        self.clock = clock
        #: calls of this server seen ending: linkedid -> (when seen, its end)
        self._pending: dict[str, tuple[float, datetime]] = {}
        self._reloaded_at: float | None = None
        self.reloads = 0

    def on_completed(self, event: CallCompleted) -> None:
        """Bus handler: a call of this node's server, seen live (not recovered), ended,
        whoever chose its Linkedid."""
        rec = event.record
        if self.ami.connected and rec.source == "ami" and rec.linkedid:
            self._pending[rec.linkedid] = (self.clock(), rec.ended_at)

    async def on_connected(self) -> None:
        """The server is (again) this node's: a cdr_pgsql that is not loaded is loaded."""
        try:
            reply = await self.ami.send_action("ModuleCheck", {"Module": MODULE})
        except AmiActionError:  # "Module not loaded"
            await self._load("not loaded")
            return
        except (NotConnected, TimeoutError):
            return
        log.debug("cdr_pgsql is loaded (%s)", reply.get("Version", ""))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.check()
            except Exception:
                log.exception("checking the CDR table failed")

    async def check(self) -> bool:
        """Look at the calls whose grace passed; True when cdr_pgsql was reloaded."""
        now = self.clock()
        due = {lid: end for lid, (seen, end) in self._pending.items() if now - seen >= self.grace_s}
        if not due:
            return False
        for lid in due:
            self._pending.pop(lid, None)
        since = min(due.values()) - timedelta(minutes=1)
        if await self.records.cdr_linkedids(due, since):
            self._missing = 0
            return False
        self._missing += 1
        if self._missing < self.strikes:
            return False
        if self._reloaded_at is not None and now - self._reloaded_at < self.cooldown_s:
            return False
        log.warning("no CDR of %d call(s) of this server reached the table (%s): reloading "
                    "cdr_pgsql", len(due), ", ".join(sorted(due)[:3]))  # fmt: skip
        return await self._load("unload")

    async def _load(self, why: str) -> bool:
        self._reloaded_at = self.clock()
        self._missing = 0
        try:
            if why == "unload":
                await self.ami.send_action("ModuleLoad", {"Module": MODULE, "LoadType": "unload"})
            await self.ami.send_action("ModuleLoad", {"Module": MODULE, "LoadType": "load"})
        except _AMI_ERRORS as exc:
            log.warning("loading %s failed: %s", MODULE, exc)
            return False
        self.reloads += 1
        log.info("%s loaded again (it reads its table's columns now)", MODULE)
        return True
