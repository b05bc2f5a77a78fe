"""Applies the phones to Asterisk without a restart: writes ``pjsip_phones.conf`` in the
instance's configuration directory and reloads res_pjsip over AMI (``Reload``,
``Module: res_pjsip.so``). Endpoints not in the file disappear with their registrations;
calls in progress are kept. One change at a time (a lock): a reload never reads a file
half written (the file is replaced by rename), and two changes never reload out of order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from phones.pjsip import FILE_NAME

__all__ = ["Provisioner"]

log = logging.getLogger(__name__)


class Provisioner:
    def __init__(self, ami: AmiClient, etc_dir: Path) -> None:
        self.ami = ami
        self.path = etc_dir / FILE_NAME
        self._lock = asyncio.Lock()
        self.reloads = 0

    async def apply(self, text: str) -> bool:
        """Write ``text`` and reload res_pjsip; False when Asterisk could not be told now
        (the file is in place: applied at the next connect or start)."""
        async with self._lock:
            await asyncio.to_thread(self._write, text)
            try:
                await self.ami.send_action("Reload", {"Module": "res_pjsip.so"}, timeout=10)
            except (NotConnected, TimeoutError, AmiActionError) as exc:
                log.warning("phones written to %s; res_pjsip reload failed: %s", self.path, exc)
                return False
            self.reloads += 1
            return True

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, self.path)
