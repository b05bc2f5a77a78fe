"""Where each phone is registered across the Asterisk servers of a cluster (issue #18:
an agent logs in to queues on whichever server their phone is registered).

Every node keeps the same map, fed by :class:`cti.events.PhoneLocated` from every node
(the driver of a server publishes one when a phone's registration appears on it or goes
away). Guarantees:

- the **last registration wins**: a phone that registers on server B while it still has a
  contact on server A (a desk phone moved to another registrar without unregistering) is
  located on B; A's contact no longer places the agent there;
- a registration that goes away on the server the phone is located on leaves it located
  nowhere (its other contacts, if any, are not trusted until they register again);
- on one node (no cluster) nothing is decided here: every interface is placed on the one
  server, as before.

The map is **kept in the store** (:class:`LocationStore`, table ``phone_locations``): the
driver that sees a registration writes it (server, contact, when, until when) before it
publishes the event, refreshes it when the phone registers again, and deletes it when the
registration goes away on that server; a registration whose driver died (nobody saw it
expire) lapses at its own expiry. Every node loads the map at start (a restarted node, or
one that takes a server over, knows where every phone is), and the ACD's question "is this
phone placed here?" is answered from the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from cti.events import PhoneLocated
from cti.store.db import Database
from cti.store.models import clip_text
from phones.models import PhoneLocationRow

__all__ = ["Location", "LocationStore", "PhoneLocations"]

log = logging.getLogger(__name__)

PREFIX = "PJSIP/"
#: a stored registration lapses this long after it was made or last renewed (AMI's
#: ContactStatus events do not carry the contact's expiry; a phone re-registers well
#: within it): what a server whose driver died leaves behind is forgotten after this
DEFAULT_EXPIRES_S = 3600


@dataclass(frozen=True, slots=True)
class Location:
    phone: str
    server: str
    contact: str
    registered_at: datetime
    expires_at: datetime


def _location(row: PhoneLocationRow) -> Location:
    return Location(row.phone, row.server, row.contact, row.registered_at, row.expires_at)


class LocationStore:
    """Where each phone is registered, in the store (every node reads the same)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def registered(self, phone: str, server: str, contact: str, at: datetime,
                         expires_at: datetime | None = None,
                         refresh: bool = False) -> bool:  # fmt: skip
        """``phone`` registered on ``server`` at ``at``: it is located there unless a
        later registration on another server is held. ``refresh``: a registration held
        there was renewed (its expiry extended; a phone located elsewhere stays there).
        True when stored."""
        until = expires_at or at + timedelta(seconds=DEFAULT_EXPIRES_S)
        for _ in range(2):  # a concurrent first insert of the same phone: once more
            try:
                async with self.db.session() as s, s.begin():
                    row = await s.get(PhoneLocationRow, phone, with_for_update=True)
                    if row is None and refresh:
                        return False
                    if row is None:
                        s.add(PhoneLocationRow(phone=phone, server=server,
                                               contact=clip_text(contact, 255),
                                               registered_at=at, expires_at=until))  # fmt: skip
                        return True
                    lapsed = row.expires_at <= at
                    if refresh and (row.server != server or lapsed):
                        return False
                    if row.server != server and at < row.registered_at and not lapsed:
                        return False  # a later registration elsewhere wins
                    if row.server != server or lapsed:
                        row.registered_at = at
                    row.server, row.contact = server, clip_text(contact, 255)
                    row.expires_at = max(until, at)
                    return True
            except IntegrityError:
                continue
        return False

    async def gone(self, phone: str, server: str) -> bool:
        """The registration went away on ``server``: located nowhere, if it was there."""
        async with self.db.session() as s, s.begin():
            result = await s.execute(delete(PhoneLocationRow).where(
                PhoneLocationRow.phone == phone, PhoneLocationRow.server == server))  # fmt: skip
            return bool(getattr(result, "rowcount", 0))

    async def where(self, phone: str, now: datetime) -> Location | None:
        """Where ``phone`` is registered now (None: nowhere, or its registration lapsed)."""
        async with self.db.session() as s:
            row = await s.get(PhoneLocationRow, phone)
            return None if row is None or row.expires_at <= now else _location(row)

    async def all(self, now: datetime) -> list[Location]:
        async with self.db.session() as s:
            rows = await s.scalars(select(PhoneLocationRow)
                                   .where(PhoneLocationRow.expires_at > now)
                                   .order_by(PhoneLocationRow.phone))  # fmt: skip
            return [_location(r) for r in rows]


class PhoneLocations:
    def __init__(self, server: str | None) -> None:
        #: this node's server (None: one node, no cluster)
        self.server = server
        self._at: dict[str, tuple[str, datetime]] = {}  # phone -> (server, registered at)

    def on_located(self, event: PhoneLocated) -> bool:
        """Apply one event; True when the phone's server changed."""
        before = self.where(event.phone)
        if event.registered:
            current = self._at.get(event.phone)
            if current is None or event.at >= current[1]:
                self._at[event.phone] = (event.server, event.at)
        elif before == event.server:
            self._at.pop(event.phone, None)
        return self.where(event.phone) != before

    def load(self, located: list[Location]) -> None:
        """The map as the store holds it (at start, or when this node starts driving)."""
        for loc in located:
            current = self._at.get(loc.phone)
            if current is None or loc.registered_at >= current[1]:
                self._at[loc.phone] = (loc.server, loc.registered_at)

    def where(self, phone: str) -> str | None:
        got = self._at.get(phone)
        return got[0] if got is not None else None

    def located_on(self, server: str | None) -> list[str]:
        return sorted(p for p, (srv, _) in self._at.items() if server is not None and srv == server)

    def phone_of(self, interface: str) -> str | None:
        """The phone an interface names, when this node must decide (a cluster)."""
        if self.server is None or not interface.startswith(PREFIX):
            return None
        return interface[len(PREFIX) :]

    def here(self, phone: str) -> bool:
        """Whether a provisioned phone is located on this node's server."""
        return self.server is None or self.where(phone) == self.server
