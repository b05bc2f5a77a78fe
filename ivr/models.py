"""The IVR's tables: menu documents (every saved version) and the supervisors' overrides.

The menus, prompts, digit collection, business hours and numbers of the site are one
validated JSON document (:func:`ivr.menus.to_document`); every change stores a new
version, so what ran at any time is known and any version can be restored. The
day/night/emergency overrides are kept apart: supervisors flip them, they are not a
change of the menus. Uploaded recordings (converted) are kept by their content id, so a
node that did not receive the upload can still play them, and the key that signs the
media URLs is kept once for every node (decision 0032).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

__all__ = ["IvrAudioRow", "IvrMediaKeyRow", "IvrOverrideRow", "IvrVersionRow"]

_BigId = BigInteger().with_variant(Integer(), "sqlite")


class IvrVersionRow(Base):
    """One saved version of the site's IVR document; the newest is the one in force."""

    __tablename__ = "ivr_versions"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    #: api (an edit), import (a TOML document sent to the API), file (the configured
    #: menus file, imported at start or reload when its content changed), restore
    source: Mapped[str] = mapped_column(BoundedText(16))
    summary: Mapped[str] = mapped_column(BoundedText(256), default="")
    #: SHA-256 of the imported file's bytes (source "file"), else ""
    file_hash: Mapped[str] = mapped_column(BoundedText(64), default="")
    document: Mapped[str] = mapped_column(Text())  # JSON


class IvrOverrideRow(Base):
    """A supervisor's manual state of one schedule (ivr.schedule.Override)."""

    __tablename__ = "ivr_overrides"

    schedule: Mapped[str] = mapped_column(BoundedText(40), primary_key=True)
    mode: Mapped[str] = mapped_column(BoundedText(16))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(BoundedText(256), default="")
    set_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    set_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IvrAudioRow(Base):
    """An uploaded recording as Asterisk plays it (8 kHz mono 16-bit WAV), by its id (the
    SHA-256 prefix of these bytes, ivr.audio): written once, never changed."""

    __tablename__ = "ivr_audio"

    id: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    wav: Mapped[bytes] = mapped_column(LargeBinary())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IvrMediaKeyRow(Base):
    """The key that signs the media URLs (ivr.media) when ``[ivr] media_secret`` is not
    set: made by the first node that needs it, then the same for every node and every
    start, so a URL Asterisk cached stays good. One row (id 1)."""

    __tablename__ = "ivr_media_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key: Mapped[bytes] = mapped_column(LargeBinary())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
