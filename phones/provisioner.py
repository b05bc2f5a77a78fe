"""Applies the phones to Asterisk without a restart: pushes ``pjsip_phones.conf`` over AMI
(cti.ami.config_push: Asterisk writes it into its own configuration directory, so the
daemon needs no access to the Asterisk host's files) and reloads res_pjsip (``Reload``,
``Module: res_pjsip.so``). Endpoints not in the file disappear with their registrations;
calls in progress are kept. One change at a time (a lock): two changes never push or
reload out of order, and a reload follows only a whole push (a push cut short leaves the
running endpoints as they were; the next change or connect pushes the whole file again).
"""

from __future__ import annotations

import asyncio
import logging

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.ami.config_push import ConfigFile, push

__all__ = ["Provisioner"]

log = logging.getLogger(__name__)


class Provisioner:
    def __init__(self, ami: AmiClient) -> None:
        self.ami = ami
        self._lock = asyncio.Lock()
        self.reloads = 0

    async def apply(self, conf: ConfigFile) -> bool:
        """Push ``conf`` and reload res_pjsip; False when Asterisk could not be told now
        (the next connect pushes again)."""
        async with self._lock:
            try:
                await push(self.ami, conf, timeout=10)
                await self.ami.send_action("Reload", {"Module": "res_pjsip.so"}, timeout=10)
            except (NotConnected, TimeoutError, AmiActionError) as exc:
                log.warning("phones: %s not applied now: %s", conf.name, exc)
                return False
            self.reloads += 1
            return True
