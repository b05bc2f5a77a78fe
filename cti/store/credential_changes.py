"""The credential change marker: a number that moves whenever a credential may have ended
or what it may see may have changed.

``credential_changes.n`` is moved by database triggers in the same transaction as every
update of a token's or session's ``revoked_at`` / ``expires_at``, every update of a
user's ``disabled_at``, every session's ``last_seen_at`` set back, and every delete of
those rows (migration auth_0002); and as every update of a user's ``role`` / ``agent`` /
``queues`` / ``login``, of a token's ``role`` / ``name`` / ``queues``, of a team's
``queues``, every delete of a team and every write of a team membership (auth_0003) —
whoever writes: this process, the CLI, another node on the same database, a restore. So a
reader that saw the same value twice knows that no credential was revoked, disabled or
deleted in between and none's role or scope changed, and one query of one row answers
"did anything change?" however many credentials it watches. What it does not cover,
because no write happens: a credential reaching its ``expires_at`` (known in advance: the
holder keeps a timer) and a session idling out (its holder keeps it in use).

The value only matters as "equal or not" to the last one read. Backups leave the row out
(:mod:`cti.store.backup`): a restore's deletes move it like any other write.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cti.store.db import Database
from cti.store.models import CredentialChanges

__all__ = ["credential_mark"]


def _read(session: Session) -> int:
    return int(session.scalar(select(CredentialChanges.n).where(CredentialChanges.id == 1)) or 0)


async def credential_mark(db: Database) -> int:
    """The marker's current value: one row read, off the event loop (:meth:`Database.read`)."""
    return await db.read(_read)
