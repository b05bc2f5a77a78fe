"""Agent operations and queue application: what REST (and later the agent websocket)
call, and what keeps Asterisk in line with the store.

- :meth:`AcdService.set_status`: login / logout / pause / unpause of one agent: AMI
  QueueAdd / QueueRemove / QueuePause on every queue the agent has a skill in, then the
  store (current status + history), then :class:`AgentStatusChanged`.
- :meth:`AcdService.apply_queues`: push ``queues_cti.conf`` to Asterisk over AMI
  (cti.ami.config_push: Asterisk writes it, the daemon needs no access to its files) and
  ``QueueReload``.
- :meth:`AcdService.resync`: after every AMI (re)connect: rebuild the live model from
  ``QueueStatus``, re-add logged-in agents Asterisk forgot (it restarted; members are
  not persistent), re-apply the pause state.
- :meth:`AcdService.check_overflow`: move callers who waited too long (or whose queue has
  no member) with AMI Redirect to the queue's overflow: another queue
  (``cti-acd-overflow``), a mailbox (``cti-acd-overflow-vm``) or a callback offer
  (``cti-acd-callback-offer``).
- :meth:`AcdService.owner_target`: for owner-first routing, the owner's personal queue
  and ring time when the owner can take the call now.

Every agent also has a personal queue (:func:`acd.queues_conf.owner_queue`) it joins on
login; per-queue max wait is published to the dialplan as global ``CTI_MAXWAIT_<queue>``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from acd import store
from acd.live import LiveModel
from acd.notifier import AcdNotifier
from acd.outbound import is_own_call
from acd.prompts import render_sounds
from acd.queues_conf import QueueParams, config_file, owner_queue
from acd.settings import AcdSettings
from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.ami.config_push import ConfigFile, push
from cti.events import AgentStatusChanged, QueuesChanged
from cti.services import PromptSpeaker, Services
from cti.store.db import Database

__all__ = ["STATUSES", "AcdService", "AgentNotFound", "OperationRefused"]

log = logging.getLogger(__name__)

STATUSES = ("logged_out", "available", "paused")
OVERFLOW_CONTEXT = "cti-acd-overflow"
OVERFLOW_VM_CONTEXT = "cti-acd-overflow-vm"
CALLBACK_OFFER_CONTEXT = "cti-acd-callback-offer"


class AgentNotFound(LookupError):
    pass


class OperationRefused(ValueError):
    """The operation is not possible (message meant for the API user)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class AcdService:
    def __init__(
        self,
        db: Database,
        ami: AmiClient,
        live: LiveModel,
        notifier: AcdNotifier,
        settings: AcdSettings,
    ) -> None:
        self.db = db
        self.ami = ami
        self.live = live
        self.notifier = notifier
        self.settings = settings
        self._lock = asyncio.Lock()
        self._apply_lock = asyncio.Lock()
        self._queues: dict[str, QueueParams] = {}
        self._owner_ids: set[int] = set()
        self._pushed: ConfigFile | None = None  # what Asterisk was last given whole
        #: this process, as QueuesChanged names the node that made a change
        self.origin = secrets.token_hex(8)
        self._redirected: set[str] = set()
        #: whether an agent is in enforced after-call work (acd.wrapup sets it): its
        #: "wrapup" pause in Asterisk is then not a difference to repair on resync
        self.in_wrapup: Callable[[str], bool] = lambda agent: False
        #: the IVR's text-to-speech (cti.services), read when the queues are applied
        self.prompts: Callable[[], PromptSpeaker | None] = lambda: None
        # the daemon's services (read at call time: the phones feature offers
        # cti.services.PhoneDirectory, the agents' provisioned phones), set by the feature
        self.services: Services | None = None
        #: a cluster (set by the feature): the agent's status is stored whether or not
        #: this node drives a server; each driver applies it on its own server
        self.cluster = False
        self._set_here: set[tuple[str, datetime]] = set()

    def set_here(self, event: AgentStatusChanged) -> bool:
        """Whether this node set (and applied) the status ``event`` reports."""
        key = (event.agent, event.at)
        if key in self._set_here:
            self._set_here.discard(key)
            return True
        return False

    async def placed_here(self, iface: str) -> bool:
        """Whether an agent on ``iface`` is a member on this node's server (a phone in a
        cluster: only where it registered last; cti.services.PhoneDirectory)."""
        directory = self.services.phones if self.services is not None else None
        return await directory.placed_here(iface) if directory is not None else True

    async def _remove_everywhere_here(self, iface: str) -> None:
        for q in list(self.live.queues.values()):
            if iface in q.members:
                await self._queue_remove(q.name, iface)

    async def reconcile(self, agent: str) -> None:
        """Bring this server's memberships of ``agent`` in line with the store and with
        where its phone is (a status set on another node; a phone registered elsewhere)."""
        if not self.ami.connected:
            return
        async with self._lock:
            cfg = await store.get_agent(self.db, agent)
            if cfg is None or not cfg["interface"]:
                return
            iface = cfg["interface"]
            if cfg["status"] == "logged_out" or not await self.placed_here(iface):
                await self._remove_everywhere_here(iface)
                return
            skills = self._memberships(cfg)
            for q in list(self.live.queues.values()):
                if iface in q.members and q.name not in skills:
                    await self._queue_remove(q.name, iface)
            paused = cfg["status"] == "paused"
            for queue, penalty in skills.items():
                await self._queue_add(queue, iface, agent, penalty, paused, cfg["reason"])
            if skills:
                await self._pause(iface, paused, cfg["reason"])

    async def agents_on(self, iface: str) -> list[str]:
        """The agents logged in on ``iface``."""
        return [a["name"] for a in await store.list_agents(self.db) if a["interface"] == iface]

    async def login_interfaces(self, agent: str, cfg: store.AgentConfig) -> list[str]:
        """Where an agent can be logged in, in order: its provisioned phones (the phones
        feature), then its own devices (SIP endpoint, mobile, simulated)."""
        directory = self.services.phones if self.services is not None else None
        phones = await directory.agent_interfaces(agent) if directory is not None else []
        return [
            *phones,
            *(store.interface_of(d["kind"], d["address"], self.settings.remote_context)
              for d in cfg["devices"]),
        ]  # fmt: skip

    def _memberships(self, cfg: store.AgentConfig) -> dict[str, int]:
        """The queues an agent joins on login: its skills, plus its personal queue when
        that exists in Asterisk (queues_cti.conf is pushed)."""
        skills: dict[str, int] = dict(cfg["skills"])
        if cfg["id"] in self._owner_ids:
            skills[owner_queue(cfg["id"])] = 0
        return skills

    def queue_params(self, name: str) -> QueueParams | None:
        return self._queues.get(name)

    # --- agents ---------------------------------------------------------------------------
    async def set_status(
        self, agent: str, status: str, reason: str = "", *, by: str = "", device: int = 0
    ) -> dict[str, Any]:
        """Login (available), pause (with a configured reason), unpause, logout.

        Raises AgentNotFound, OperationRefused, NotConnected/AmiActionError (Asterisk
        refused or is away: nothing is stored then)."""
        if status not in STATUSES:
            raise OperationRefused(f"status must be one of {', '.join(STATUSES)}")
        if status == "paused":
            if reason not in self.settings.pause_reasons:
                raise OperationRefused(
                    f"pause reason must be one of {', '.join(self.settings.pause_reasons)}"
                )
        else:
            reason = ""
        async with self._lock:
            cfg = await store.get_agent(self.db, agent)
            if cfg is None:
                raise AgentNotFound(agent)
            iface = cfg["interface"]
            if status != "logged_out" and not iface:
                devices = await self.login_interfaces(agent, cfg)
                if not devices:
                    raise OperationRefused("the agent has no device to log in on")
                if not 0 <= device < len(devices):
                    raise OperationRefused("no such device")
                iface = devices[device]
            # in a cluster a node that does not drive a server, or whose server is not
            # where the agent's phone is, only stores the status: the driver of the
            # phone's server applies it (AgentStatusChanged reaches every node)
            here = not self.cluster or self.ami.connected
            placed = here and (not iface or await self.placed_here(iface))
            new_agent = cfg["id"] not in self._owner_ids
            if placed and status != "logged_out" and new_agent:
                await self.apply_queues()  # a new agent: its personal queue first
            skills = self._memberships(cfg)
            if not placed:
                if here and iface:
                    await self._remove_everywhere_here(iface)
                if status == "logged_out":
                    iface = ""
            elif status == "logged_out":
                personal = self.live.queues.get(owner_queue(cfg["id"]))
                if personal is not None and iface in personal.members:
                    skills[personal.name] = 0
                if iface:
                    for queue in skills:
                        await self._queue_remove(queue, iface)
                iface = ""
            else:
                for queue, penalty in skills.items():
                    await self._queue_add(queue, iface, agent, penalty, status == "paused", reason)
                if skills:  # already a member: QueueAdd did not change its pause state
                    await self._pause(iface, status == "paused", reason)
            now = utcnow()
            await store.record_status(self.db, agent, status, reason, iface, now, by)
        if self.cluster:
            self._set_here.add((agent, now))
        self.notifier.agent_status_changed(agent, now, status, reason)
        result = await store.get_agent(self.db, agent)
        assert result is not None
        return result

    async def _queue_add(
        self, queue: str, iface: str, name: str, penalty: int, paused: bool, reason: str
    ) -> None:
        headers = {
            "Queue": queue, "Interface": iface, "MemberName": name,
            "Penalty": str(penalty), "Paused": "true" if paused else "false",
        }  # fmt: skip
        if paused:
            headers["Reason"] = reason
        try:
            await self.ami.send_action("QueueAdd", headers)
        except AmiActionError as exc:
            if "already" not in str(exc).lower():
                raise
            await self.ami.send_action(
                "QueuePenalty", {"Queue": queue, "Interface": iface, "Penalty": str(penalty)}
            )

    async def _queue_remove(self, queue: str, iface: str) -> None:
        try:
            await self.ami.send_action("QueueRemove", {"Queue": queue, "Interface": iface})
        except AmiActionError as exc:  # not a member (any more): that is the goal
            log.debug("QueueRemove %s from %s: %s", iface, queue, exc)

    async def _pause(self, iface: str, paused: bool, reason: str) -> None:
        headers = {"Interface": iface, "Paused": "true" if paused else "false"}
        if paused:
            headers["Reason"] = reason
        try:
            await self.ami.send_action("QueuePause", headers)
        except AmiActionError as exc:
            log.debug("QueuePause %s: %s", iface, exc)

    async def _pause_checked(self, iface: str, paused: bool, reason: str) -> None:
        """QueuePause on every queue of ``iface``; Asterisk's refusal raises."""
        headers = {"Interface": iface, "Paused": "true" if paused else "false"}
        if paused:
            headers["Reason"] = reason
        await self.ami.send_action("QueuePause", headers)

    async def apply_skills(self, agent: str) -> None:
        """After an agent's skills changed: bring a logged-in agent's memberships in line."""
        cfg = await store.get_agent(self.db, agent)
        if cfg is None or cfg["status"] == "logged_out" or not cfg["interface"]:
            return
        iface = cfg["interface"]
        skills = self._memberships(cfg)
        for q in self.live.queues.values():
            if iface in q.members and q.name not in skills:
                await self._queue_remove(q.name, iface)
        paused = cfg["status"] == "paused"
        for queue, penalty in skills.items():
            await self._queue_add(queue, iface, agent, penalty, paused, cfg["reason"])

    # --- queues ---------------------------------------------------------------------------
    async def apply_queues(self, *, reload: bool = False) -> bool:
        """Push queues_cti.conf from the store to Asterisk and reload app_queue when it
        changed since the last push (or ``reload``: after a (re)connect, since Asterisk
        may have restarted or another node pushed meanwhile). False when Asterisk is not
        connected now (nothing applied: the next connect pushes). A push Asterisk refused
        raises ConfigPushError; app_queue keeps its running queues then."""
        async with self._apply_lock:  # start and a (re)connect's resync may overlap
            return await self._apply_queues(reload)

    async def _apply_queues(self, reload: bool) -> bool:
        queues = await store.list_queues(self.db)
        self._queues = {q.name: q for q in queues}
        self.live.wrapup_config = {q.name: q.wrapup_s for q in queues}
        owners = {int(a["id"]) for a in await store.list_agents(self.db)}
        speaker = self.prompts()
        sounds = await render_sounds(
            speaker,
            {q.language for q in queues if q.announce_position or q.announce_holdtime},
            {(q.language, q.callback_key) for q in queues if q.callback_key},
        )
        if speaker is not None:  # Asterisk fetches new ones ahead of callers (ivr.media_cache)
            speaker.plays("queues", sounds.names())
        conf = config_file(
            queues, owners, callback_prompt=self.settings.callback_prompt,
            callback_announce_s=self.settings.callback_announce_s,
            phrases=sounds.phrases, callback_sounds=sounds.callback,
        )  # fmt: skip
        if not self.ami.connected:
            return False
        if conf != self._pushed or reload:
            self._pushed = None  # until this push is whole and loaded
            # only what differs is sent: nothing after a (re)connect that finds the file
            # holding it already (a takeover), one message for a queue changed
            await push(self.ami, conf, changes_only=True)
            await self.ami.send_action("QueueReload", {"Parameters": "yes"})
            self._pushed = conf
        self._owner_ids = owners
        for q in queues:  # per-queue max wait and survey language, read by [cti-queue]
            await self.ami.send_action(
                "Setvar", {"Variable": f"CTI_MAXWAIT_{q.name}", "Value": str(q.max_wait_s)}
            )
            await self.ami.send_action(
                "Setvar",
                {"Variable": f"CTI_SURVEY_{q.name}", "Value": q.language if q.survey else ""},
            )
            # the caller's channel language while waiting (numbers said by app_queue)
            announces = q.announce_position or q.announce_holdtime
            await self.ami.send_action(
                "Setvar",
                {"Variable": f"CTI_LANG_{q.name}", "Value": q.language if announces else ""},
            )
        return True

    def queues_changed(self) -> None:
        """Tell every node (the drivers of other servers push the queues too)."""
        self.notifier.publish(QueuesChanged(at=utcnow(), origin=self.origin))

    # --- resync ---------------------------------------------------------------------------
    async def resync(self) -> bool:
        """Queues applied, the live model rebuilt, logged-in agents' memberships restored.
        False when Asterisk refused or went away meanwhile (e.g. app_queue not loaded yet
        right after an Asterisk restart): the caller tries again."""
        try:
            await self.apply_queues(reload=True)
            _, items = await self.ami.send_list_action("QueueStatus")
            self.live.resync(items, utcnow())
            await self._restore_members()
        except (NotConnected, TimeoutError, AmiActionError) as exc:
            log.warning("ACD resync failed: %s", exc)
            return False
        return True

    async def _restore_members(self) -> None:
        restored = False
        for cfg in await store.list_agents(self.db):
            iface = cfg["interface"]
            if cfg["status"] == "logged_out" or not iface:
                continue
            paused = cfg["status"] == "paused"
            if not await self.placed_here(iface):  # its phone is on another server
                for held in list(self.live.queues.values()):
                    if iface in held.members:
                        await self._queue_remove(held.name, iface)
                        restored = True
                continue
            for queue, penalty in self._memberships(cfg).items():
                q = self.live.queues.get(queue)
                m = q.members.get(iface) if q is not None else None
                if m is None:
                    await self._queue_add(queue, iface, cfg["name"], penalty, paused, cfg["reason"])
                    restored = True
                elif m.paused != paused and not (m.paused and self.in_wrapup(cfg["name"])):
                    await self._pause(iface, paused, cfg["reason"])
                    restored = True
        if restored:
            _, items = await self.ami.send_list_action("QueueStatus")
            self.live.resync(items, utcnow())

    # --- overflow -------------------------------------------------------------------------
    def overflow_due(self, now: datetime) -> list[tuple[str, str, QueueParams, int]]:
        """(channel, uniqueid, the queue's parameters, current position) of the callers
        to move now."""
        due: list[tuple[str, str, QueueParams, int]] = []
        for name, q in self.live.queues.items():
            params = self._queues.get(name)
            if params is None or not params.overflow:
                continue
            nobody = not q.members
            waiting = sorted(q.entries.values(), key=lambda e: (e.position, e.joined_at))
            for pos, e in enumerate(waiting, 1):
                if e.uniqueid in self._redirected or not e.channel or is_own_call(e.linkedid):
                    continue
                waited = (now - e.joined_at).total_seconds()
                late = params.overflow_after_s is not None and waited >= params.overflow_after_s
                if nobody or late:
                    due.append((e.channel, e.uniqueid, params, pos))
        return due

    async def check_overflow(self) -> None:
        if not self.ami.connected:
            return
        for channel, uniqueid, params, position in self.overflow_due(utcnow()):
            self._redirected.add(uniqueid)
            action = params.overflow
            try:
                if action == "voicemail":
                    context, exten = OVERFLOW_VM_CONTEXT, params.overflow_mailbox
                elif action == "callback":
                    context, exten = CALLBACK_OFFER_CONTEXT, params.name
                    await self.ami.send_action(
                        "Setvar", {"Channel": channel, "Variable": "CTI_CB_POS",
                                   "Value": str(position)},
                    )  # fmt: skip
                else:
                    context, exten = OVERFLOW_CONTEXT, params.overflow_queue
                await self.ami.send_action(
                    "Redirect",
                    {"Channel": channel, "Context": context, "Exten": exten, "Priority": "1"},
                )
                log.info("overflow: %s -> %s %s", channel, action, exten)
            except (AmiActionError, NotConnected, TimeoutError) as exc:
                log.warning("overflow of %s (%s) failed: %s", channel, action, exc)
        if len(self._redirected) > 10_000:
            live = {u for q in self.live.queues.values() for u in q.entries}
            self._redirected &= live

    # --- owner routing --------------------------------------------------------------------
    async def owner_target(self, queue: str, agent: str) -> tuple[str, int] | None:
        """(personal queue, ring seconds) when ``queue`` routes to owners first and
        ``agent`` is a configured agent who can take a call now; else None."""
        params = self._queues.get(queue)
        if params is None or params.owner_ring_s <= 0:
            return None
        cfg = await store.get_agent(self.db, agent)
        if cfg is None or cfg["status"] != "available":
            return None
        personal = owner_queue(cfg["id"])
        q = self.live.queues.get(personal)
        member = q.members.get(cfg["interface"]) if q is not None else None
        if member is None or member.paused:
            return None
        if member.snapshot(utcnow())["state"] != "idle":
            return None
        return personal, params.owner_ring_s

    async def agent_interface(self, agent: str) -> str:
        """The interface to ring for an agent's outbound call: where it is logged in,
        else its first device. Raises AgentNotFound / OperationRefused."""
        cfg = await store.get_agent(self.db, agent)
        if cfg is None:
            raise AgentNotFound(agent)
        if cfg["interface"]:
            return str(cfg["interface"])
        devices = await self.login_interfaces(agent, cfg)
        if not devices:
            raise OperationRefused("the agent has no device")
        return devices[0]
