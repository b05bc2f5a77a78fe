"""API tokens: bearer secrets for REST routes and websockets, one role each.

The plaintext is returned once by :func:`create_token`; only its SHA-256 (hex) is
stored. :func:`verify_token` looks the hash up through the unique index, so no
comparison ever runs over the secret itself (nothing to time). A token may expire
(``expires_at``) and be scoped to queues; a revoked or expired token verifies as None,
and :func:`live_tokens` tells the websocket hub which open connections may stay and what
each token's principal is now (its role or queues may have been changed since).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cti.principal import Principal
from cti.store.db import Database
from cti.store.models import ROLES, ApiToken, TextTooLongError, clean_text, utcnow

__all__ = [
    "LAST_USED_RESOLUTION",
    "MAX_NAME_LEN",
    "ROLES",
    "Principal",
    "create_token",
    "hash_token",
    "list_tokens",
    "live_tokens",
    "revoke_token",
    "revoke_token_id",
    "token_of_secret",
    "verify_token",
]

log = logging.getLogger(__name__)

#: ``last_used_at`` is written at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_LEN = 128
_TOKEN_BYTES = 32
_MAX_TOKEN_LEN = 256  # token_urlsafe(32) is 43 characters


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a token needs a non-empty name (who or what uses it)")
    name = clean_text(name.strip())
    if len(name) > MAX_NAME_LEN:
        raise TextTooLongError(f"token name longer than {MAX_NAME_LEN} characters")
    return name


async def create_token(
    db: Database,
    name: str,
    role: str,
    *,
    expires_at: datetime | None = None,
    queues: list[str] | None = None,
    created_by: str = "",
) -> str:
    """Store a new token for ``name`` with ``role`` and return its plaintext (only now).

    Several tokens may share a name; :func:`revoke_token` revokes all of them. Raises
    ValueError for an unknown role or an empty/too long name.
    """
    _check_role(role)
    name = _check_name(name)
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    async with db.session() as session, session.begin():
        session.add(
            ApiToken(
                name=name, role=role, token_hash=hash_token(token), expires_at=expires_at,
                queues=queues, created_by=clean_text(created_by)[:128],
            )
        )  # fmt: skip
    return token


def _token_json(t: ApiToken, now: datetime) -> dict[str, Any]:
    state = "active"
    if t.revoked_at is not None:
        state = "revoked"
    elif t.expires_at is not None and t.expires_at <= now:
        state = "expired"
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "queues": t.queues,
        "state": state,
        "created_by": t.created_by,
        "created_at": t.created_at.isoformat(),
        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
    }


async def list_tokens(db: Database, *, include_ended: bool = True) -> list[dict[str, Any]]:
    """Every token (never its secret), newest first."""
    now = utcnow()
    async with db.session() as session:
        rows = (await session.scalars(select(ApiToken).order_by(ApiToken.id.desc()))).all()
    out = [_token_json(t, now) for t in rows]
    return out if include_ended else [t for t in out if t["state"] == "active"]


async def get_token(db: Database, token_id: int) -> dict[str, Any] | None:
    async with db.session() as session:
        t = await session.get(ApiToken, token_id)
    return None if t is None else _token_json(t, utcnow())


async def token_of_secret(db: Database, token: str) -> dict[str, Any] | None:
    """The listing entry of the token with this plaintext (just created)."""
    async with db.session() as session:
        t = await session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    return None if t is None else _token_json(t, utcnow())


async def revoke_token_id(db: Database, token_id: int) -> bool:
    """Revoke one token by id; False when there is no such active token."""
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return bool(result.rowcount)


def _principal(id: int, name: str, role: str, queues: object,
               expires_at: datetime | None) -> Principal:  # fmt: skip
    """The one place a token's row becomes its principal."""
    scope = frozenset(queues) if isinstance(queues, list) else None
    return Principal(token_id=id, name=name, role=role, queues=scope, expires_at=expires_at)


async def live_tokens(db: Database, ids: set[int]) -> dict[int, Principal]:
    """Which of ``ids`` are tokens neither revoked nor expired, each with the principal
    :func:`verify_token` would build now (one read, off the event loop)."""
    if not ids:
        return {}
    now = utcnow()
    query = select(
        ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.queues, ApiToken.expires_at
    ).where(
        ApiToken.id.in_(ids),
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
    )

    def read(session: Session) -> dict[int, Principal]:
        return {
            row.id: _principal(row.id, row.name, row.role, row.queues, row.expires_at)
            for row in session.execute(query)
            if row.role in ROLES
        }

    return await db.read(read)


async def verify_token(db: Database, token: str) -> Principal | None:
    """The principal of a valid, unrevoked ``token``; None for anything else."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LEN:
        return None
    if not token.isascii():
        return None
    digest = hash_token(token)
    async with db.session() as session:
        row = (
            await session.execute(
                select(
                    ApiToken.id,
                    ApiToken.name,
                    ApiToken.role,
                    ApiToken.revoked_at,
                    ApiToken.last_used_at,
                    ApiToken.expires_at,
                    ApiToken.queues,
                ).where(ApiToken.token_hash == digest)
            )
        ).one_or_none()
        if row is None or row.revoked_at is not None or row.role not in ROLES:
            return None
        now = utcnow()
        if row.expires_at is not None and row.expires_at <= now:
            return None
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            try:
                await session.execute(
                    update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now)
                )
                await session.commit()
            except SQLAlchemyError as exc:  # bookkeeping only: never refuse a valid token
                await session.rollback()
                log.warning("could not record last use of token %d: %s", row.id, exc)
    return _principal(row.id, row.name, row.role, row.queues, row.expires_at)


async def revoke_token(db: Database, name: str) -> int:
    """Revoke every active token named ``name``; returns how many were revoked."""
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(ApiToken)
            .where(ApiToken.name == clean_text(name.strip()), ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return int(result.rowcount)
