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
"""

from __future__ import annotations

from datetime import datetime

from cti.events import PhoneLocated

__all__ = ["PhoneLocations"]

PREFIX = "PJSIP/"


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
