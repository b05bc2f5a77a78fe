"""Claiming a row of work so that one node does it: the one place that says when a row
may be taken (by :mod:`messaging.digest` for a person's daily digest, by
:mod:`messaging.service` for a queued message).

A row is taken by a conditional UPDATE that sets it ``sending`` (with the claim's time)
only where :func:`claimable` holds; the store applies one such UPDATE per row at a time
(SQLite's single writer; PostgreSQL re-checks the WHERE on the row's newest version
after waiting for its lock), so of two nodes claiming the same row exactly one sees
``rowcount == 1``. A row still ``sending`` after ``stale`` belongs to a node that died
(or hung) before recording the outcome and may be taken over: at least once in that
window (the dead node may have sent it just before dying), never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

__all__ = ["claimable"]


def claimable(
    status: Any, claimed_at: Any, *, ready: Sequence[str], now: datetime, stale: timedelta
) -> ColumnElement[bool]:
    """The rows one may claim now: ``status`` in ``ready``, or ``sending`` claimed before
    ``now - stale``."""
    return or_(status.in_(tuple(ready)), and_(status == "sending", claimed_at < now - stale))
