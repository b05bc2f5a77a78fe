"""FastAGI routes the ACD's dialplan calls (extensions_acd.conf).

- ``acd-owner`` (queue, owner agent): owner-first routing. Sets ``CTI_OWNER_QUEUE`` (the
  owner's personal queue) and ``CTI_OWNER_RING`` (seconds) when the owner is a configured
  agent who can take the call now and the queue rings owners first; sets nothing
  otherwise. The dialplan FILTER()s both again and never puts the caller-side variable
  ``CTI_OWNER_AGENT`` into a Dial string.
- ``acd-callback`` (queue, position, linkedid): a waiting caller asked to be called back.
  Sets ``CTI_CB_RESULT=ok`` once the request is stored and its placeholder is queued.

Arguments are validated here again; a bad one answers nothing (the dialplan falls back).
"""

from __future__ import annotations

import logging
import re

from acd.callbacks import CallbackError, Callbacks
from acd.service import AcdService
from acd.store import AGENT_RE, NAME_RE
from cti.agi.server import AgiError, AgiSession

__all__ = ["CALLBACK_ROUTE", "OWNER_ROUTE", "AcdAgi"]

log = logging.getLogger(__name__)

OWNER_ROUTE = "acd-owner"
CALLBACK_ROUTE = "acd-callback"
_POS = re.compile(r"[0-9]{1,5}")
_LINKEDID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AcdAgi:
    def __init__(self, service: AcdService, callbacks: Callbacks) -> None:
        self.service = service
        self.callbacks = callbacks

    async def owner(self, agi: AgiSession) -> None:
        args = agi.args
        if len(args) < 2 or not NAME_RE.fullmatch(args[0]) or not AGENT_RE.fullmatch(args[1]):
            return
        target = await self.service.owner_target(args[0], args[1])
        if target is None:
            return
        queue, ring_s = target
        try:
            await agi.set_variable("CTI_OWNER_QUEUE", queue)
            await agi.set_variable("CTI_OWNER_RING", str(ring_s))
        except AgiError as exc:
            log.info("owner routing: %s", exc)

    async def callback(self, agi: AgiSession) -> None:
        args = agi.args
        if len(args) < 3 or not NAME_RE.fullmatch(args[0]):
            return
        position = int(args[1]) if _POS.fullmatch(args[1]) else 0
        linkedid = args[2] if _LINKEDID.fullmatch(args[2]) else ""
        number = agi.env.get("agi_callerid", "")
        name = agi.env.get("agi_calleridname", "")
        if name in ("unknown", "<unknown>"):
            name = ""
        try:
            await self.callbacks.request(
                number=number, queue=args[0], source="queue_key", linkedid=linkedid,
                caller_name=name, position=position,
            )  # fmt: skip
        except CallbackError as exc:
            log.info("callback request refused: %s", exc)
            return
        try:
            await agi.set_variable("CTI_CB_RESULT", "ok")
        except AgiError as exc:
            log.info("callback request: %s", exc)
