"""Applies the phones to Asterisk without a restart: pushes the phones' files over AMI
(cti.ami.config_push: Asterisk writes them into its own configuration directory, so the
daemon needs no access to the Asterisk host's files) and reloads res_pjsip (``Reload``,
``Module: res_pjsip.so``). Endpoints not in the files disappear with their registrations;
calls in progress are kept. Only what differs from what Asterisk reads back is sent
(``changes_only``): a connect that finds every phone in place rewrites no file, a phone
added, changed or removed rewrites its own file only. One change at a time (a lock): two
changes never push or reload out of order, and a reload follows only a push of every
file (a push cut short leaves the running endpoints as they were; the next change or
connect reads the files back and sends what is still missing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.ami.config_push import ConfigFile, push_changes

__all__ = ["Provisioner"]

log = logging.getLogger(__name__)


class Provisioner:
    def __init__(self, ami: AmiClient) -> None:
        self.ami = ami
        self._lock = asyncio.Lock()
        self.reloads = 0
        self.messages = 0  # UpdateConfig messages sent since start

    async def apply(self, confs: Sequence[ConfigFile]) -> bool:
        """Push ``confs`` (what differs) and reload res_pjsip; False when Asterisk could
        not be told now (the next change or connect pushes again)."""
        async with self._lock:
            try:
                self.messages += await push_changes(self.ami, confs, timeout=10)
                await self.ami.send_action("Reload", {"Module": "res_pjsip.so"}, timeout=10)
            except (NotConnected, TimeoutError, AmiActionError) as exc:
                log.warning("phones: not applied now: %s", exc)
                return False
            self.reloads += 1
            return True
