"""Agent operations and queue application: what REST (and later the agent websocket)
call, and what keeps Asterisk in line with the store.

- :meth:`AcdService.set_status`: login / logout / pause / unpause of one agent: AMI
  QueueAdd / QueueRemove / QueuePause on every queue the agent has a skill in, then the
  store (current status + history), then :class:`AgentStatusChanged`.
- :meth:`AcdService.apply_queues`: render ``queues_cti.conf`` and ``QueueReload``.
- :meth:`AcdService.resync`: after every AMI (re)connect: rebuild the live model from
  ``QueueStatus``, re-add logged-in agents Asterisk forgot (it restarted; members are
  not persistent), re-apply the pause state.
- :meth:`AcdService.check_overflow`: move callers who waited too long (or whose queue has
  no member) to the overflow queue with AMI Redirect (context ``cti-acd-overflow``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acd import store
from acd.live import LiveModel
from acd.notifier import AcdNotifier
from acd.queues_conf import FILE_NAME, QueueParams, render, write_atomically
from acd.settings import AcdSettings
from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.store.db import Database

__all__ = ["STATUSES", "AcdService", "AgentNotFound", "OperationRefused"]

log = logging.getLogger(__name__)

STATUSES = ("logged_out", "available", "paused")
OVERFLOW_CONTEXT = "cti-acd-overflow"


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
        self._queues: dict[str, QueueParams] = {}
        self._redirected: set[str] = set()

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
                devices = cfg["devices"]
                if not devices:
                    raise OperationRefused("the agent has no device to log in on")
                if not 0 <= device < len(devices):
                    raise OperationRefused("no such device")
                d = devices[device]
                iface = store.interface_of(d["kind"], d["address"], self.settings.remote_context)
            skills: dict[str, int] = cfg["skills"]
            if status == "logged_out":
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

    async def apply_skills(self, agent: str) -> None:
        """After an agent's skills changed: bring a logged-in agent's memberships in line."""
        cfg = await store.get_agent(self.db, agent)
        if cfg is None or cfg["status"] == "logged_out" or not cfg["interface"]:
            return
        iface = cfg["interface"]
        skills: dict[str, int] = cfg["skills"]
        for q in self.live.queues.values():
            if iface in q.members and q.name not in skills:
                await self._queue_remove(q.name, iface)
        paused = cfg["status"] == "paused"
        for queue, penalty in skills.items():
            await self._queue_add(queue, iface, agent, penalty, paused, cfg["reason"])

    # --- queues ---------------------------------------------------------------------------
    async def apply_queues(self) -> bool:
        """Write queues_cti.conf from the store and reload app_queue. False when there is
        no etc dir configured (nothing applied)."""
        queues = await store.list_queues(self.db)
        self._queues = {q.name: q for q in queues}
        self.live.wrapup_config = {q.name: q.wrapup_s for q in queues}
        etc = self.settings.asterisk_etc_dir
        if etc is None:
            return False
        path = Path(etc) / FILE_NAME
        changed = await asyncio.to_thread(write_atomically, path, render(queues))
        if changed and self.ami.connected:
            await self.ami.send_action("QueueReload", {"Parameters": "yes"})
        return True

    # --- resync ---------------------------------------------------------------------------
    async def resync(self) -> None:
        try:
            await self.apply_queues()
            _, items = await self.ami.send_list_action("QueueStatus")
            self.live.resync(items, utcnow())
            await self._restore_members()
        except (NotConnected, TimeoutError, AmiActionError) as exc:
            log.warning("ACD resync failed: %s", exc)

    async def _restore_members(self) -> None:
        restored = False
        for cfg in await store.list_agents(self.db):
            iface = cfg["interface"]
            if cfg["status"] == "logged_out" or not iface:
                continue
            paused = cfg["status"] == "paused"
            for queue, penalty in cfg["skills"].items():
                q = self.live.queues.get(queue)
                m = q.members.get(iface) if q is not None else None
                if m is None:
                    await self._queue_add(queue, iface, cfg["name"], penalty, paused, cfg["reason"])
                    restored = True
                elif m.paused != paused:
                    await self._pause(iface, paused, cfg["reason"])
                    restored = True
        if restored:
            _, items = await self.ami.send_list_action("QueueStatus")
            self.live.resync(items, utcnow())

    # --- overflow -------------------------------------------------------------------------
    def overflow_due(self, now: datetime) -> list[tuple[str, str, str]]:
        """(channel, uniqueid, target queue) of the callers to move now."""
        due: list[tuple[str, str, str]] = []
        for name, q in self.live.queues.items():
            params = self._queues.get(name)
            if params is None or not params.overflow_queue or params.overflow_after_s is None:
                continue
            nobody = not q.members
            for e in q.entries.values():
                if e.uniqueid in self._redirected or not e.channel:
                    continue
                waited = (now - e.joined_at).total_seconds()
                if nobody or waited >= params.overflow_after_s:
                    due.append((e.channel, e.uniqueid, params.overflow_queue))
        return due

    async def check_overflow(self) -> None:
        if not self.ami.connected:
            return
        for channel, uniqueid, target in self.overflow_due(utcnow()):
            self._redirected.add(uniqueid)
            try:
                await self.ami.send_action(
                    "Redirect",
                    {"Channel": channel, "Context": OVERFLOW_CONTEXT, "Exten": target,
                     "Priority": "1"},
                )  # fmt: skip
                log.info("overflow: %s -> queue %s", channel, target)
            except (AmiActionError, NotConnected, TimeoutError) as exc:
                log.warning("overflow of %s to %s failed: %s", channel, target, exc)
        if len(self._redirected) > 10_000:
            live = {u for q in self.live.queues.values() for u in q.entries}
            self._redirected &= live
