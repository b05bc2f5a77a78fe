"""Today's calls for the desktop (``GET /api/v1/desktop/calls/today``), read from the
platform's ``calls`` table (written by :mod:`cti.calls.recorder`).

"Today" is the site's local day (``[site] timezone``). An agent sees the calls they
answered plus the calls popped on their desktop (missed rings, outbound calls); a
supervisor sees every call.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select

from cti.calls.recorder import call_to_dict
from cti.store.db import Database
from cti.store.models import Call

__all__ = ["FIELDS", "calls_today", "start_of_day"]

#: What the desktop's list shows of a call row.
FIELDS = (
    "id", "linkedid", "caller_num_raw", "caller_num_e164", "caller_name", "started_at",
    "answered_at", "ended_at", "queue", "agent", "wait_s", "talk_s", "disposition",
)  # fmt: skip


def start_of_day(now: datetime, timezone: str) -> datetime:
    """Midnight of ``now``'s local day in ``timezone``, as an aware datetime."""
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


async def calls_today(
    db: Database,
    *,
    now: datetime,
    timezone: str,
    agent: str | None,
    also: Collection[str] = (),
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Calls started since local midnight, newest first. ``agent``: only theirs (answered
    by them, or one of the Linkedids in ``also``); None: everyone's."""
    stmt = select(Call).where(Call.started_at >= start_of_day(now, timezone))
    if agent is not None:
        mine = Call.agent == agent
        ids = [lid for lid in also if isinstance(lid, str)][:500]
        stmt = stmt.where(or_(mine, Call.linkedid.in_(ids)) if ids else mine)
    stmt = stmt.order_by(Call.started_at.desc(), Call.id.desc()).limit(max(1, min(limit, 1000)))
    async with db.session() as session:
        rows = (await session.scalars(stmt)).all()
    out = []
    for row in rows:
        d = call_to_dict(row)
        out.append({k: d[k] for k in FIELDS})
    return out
