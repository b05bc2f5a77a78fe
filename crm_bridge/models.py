"""The CRM tables (migration: cti/migrations/versions/crm_0001_customers.py).

Owner / actor columns hold an agent's identity, the ``Principal.name`` of its token.
A customer whose ``owner`` is NULL is in the public pool. Tags are stored as one
comma-joined string (``,vip,gold,``: leading and trailing commas so ``LIKE '%,vip,%'``
finds a whole tag).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

_Id = BigInteger().with_variant(Integer(), "sqlite")

NAME_LEN = 256
NOTES_LEN = 16384
TAGS_LEN = 1024


class Customer(Base):
    __tablename__ = "crm_customers"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(BoundedText(16), default="person")  # person | company
    name: Mapped[str] = mapped_column(BoundedText(NAME_LEN))
    # casefolded, spaces removed: search and duplicate checks
    name_key: Mapped[str] = mapped_column(BoundedText(NAME_LEN), index=True)
    company: Mapped[str] = mapped_column(BoundedText(NAME_LEN), default="")
    company_key: Mapped[str] = mapped_column(BoundedText(NAME_LEN), default="", index=True)
    tier: Mapped[str] = mapped_column(BoundedText(32), default="", index=True)
    tags: Mapped[str] = mapped_column(BoundedText(TAGS_LEN), default="")
    notes: Mapped[str] = mapped_column(BoundedText(NOTES_LEN), default="")
    owner: Mapped[str | None] = mapped_column(BoundedText(128), index=True)
    owned_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # 号码归属地 of the first phone number (cti.phone.region_of), "" when unknown
    region: Mapped[str] = mapped_column(BoundedText(64), default="", index=True)
    # the admin-defined fields' values (crm_custom_fields), JSON object
    custom: Mapped[str] = mapped_column(Text(), default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Contact(Base):
    __tablename__ = "crm_contacts"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("crm_customers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(BoundedText(NAME_LEN))
    name_key: Mapped[str] = mapped_column(BoundedText(NAME_LEN), index=True)
    title: Mapped[str] = mapped_column(BoundedText(NAME_LEN), default="")
    birthday: Mapped[date | None] = mapped_column(Date())
    # "MM-DD" of the birthday: the care list's index (no date functions per dialect)
    birthday_md: Mapped[str | None] = mapped_column(BoundedText(5), index=True)
    tags: Mapped[str] = mapped_column(BoundedText(TAGS_LEN), default="")
    notes: Mapped[str] = mapped_column(BoundedText(NOTES_LEN), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Phone(Base):
    __tablename__ = "crm_phones"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("crm_contacts.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("crm_customers.id", ondelete="CASCADE"), index=True
    )
    raw: Mapped[str] = mapped_column(BoundedText(64))
    e164: Mapped[str] = mapped_column(BoundedText(32), index=True)
    label: Mapped[str] = mapped_column(BoundedText(32), default="")


class Email(Base):
    __tablename__ = "crm_emails"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("crm_contacts.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("crm_customers.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(BoundedText(320))
    address_key: Mapped[str] = mapped_column(BoundedText(320), index=True)  # lower-cased


class Interaction(Base):
    """One call with one customer (or a manual note when ``linkedid`` is NULL)."""

    __tablename__ = "crm_interactions"
    #: the customer page's timeline, newest first (migration crm_0006)
    __table_args__ = (
        Index("ix_crm_interactions_customer_started", "customer_id", "started_at", "id"),
    )

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    linkedid: Mapped[str | None] = mapped_column(BoundedText(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("crm_customers.id", ondelete="SET NULL"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("crm_contacts.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(BoundedText(16), default="call")  # call | note
    caller_num: Mapped[str] = mapped_column(BoundedText(32), default="")  # E.164 or ""
    agent: Mapped[str] = mapped_column(BoundedText(256), default="")
    queue: Mapped[str] = mapped_column(BoundedText(128), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    wait_s: Mapped[float | None] = mapped_column(Float())
    talk_s: Mapped[float | None] = mapped_column(Float())
    outcome: Mapped[str] = mapped_column(BoundedText(32), default="")  # the call's end
    disposition: Mapped[str] = mapped_column(BoundedText(64), default="")  # the agent's
    notes: Mapped[str] = mapped_column(BoundedText(NOTES_LEN), default="")
    recording: Mapped[str] = mapped_column(BoundedText(512), default="")
    ivr_path: Mapped[str] = mapped_column(BoundedText(1024), default="")
    #: the caller's satisfaction score 1-5 (quality feature's survey; migration quality_0002)
    survey_score: Mapped[int | None] = mapped_column(Integer())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CustomerSearch(Base):
    """What search matches, one narrow row per customer (docs/decisions/0011-crm-search.md).

    ``names``: the customer's ``name_key`` and ``company_key`` and its contacts'
    ``name_key``; ``phones``: the E.164 numbers; ``emails``: the lower-cased addresses; each
    a newline-joined list (a needle never holds a newline: name keys and numbers have no
    white space and the search skips email needles with white space, so a match never
    spans two entries). Kept by :func:`crm_bridge.search.reindex` in the same
    transaction as every change to those fields; on PostgreSQL each column has a
    ``pg_trgm`` GIN index, on SQLite an FTS5 trigram index (crm_0005); ``grams`` has
    an FTS5 word index (SQLite) or a GIN array index (PostgreSQL), crm_0006.
    """

    __tablename__ = "crm_search"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("crm_customers.id", ondelete="CASCADE"), primary_key=True
    )
    names: Mapped[str] = mapped_column(Text(), default="")
    phones: Mapped[str] = mapped_column(Text(), default="")
    emails: Mapped[str] = mapped_column(Text(), default="")
    #: every 1-2 character piece of ``names`` and ``phones`` (and the ``@``/``.`` pieces of
    #: ``emails``) as words (crm_bridge.keys.search_grams): for needles with no trigram
    grams: Mapped[str] = mapped_column(Text(), default="")


class CallAgent(Base):
    """An agent a call was offered to (CallOffered) or answered by (CallAnswered): who may
    write that call's interaction (notes, disposition, customer link)."""

    __tablename__ = "crm_call_agents"
    __table_args__ = (UniqueConstraint("linkedid", "agent"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), index=True)
    agent: Mapped[str] = mapped_column(BoundedText(128))
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Lead(Base):
    __tablename__ = "crm_leads"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("crm_customers.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(BoundedText(NAME_LEN))
    # the stage: new -> contacted -> qualified -> proposal -> won | lost
    status: Mapped[str] = mapped_column(BoundedText(16), default="new", index=True)
    owner: Mapped[str | None] = mapped_column(BoundedText(128), index=True)
    value: Mapped[float | None] = mapped_column(Float())
    notes: Mapped[str] = mapped_column(BoundedText(NOTES_LEN), default="")
    expected_close: Mapped[date | None] = mapped_column(Date())
    source: Mapped[str] = mapped_column(BoundedText(32), default="")  # "", web_form, call...
    region: Mapped[str] = mapped_column(BoundedText(64), default="")
    industry: Mapped[str] = mapped_column(BoundedText(64), default="")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # set on won / lost
    follow_up_on: Mapped[date | None] = mapped_column(Date())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class LeadAssignment(Base):
    __tablename__ = "crm_lead_assignments"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("crm_leads.id", ondelete="CASCADE"), index=True)
    from_owner: Mapped[str | None] = mapped_column(BoundedText(128))
    to_owner: Mapped[str | None] = mapped_column(BoundedText(128))
    by: Mapped[str] = mapped_column(BoundedText(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """Every change to a customer (and its contacts, leads, pool moves)."""

    __tablename__ = "crm_audit"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(BoundedText(128))  # agent name or "system"
    action: Mapped[str] = mapped_column(BoundedText(32))
    entity: Mapped[str] = mapped_column(BoundedText(32))
    entity_id: Mapped[int] = mapped_column(_Id)
    customer_id: Mapped[int | None] = mapped_column(_Id, index=True)
    changes: Mapped[str] = mapped_column(Text(), default="{}")  # JSON


class DeadLetter(Base):
    """A webhook delivery that failed every attempt."""

    __tablename__ = "crm_webhook_dead_letters"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(BoundedText(2048))  # where it was last meant to go
    # the receiver's key (crm_bridge.webhooks.Receiver); "": a dead letter of before keys
    receiver: Mapped[str] = mapped_column(BoundedText(2100), default="", server_default="")
    event: Mapped[str] = mapped_column(BoundedText(64))
    body: Mapped[str] = mapped_column(Text())
    attempts: Mapped[int] = mapped_column(Integer())
    last_error: Mapped[str] = mapped_column(BoundedText(1024), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DispositionRow(Base):
    """A wrap-up code set in the console. When any exist they are the list agents pick
    from (in ``position`` order), instead of ``[[crm.dispositions]]`` in the config."""

    __tablename__ = "crm_dispositions"

    code: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    label_en: Mapped[str] = mapped_column(BoundedText(128))
    label_zh: Mapped[str] = mapped_column(BoundedText(128))
    position: Mapped[int] = mapped_column(Integer(), default=0)


class WebhookTargetRow(Base):
    """A webhook receiver added in the console (beside ``[[crm.webhooks]]`` of the
    config). The secret is kept as given: it signs every delivery (HMAC), so it cannot be
    stored as a hash; it is shown once and only its last characters afterwards."""

    __tablename__ = "crm_webhook_targets"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(BoundedText(2048))
    secret: Mapped[str] = mapped_column(BoundedText(256))
    events: Mapped[str] = mapped_column(Text())  # JSON list
    enabled: Mapped[bool] = mapped_column(Boolean(), default=True)
    created_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CustomField(Base):
    """A field an admin adds to every customer card (values in ``Customer.custom``)."""

    __tablename__ = "crm_custom_fields"

    key: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    label_en: Mapped[str] = mapped_column(BoundedText(128))
    label_zh: Mapped[str] = mapped_column(BoundedText(128))
    kind: Mapped[str] = mapped_column(BoundedText(16))  # text | number | date | choice
    choices: Mapped[str] = mapped_column(Text(), default="[]")  # JSON list (kind choice)
    position: Mapped[int] = mapped_column(Integer(), default=0)
