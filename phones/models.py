"""The ``phones`` table: one row per provisioned phone (PJSIP endpoint + aor + auth);
``phone_locations``: where each phone is registered in a cluster (phones.locations)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

__all__ = ["KINDS", "PhoneLocationRow", "PhoneRow"]

_BigId = BigInteger().with_variant(Integer(), "sqlite")

#: webrtc: a browser phone (the agent's desktop registers it); sip: a desk phone or softphone
KINDS = ("webrtc", "sip")


class PhoneRow(Base):
    """One phone. ``name`` is the PJSIP endpoint, aor and SIP user name. A SIP phone keeps
    only the digest hash of its password (``ha1``, what Asterisk checks); a browser phone
    keeps none: its password is derived from the daemon's phone key and ``generation``
    (phones.credentials), so it can be handed to the agent's desktop at sign-in."""

    __tablename__ = "phones"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(64), unique=True)
    agent: Mapped[str] = mapped_column(BoundedText(64), index=True)
    kind: Mapped[str] = mapped_column(BoundedText(8))
    label: Mapped[str] = mapped_column(BoundedText(64), default="")
    realm: Mapped[str] = mapped_column(BoundedText(64), default="")
    ha1: Mapped[str] = mapped_column(BoundedText(64), default="")
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PhoneLocationRow(Base):
    """The server a phone registered on last (a cluster): its contact, when it registered
    (the last registration wins) and when that registration expires unless refreshed."""

    __tablename__ = "phone_locations"

    phone: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    server: Mapped[str] = mapped_column(BoundedText(64))
    contact: Mapped[str] = mapped_column(BoundedText(255), default="")
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
