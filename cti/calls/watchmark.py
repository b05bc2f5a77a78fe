"""Where the recovery window of a daemon's start begins, also before any call is recorded.

On its first AMI connect after a start (or after taking a server's lease) the daemon
recovers, from the server's CDR and queue_log, the calls that ended while nobody watched
it. The window starts at the last call end recorded for that server: every call that
ended before it was seen (or recovered) and recorded. With no call of the server recorded
yet (a new install, a new server in a cluster) there is no such end, and a daemon killed
during its very first calls lost the ones that ended while it was down.

So each server has a mark in the store (``watch_marks``): when a daemon first watched it,
written as the first AMI connection to it is synced (by whichever node; the first writer
wins). The window of a start is the later of the two known bounds:

- the last recorded call end of the server, as before (usually the later one);
- the mark: nothing that ended before it was ever watched, so nothing before it is
  recovered, and a server the daemon never watched (a pre-existing Asterisk with years
  of CDR) is not backfilled "since the beginning of time": its first connect writes the
  mark and recovers only the calls still in the channel snapshot.

The mark is not moved forward afterwards: the recorded call ends already move the window
forward, and a mark advanced to "now" while the recorder still held calls it had not
written (a store outage, a SIGKILL a moment after a recovery) would put those calls before
the next window and lose them. A daemon upgraded onto a store with calls but no mark
writes it at its first connect and keeps using the last recorded end.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from cti.store.db import Database
from cti.store.insert import insert_ignore
from cti.store.models import WatchMark

__all__ = ["first_watched", "window_start"]


async def first_watched(db: Database, server: str, now: datetime) -> datetime | None:
    """When a daemon first watched ``server``; None if that is now (the mark is set to
    ``now``)."""
    async with db.session() as session, session.begin():
        inserted = await session.execute(
            insert_ignore(session, WatchMark, ["server"]).values(server=server, since=now)
        )
        if getattr(inserted, "rowcount", 0):
            return None
        return await session.scalar(select(WatchMark.since).where(WatchMark.server == server))


def window_start(last_end: datetime | None, mark: datetime | None) -> datetime | None:
    """The start of the recovery window: the later of the last recorded call end and the
    server's mark (None: neither, the server was never watched before)."""
    known = [t for t in (last_end, mark) if t is not None]
    return max(known) if known else None
