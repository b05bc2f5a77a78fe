"""ORM models of the platform's own tables (features declare theirs on the same ``Base``).

Migrations live in ``cti/migrations`` and are written by hand; ``tests/integration``
checks that this metadata and the migrated schema agree.

Column types:

- :class:`UTCDateTime`: timezone-aware in Python on both databases (SQLite stores UTC
  text without offset; naive values on write are taken as UTC).
- :class:`BoundedText`: a VARCHAR(n) that refuses values longer than n characters on
  both databases (SQLite would store them silently, PostgreSQL would fail with a driver
  error) with a clear :class:`TextTooLongError`, and replaces what no database can store
  (lone surrogates, NUL) by U+FFFD. Writers of attacker-controlled text (the call
  recorder) truncate with :func:`clip_text` before writing.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from cti.principal import ROLES

__all__ = [
    "NAMING_CONVENTION",
    "ROLES",
    "ApiToken",
    "AuditEntry",
    "Base",
    "BoundedText",
    "Call",
    "CleanText",
    "DialCount",
    "PendingItem",
    "Team",
    "TextTooLongError",
    "UTCDateTime",
    "User",
    "UserTeam",
    "WatchMark",
    "WebSession",
    "clean_text",
    "clip_text",
    "utcnow",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def utcnow() -> datetime:
    return datetime.now(UTC)


def clean_text(value: str) -> str:
    """Replace what neither database can store (NUL, lone surrogates) by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value)


def clip_text(value: str, limit: int) -> str:
    """:func:`clean_text`, then cut to at most ``limit`` characters."""
    return clean_text(value)[:limit]


class TextTooLongError(ValueError):
    """A value is longer than its column allows."""


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always round-trips as an aware UTC datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite keeps text; naive UTC text sorts and compares correctly.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class CleanText(TypeDecorator[str]):
    """VARCHAR whose bound values go through :func:`clean_text`."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return clean_text(value)


class BoundedText(CleanText):
    """VARCHAR(length) refusing longer values with :class:`TextTooLongError`.

    Only written values are checked: a value compared against the column (a lookup)
    is merely cleaned, so an over-long lookup key finds nothing instead of raising.
    """

    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        cleaned = super().process_bind_param(value, dialect)
        if cleaned is not None and len(cleaned) > self.length:
            raise TextTooLongError(
                f"text of {len(cleaned)} characters exceeds the column limit of "
                f"{self.length}; truncate it first (cti.store.models.clip_text)"
            )
        return cleaned

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        return CleanText()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# BIGINT on PostgreSQL; SQLite only auto-increments "INTEGER PRIMARY KEY".
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class Call(Base):
    """One finished call, keyed by Asterisk's Linkedid. Written by the call recorder."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    caller_num_raw: Mapped[str] = mapped_column(BoundedText(256), default="")
    caller_num_e164: Mapped[str] = mapped_column(BoundedText(32), default="", index=True)
    caller_name: Mapped[str] = mapped_column(BoundedText(256), default="")
    dnis: Mapped[str] = mapped_column(BoundedText(256), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    queue: Mapped[str] = mapped_column(BoundedText(128), default="", index=True)
    agent: Mapped[str] = mapped_column(BoundedText(256), default="")
    wait_s: Mapped[float | None] = mapped_column(Float())
    talk_s: Mapped[float | None] = mapped_column(Float())
    disposition: Mapped[str] = mapped_column(BoundedText(32), default="unknown")
    hangup_cause: Mapped[str] = mapped_column(BoundedText(64), default="")
    source: Mapped[str] = mapped_column(BoundedText(16), default="ami")
    #: the caller's satisfaction score 1-5 (quality survey; migration quality_0004)
    survey_score: Mapped[int | None] = mapped_column(Integer())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Call(id={self.id!r}, linkedid={self.linkedid!r})"


class ApiToken(Base):
    """A bearer token for the REST API / websockets. Only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("role IN ('agent', 'supervisor', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(128), index=True)
    role: Mapped[str] = mapped_column(BoundedText(16))
    token_hash: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # accounts (auth_0001): expiry, who created it, optional queue scope
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    queues: Mapped[list[str] | None] = mapped_column(JSON())

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, name={self.name!r}, role={self.role!r})"


_ROLE_CHECK = "role IN ('agent', 'supervisor', 'admin')"


class User(Base):
    """A person who signs in (cti.accounts). ``agent`` links an agent user to the ACD
    agent it is; ``queues`` and teams scope a supervisor."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_ROLE_CHECK, name="role"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    display_name: Mapped[str] = mapped_column(BoundedText(128), default="")
    role: Mapped[str] = mapped_column(BoundedText(16))
    agent: Mapped[str | None] = mapped_column(BoundedText(64), unique=True)
    queues: Mapped[list[str] | None] = mapped_column(JSON())
    password_hash: Mapped[str] = mapped_column(BoundedText(256))
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    must_change_password: Mapped[bool] = mapped_column(Boolean(), default=False)
    totp_secret: Mapped[str | None] = mapped_column(BoundedText(64))
    totp_enabled: Mapped[bool] = mapped_column(Boolean(), default=False)
    totp_last_step: Mapped[int] = mapped_column(BigInteger(), default=0)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Team(Base):
    """A group of people and the queues it works: a supervisor in it sees those queues
    and the agents of the team."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    queues: Mapped[list[str]] = mapped_column(JSON(), default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UserTeam(Base):
    __tablename__ = "user_teams"

    user_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    team_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class WebSession(Base):
    """A browser sign-in. Only the SHA-256 of the cookie's secret is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    address: Mapped[str] = mapped_column(BoundedText(64), default="")
    user_agent: Mapped[str] = mapped_column(BoundedText(256), default="")


class CredentialChanges(Base):
    """One row whose ``n`` moves with every write that may end a credential (a token or
    session revoked, expired, set back in use or deleted, a user disabled or deleted) or
    change what it may see (a role, an agent binding, a queue scope, a team's queues or
    members), kept by triggers (migrations auth_0002, auth_0003): the websocket hub's
    sweep reads it to know whether anything changed (:mod:`cti.store.credential_changes`)."""

    __tablename__ = "credential_changes"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger())


