"""The phones feature (registered under ``cti.features`` as ``phones``): agents' browser
and SIP phones, provisioned from the store into Asterisk (docs/decisions/0022).

It keeps its own small AMI connection, subscribed to the ``system`` and ``security``
classes only (ContactStatus for registrations; failed authentications), so the call
reader's connection carries no registration traffic and this one no call events. In a
cluster only the node driving the Asterisk server has it open (it follows the daemon's
AMI session: AmiConnected / AmiDisconnected), and a change made on any node reaches the
driver as PhonesChanged on the bus. A phone that gains a contact (registers, or registers
again: a reloaded browser page) is published as PhoneRegistered (call control reconnects
a caller its browser phone lost, decision 0023).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Gauge

from cti.ami.client import AmiClient, NotConnected
from cti.ami.protocol import Message
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    DomainEvent,
    PhoneLocated,
    PhoneRegistered,
    PhonesChanged,
)
from cti.features import FeatureContext
from cti.tasks import BackgroundTasks
from phones.credentials import phone_key
from phones.instance_conf import ports_from_settings, read_ports
from phones.locations import PhoneLocations
from phones.provisioner import Provisioner
from phones.routes import add_routes
from phones.service import PhoneService
from phones.settings import PhonesSettings

__all__ = ["PhonesFeature"]

log = logging.getLogger(__name__)

#: AMI event classes of the phones' own connection
EVENT_CLASSES = "system,security"


class PhonesFeature:
    name = "phones"
    sections: tuple[str, ...] = ("phones",)

    def __init__(self) -> None:
        self.ami: AmiClient | None = None
        self.service: PhoneService | None = None
        self._tasks = BackgroundTasks("phones")
        self._cluster = False
        self._origin = ""
        self._server: str | None = None  # this node's server in a cluster
        self.locations = PhoneLocations(None)
        self._publish: Callable[[DomainEvent], None] = lambda event: None

    def setup(self, ctx: FeatureContext) -> None:
        s = ctx.section("phones", PhonesSettings)
        etc_dir = ctx.settings.asterisk.etc_dir  # only read (ports), never written
        a = ctx.settings.ami
        self.ami = ami = AmiClient(
            a.host, a.port, a.username, a.secret, events=EVENT_CLASSES,
            ping_interval=a.ping_interval, action_timeout=a.action_timeout,
            backoff_max=a.reconnect_max_s,
        )  # fmt: skip
        key = phone_key(s.secret, a.secret)
        self._cluster = bool(ctx.settings.cluster.broker_url)
        c = ctx.settings
        self._server = c.server_name if self._cluster else None
        self.locations = PhoneLocations(self._server)
        self.service = PhoneService(ctx.db, ami, s, key, Provisioner(ami), self.locations)
        ami.add_event_handler(self._on_event)
        ami.add_connected_handler(self._on_connected)
        self._publish = ctx.bus.publish
        ctx.bus.subscribe(PhoneLocated, self._on_located, remote=True)
        self._origin = secrets.token_hex(8)
        self.service.on_change = lambda name: ctx.bus.publish(
            PhonesChanged(at=datetime.now(UTC), phone=name, origin=self._origin)
        )
        ctx.bus.subscribe(PhonesChanged, self._on_changed, remote=True)
        if self._cluster:
            ctx.bus.subscribe(AmiConnected, self._on_driving)
            ctx.bus.subscribe(AmiDisconnected, self._on_not_driving)
        ctx.services.phones = self.service
        svc = self.service
        r = ctx.registry
        Gauge("cti_phones_blocked_addresses", "addresses refused after failed SIP authentications",
              registry=r).set_function(lambda: len(svc.blocker.blocked))  # fmt: skip
        Gauge("cti_phones_blocks", "addresses blocked since start (failed SIP authentications)",
              registry=r).set_function(lambda: svc.blocker.blocks_total)  # fmt: skip
        Gauge("cti_phones_pjsip_reloads", "res_pjsip reloads that applied phone changes",
              registry=r).set_function(lambda: svc.provisioner.reloads)  # fmt: skip
        Gauge("cti_phones_config_messages", "UpdateConfig messages sent for the phones' files",
              registry=r).set_function(lambda: svc.provisioner.messages)  # fmt: skip
        ports = read_ports(etc_dir)  # the rendered transports, when this host has them
        if not ports.sip and ports.ws is None:
            ports = ports_from_settings(ctx.settings.asterisk)
        add_routes(ctx.app, self.service, ports)

    async def start(self) -> None:
        assert self.ami is not None and self.service is not None
        if self._server is not None:  # a cluster: the map as the store holds it
            self.locations.load(await self.service.location_store.all(datetime.now(UTC)))
        if not self._cluster:  # one node: it drives its Asterisk
            await self.ami.start()
        self._tasks.spawn(self._unblock_loop(), "unblock")

    def _on_driving(self, event: AmiConnected) -> None:
        if self.ami is not None and not self.ami.connected:
            self._tasks.spawn(self.ami.start(), "ami-start")

    def _on_not_driving(self, event: AmiDisconnected) -> None:
        if self.ami is not None:
            self._tasks.spawn(self.ami.close(), "ami-close")

    def _on_changed(self, event: PhonesChanged) -> None:
        """Another node changed the phones: the driver gives Asterisk the new file."""
        if event.origin != self._origin and self.ami is not None and self.ami.connected:
            self._tasks.spawn(self._apply_blocks(), "sync")

    async def stop(self) -> None:
        await self._tasks.stop()
        if self.ami is not None:
            await self.ami.close()

    def _on_event(self, msg: Message) -> None:
        assert self.service is not None
        regs = self.service.registrations
        aor = (msg.get("AOR") or "") if msg.event == "ContactStatus" else ""
        before = regs.registered(aor) if aor else False
        gained = regs.on_event(msg)
        if aor and regs.registered(aor) != before:
            self._located(aor, not before, msg)
        elif aor and before and msg.get("ContactStatus") in ("Created", "Updated"):
            self._refreshed(aor, msg)
        if gained is not None:  # registered (again): callcontrol reconnects a dropped call
            phone, uri = gained
            self._publish(PhoneRegistered(datetime.now(UTC), phone,
                                          self.service.owners.get(phone, ""), uri))  # fmt: skip
        blocked = self.service.blocker.on_event(msg, time.monotonic())
        if blocked is not None:
            log.warning(
                "phones: blocking %s for %.0f s after %d failed SIP authentications",
                blocked, self.service.settings.block_s, self.service.settings.block_failures,
            )  # fmt: skip
            self._tasks.spawn(self._apply_blocks(), "block")

    async def _apply_blocks(self) -> None:
        assert self.service is not None
        try:
            await self.service.sync()
        except (NotConnected, TimeoutError) as exc:
            log.warning("phones: the blocked addresses could not be applied now: %s", exc)

    async def _unblock_loop(self) -> None:
        assert self.service is not None
        while True:
            await asyncio.sleep(1.0)
            ended = self.service.blocker.expire(time.monotonic())
            if ended:
                log.info("phones: block ended for %s", ", ".join(ended))
                await self._apply_blocks()

    def _on_located(self, event: PhoneLocated) -> None:
        self.locations.on_located(event)

    def _located(self, phone: str, registered: bool, msg: Message | None = None) -> None:
        """A registration appeared or went away on this node's server (a cluster: the
        store's map first, then every node's map and ACD learn it)."""
        if self._server is not None:
            self._tasks.spawn(self._locate(phone, registered, msg), "locate")

    async def _locate(self, phone: str, registered: bool, msg: Message | None) -> None:
        assert self.service is not None and self._server is not None
        at = datetime.now(UTC)
        places = self.service.location_store
        try:
            if registered:
                contact = (msg.get("URI") if msg is not None else "") or ""
                contact = contact or ",".join(self.service.registrations.contacts(phone))
                await places.registered(phone, self._server, contact, at)
            else:
                await places.gone(phone, self._server)
        except Exception:
            log.exception("phones: the location of %s could not be stored", phone)
        self._publish(PhoneLocated(at, phone, self._server, registered))

    def _refreshed(self, phone: str, msg: Message) -> None:
        """A phone registered here renewed its registration: its stored expiry follows."""
        if self._server is None or self.service is None:
            return
        self._tasks.spawn(self.service.location_store.registered(
            phone, self._server, msg.get("URI") or "", datetime.now(UTC),
            refresh=True), "refresh")  # fmt: skip

    async def _on_connected(self, is_reconnect: bool) -> None:
        """Asterisk (re)connected, maybe restarted: give it every phone, read who is
        registered."""
        assert self.service is not None
        try:
            await self.service.sync()
            await self.service.refresh_contacts()
        except (NotConnected, TimeoutError) as exc:
            log.warning("phones: sync with Asterisk failed (%s); retried at the next connect", exc)
            return
        if self._server is not None:  # where phones are, as the store knows it
            self.locations.load(await self.service.location_store.all(datetime.now(UTC)))
        # registrations made or gone while no node watched this server: a phone not
        # located anywhere yet is located here; one located here but gone is not
        for phone in self.service.registrations.registered_aors():
            if self.locations.where(phone) is None:
                self._located(phone, True)
        for phone in self.locations.located_on(self._server):
            if not self.service.registrations.registered(phone):
                self._located(phone, False)
