"""The messaging tables (migrations: cti/migrations/versions/messaging_0001_initial.py,
messaging_0002_digest.py, messaging_0003_inbound.py, messaging_0004_outbox.py,
messaging_0005_send_slots.py)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

_Id = BigInteger().with_variant(Integer(), "sqlite")

CHANNELS = ("sms", "email")
#: queued -> sending (claimed by the node sending it) -> sent (the gateway / SMTP server
#: took it) -> delivered (the handset's receipt, SMS) | failed; opted_out: never sent;
#: received: an inbound e-mail (messaging.imap)
STATUSES = ("queued", "sending", "sent", "delivered", "failed", "opted_out", "received")


class Template(Base):
    __tablename__ = "msg_templates"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    channel: Mapped[str] = mapped_column(BoundedText(8))  # sms | email
    subject: Mapped[str] = mapped_column(BoundedText(256), default="")
    body: Mapped[str] = mapped_column(BoundedText(4096))
    # the SMS gateway's approved template code (Chinese gateways send only those)
    provider_template: Mapped[str] = mapped_column(BoundedText(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Batch(Base):
    """A mass send: how many were meant, sent, failed, skipped (opted out)."""

    __tablename__ = "msg_batches"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("msg_templates.id"))
    channel: Mapped[str] = mapped_column(BoundedText(8))
    query: Mapped[str] = mapped_column(Text(), default="{}")  # JSON: the list's filters
    total: Mapped[int] = mapped_column(Integer(), default=0)
    skipped: Mapped[int] = mapped_column(Integer(), default=0)
    created_by: Mapped[str] = mapped_column(BoundedText(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Message(Base):
    __tablename__ = "msg_messages"

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[int | None] = mapped_column(_Id, index=True)
    channel: Mapped[str] = mapped_column(BoundedText(8))
    to_address: Mapped[str] = mapped_column(BoundedText(320), index=True)
    template_id: Mapped[int | None] = mapped_column(_Id)
    batch_id: Mapped[int | None] = mapped_column(_Id, index=True)
    subject: Mapped[str] = mapped_column(BoundedText(256), default="")
    body: Mapped[str] = mapped_column(BoundedText(4096))
    params: Mapped[str] = mapped_column(Text(), default="{}")  # JSON: the template's fields
    status: Mapped[str] = mapped_column(BoundedText(16), default="queued", index=True)
    error: Mapped[str] = mapped_column(BoundedText(1024), default="")
    provider_id: Mapped[str] = mapped_column(BoundedText(128), default="")
    reason: Mapped[str] = mapped_column(BoundedText(32), default="")  # manual, mass, missed_call
    linkedid: Mapped[str] = mapped_column(BoundedText(64), default="")
    created_by: Mapped[str] = mapped_column(BoundedText(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the outbox (messaging.service): who claimed it to send, when, how many claims so far
    claimed_by: Mapped[str] = mapped_column(BoundedText(128), default="", server_default="")
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")


class OptOut(Base):
    """An address (E.164 number or lower-cased e-mail) that receives no more messages."""

    __tablename__ = "msg_opt_outs"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(BoundedText(8))
    address: Mapped[str] = mapped_column(BoundedText(320))
    reason: Mapped[str] = mapped_column(BoundedText(256), default="")
    created_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DigestAddress(Base):
    """Where a person's daily digest goes (a user's ``login``; one address)."""

    __tablename__ = "msg_digest_addresses"

    login: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    email: Mapped[str] = mapped_column(BoundedText(320))
    updated_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


#: sending (claimed by a node) -> sent | empty (nothing to remind) | failed (retried while
#: ``attempts`` < 3)
DIGEST_STATUSES = ("sending", "sent", "empty", "failed")


class DigestSent(Base):
    """One person's digest of one local day: the row is claimed (insert-or-ignore on the
    key) before the mail is sent, so a restart or a second node never sends it twice."""

    __tablename__ = "msg_digests"

    login: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    status: Mapped[str] = mapped_column(BoundedText(16), default="sending")
    email: Mapped[str] = mapped_column(BoundedText(320), default="")
    items: Mapped[int] = mapped_column(Integer(), default=0)
    attempts: Mapped[int] = mapped_column(Integer(), default=1)
    error: Mapped[str] = mapped_column(BoundedText(1024), default="")
    message_id: Mapped[str] = mapped_column(BoundedText(256), default="")
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Received(Base):
    """An inbound e-mail filed once: its Message-ID (or a digest of the message when it
    has none) is the key, inserted with the timeline's row in one transaction."""

    __tablename__ = "msg_received"

    message_id: Mapped[str] = mapped_column(BoundedText(256), primary_key=True)
    message_pk: Mapped[int | None] = mapped_column(_Id)  # msg_messages.id (None: unmatched)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SendSlot(Base):
    """The sends taken in one time slot of a shared rate (messaging.throttle): ``slot`` is
    the slot's number since the epoch, ``used`` how many sends every node took in it."""

    __tablename__ = "msg_send_slots"

    scope: Mapped[str] = mapped_column(BoundedText(32), primary_key=True)
    slot: Mapped[int] = mapped_column(BigInteger(), primary_key=True, autoincrement=False)
    used: Mapped[int] = mapped_column(Integer(), default=0)