class AuditEntry(Base):
    """One change or sign-in event: who, when, from where, what, before -> after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action_actor_at", "action", "actor", "at"),
        Index("ix_audit_log_action_address_at", "action", "address", "at"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(BoundedText(128), default="")
    actor_role: Mapped[str] = mapped_column(BoundedText(16), default="")
    address: Mapped[str] = mapped_column(BoundedText(64), default="")
    action: Mapped[str] = mapped_column(BoundedText(64))
    target_type: Mapped[str] = mapped_column(BoundedText(32), default="")
    target_id: Mapped[str] = mapped_column(BoundedText(128), default="")
    before: Mapped[Any] = mapped_column(JSON(), nullable=True)
    after: Mapped[Any] = mapped_column(JSON(), nullable=True)
    detail: Mapped[str] = mapped_column(BoundedText(2000), default="")


class DialCount(Base):
    """How many dials an agent started on one local day (the dial policy's limit)."""

    __tablename__ = "dial_counts"

    agent: Mapped[str] = mapped_column(BoundedText(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    count: Mapped[int] = mapped_column(Integer(), default=0)


class FiredOnce(Base):
    """A side effect that happened once in the cluster (cti.cluster.once): the first node
    to insert ``(scope, key)`` acts, every other finds it there."""

    __tablename__ = "fired_once"

    scope: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    key: Mapped[str] = mapped_column(BoundedText(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class PendingItem(Base):
    """An item a queue worker could not handle within its stop's bound (cti.pending):
    kept here at the stop, taken back onto the worker's queue at the next start."""

    __tablename__ = "worker_pending"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    worker: Mapped[str] = mapped_column(BoundedText(64), index=True)
    payload: Mapped[str] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WatchMark(Base):
    """When the daemon first watched an Asterisk server (cti.calls.watchmark): the start
    of the recovery window while none of the server's calls is recorded yet."""

    __tablename__ = "watch_marks"

    server: Mapped[str] = mapped_column(BoundedText(128), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
