"""Which phones are registered now: the contacts Asterisk holds per AOR (a phone's AOR is
its name). Fed by ``PJSIPShowContacts`` on each (re)connect and by ``ContactStatus``
events (AMI class ``system``) in between; no call event is read here (decision 0016).

:meth:`Registrations.on_event` says when an AOR *gained* a contact (a URI it did not hold:
a phone that registered, or registered again after a reload with a new contact, in
either order of the old contact's removal); a refresh or a qualify of a held contact is
not a gain.
"""

from __future__ import annotations

from cti.ami.protocol import Message

__all__ = ["Registrations"]

_GONE = frozenset({"Removed", "Unreachable"})


class Registrations:
    def __init__(self) -> None:
        self._contacts: dict[str, dict[str, str]] = {}  # aor -> {uri: status}

    def replace_all(self, items: list[Message]) -> None:
        """The contact list Asterisk answered ``PJSIPShowContacts`` with."""
        contacts: dict[str, dict[str, str]] = {}
        for item in items:
            aor = (item.get("ObjectName") or "").split(";@", 1)[0]
            uri = item.get("Uri") or ""
            if aor and uri and item.get("Status") not in _GONE:
                contacts.setdefault(aor, {})[uri] = item.get("Status") or ""
        self._contacts = contacts

    def on_event(self, msg: Message) -> tuple[str, str] | None:
        """Apply a ContactStatus; (aor, uri) when the AOR gained that contact."""
        if msg.event != "ContactStatus":
            return None
        aor, uri, status = msg.get("AOR") or "", msg.get("URI") or "", msg.get("ContactStatus")
        if not aor or not uri:
            return None
        if status in _GONE:
            self._contacts.get(aor, {}).pop(uri, None)
            if not self._contacts.get(aor):
                self._contacts.pop(aor, None)
            return None
        held = self._contacts.setdefault(aor, {})
        gained = uri not in held
        held[uri] = status or ""
        return (aor, uri) if gained else None

    def forget(self, aor: str) -> None:
        self._contacts.pop(aor, None)

    def clear(self) -> None:
        self._contacts = {}

    def registered(self, aor: str) -> bool:
        return bool(self._contacts.get(aor))

    def registered_aors(self) -> list[str]:
        return sorted(self._contacts)

    def contacts(self, aor: str) -> list[str]:
        return sorted(self._contacts.get(aor, {}))
