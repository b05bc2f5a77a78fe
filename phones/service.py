"""The phones service: store + credentials + provisioning + registration state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.ami.config_push import ConfigFile
from cti.store.db import Database
from phones import store
from phones.blocking import Blocker
from phones.credentials import browser_password, ha1, new_password
from phones.locations import LocationStore, PhoneLocations
from phones.models import PhoneRow
from phones.pjsip import PhoneEntry, config_files
from phones.provisioner import Provisioner
from phones.registrations import Registrations
from phones.settings import PhonesSettings

__all__ = ["PhoneService"]

log = logging.getLogger(__name__)


class PhoneService:
    def __init__(
        self,
        db: Database,
        ami: AmiClient,
        settings: PhonesSettings,
        key: bytes,
        provisioner: Provisioner,
        locations: PhoneLocations | None = None,
    ) -> None:
        self.db = db
        self.ami = ami
        self.settings = settings
        self.key = key
        self.provisioner = provisioner
        self.registrations = Registrations()
        # where phones are registered across a cluster's servers (one node: everywhere)
        self.locations = locations or PhoneLocations(None)
        self.location_store = LocationStore(db)
        self.owners: dict[str, str] = {}  # phone -> agent, as of the last config written
        # called with a phone's name after each change (the feature publishes PhonesChanged)
        self.on_change: Callable[[str], None] = lambda name: None
        self.blocker = Blocker(
            settings.block_failures, settings.block_window_s, settings.block_s,
            settings.never_block,
        )  # fmt: skip

    # --- credentials ------------------------------------------------------------------------
    def browser_password(self, row: PhoneRow) -> str:
        return browser_password(self.key, row.name, row.generation)

    def _entry(self, row: PhoneRow) -> PhoneEntry:
        if row.kind == "webrtc":
            realm = self.settings.realm
            digest = ha1(row.name, realm, self.browser_password(row))
            return PhoneEntry(row.name, row.kind, realm, digest)
        # a SIP phone keeps the realm its hash was made with (a realm change does not
        # invalidate it; its next rotation takes the new one)
        return PhoneEntry(row.name, row.kind, row.realm, row.ha1)

    # --- provisioning -----------------------------------------------------------------------
    async def config(self) -> tuple[ConfigFile, ...]:
        rows = await store.list_phones(self.db)
        self.owners = {r.name: r.agent for r in rows}
        return config_files([self._entry(r) for r in rows], self.blocker.blocked)

    async def sync(self) -> bool:
        """Give Asterisk every phone (and the blocked addresses): what differs from its
        files is pushed; res_pjsip is reloaded."""
        return await self.provisioner.apply(await self.config())

    async def refresh_contacts(self) -> None:
        try:
            _, items = await self.ami.send_list_action("PJSIPShowContacts")
        except AmiActionError:
            items = []  # "No Contacts found"
        self.registrations.replace_all(items)

    async def _drop_contacts(self, name: str) -> None:
        """Unregister a removed phone: its contacts are kept in astdb by the registrar
        (a reload does not remove them), so delete them there."""
        try:
            _, items = await self.ami.send_list_action("PJSIPShowContacts")
        except AmiActionError:
            items = []
        for item in items:
            obj = item.get("ObjectName") or ""
            if obj.split(";@", 1)[0] == name:
                await self.ami.send_action("DBDel", {"Family": "registrar/contact", "Key": obj})
        self.registrations.forget(name)

    # --- cti.services.PhoneDirectory ---------------------------------------------------------
    async def agent_interfaces(self, agent: str) -> list[str]:
        rows = await store.list_phones(self.db, agent)
        rows.sort(key=lambda r: (not self._registered(r.name), r.kind != "webrtc"))
        return [f"PJSIP/{r.name}" for r in rows]

    def _registered(self, name: str) -> bool:
        return self.registrations.registered(name) or self.locations.where(name) is not None

    async def placed_here(self, interface: str) -> bool:
        """One node: yes. A cluster: a provisioned phone is placed where the store says
        it is registered (phones.locations)."""
        phone = self.locations.phone_of(interface)
        if phone is None or await store.get(self.db, phone) is None:
            return True
        located = await self.location_store.where(phone, datetime.now(UTC))
        return located is not None and located.server == self.locations.server

    # --- the API's operations ---------------------------------------------------------------
    def view(self, row: PhoneRow) -> dict[str, Any]:
        v = store.view(row)
        v["registered"] = self.registrations.registered(row.name)
        v["contacts"] = self.registrations.contacts(row.name)
        return v

    async def create(self, agent: str, kind: str, label: str) -> tuple[PhoneRow, str, bool]:
        """A new phone, its password ('' for a browser phone: the desktop gets it), and
        whether Asterisk has it already."""
        password = new_password() if kind == "sip" else ""
        realm = self.settings.realm
        row = await store.create(
            self.db, agent, kind, label, realm,
            lambda name: ha1(name, realm, password) if password else "",
            self.settings.max_per_agent,
        )  # fmt: skip
        self.on_change(row.name)
        return row, password, await self.sync()

    async def rotate(self, name: str) -> tuple[PhoneRow, str, bool] | None:
        row = await store.get(self.db, name)
        if row is None:
            return None
        password = new_password() if row.kind == "sip" else ""
        realm = self.settings.realm
        row2 = await store.rotate(
            self.db, name, realm, lambda n: ha1(n, realm, password) if password else ""
        )
        if row2 is None:
            return None
        self.on_change(name)
        applied = await self.sync()
        try:  # whoever registered with the old credentials is off the phone now
            await self._drop_contacts(name)
        except (NotConnected, TimeoutError, AmiActionError) as exc:
            log.warning("phone %s rotated; its registration could not be dropped: %s", name, exc)
            applied = False
        return row2, password, applied

    async def delete(self, name: str) -> tuple[PhoneRow, bool] | None:
        row = await store.delete_phone(self.db, name)
        if row is None:
            return None
        self.on_change(name)
        applied = await self.sync()
        try:
            await self._drop_contacts(name)
        except (NotConnected, TimeoutError, AmiActionError) as exc:
            log.warning("phone %s removed; its registration could not be dropped: %s", name, exc)
            applied = False
        return row, applied
