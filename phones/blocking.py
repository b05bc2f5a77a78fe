"""Blocking an address that keeps failing SIP authentication.

Asterisk reports every wrong credential on the AMI ``security`` class
(``ChallengeResponseFailed``: a digest answer that does not match; ``InvalidPassword``).
``block_failures`` of them from one address within ``block_window_s`` put the address
on the blocked list for ``block_s``; the phones service writes the list into
pjsip_phones.conf as a PJSIP ACL (``deny``) and reloads, so Asterisk refuses every SIP
request from it (registrations, calls) until the block ends and the ACL is rewritten
without it. Addresses in ``never_block`` (the carrier, a proxy) are never blocked. The
list lives in the daemon: a restart ends every block.

I/O-free: the caller feeds events and asks what expired, with its own clock.
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from collections.abc import Iterable

from cti.ami.protocol import Message

__all__ = ["FAILURE_EVENTS", "Blocker", "remote_ip"]

FAILURE_EVENTS = frozenset({"ChallengeResponseFailed", "InvalidPassword"})
# RemoteAddress: IPV4/UDP/198.51.100.7/5060, IPV6/UDP/[2001:db8::1]/5060
_REMOTE = re.compile(r"IPV[46]/[A-Z]+/\[?([0-9A-Fa-f:.]+)\]?/[0-9]+")


def remote_ip(value: str) -> str | None:
    m = _REMOTE.fullmatch(value)
    if not m:
        return None
    try:
        return str(ipaddress.ip_address(m.group(1)))
    except ValueError:
        return None


class Blocker:
    def __init__(
        self, failures: int, window_s: float, block_s: float, never: Iterable[str] = ()
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self.block_s = block_s
        self.never = [ipaddress.ip_network(n, strict=False) for n in never]
        self._seen: dict[str, deque[float]] = {}
        self.blocked: dict[str, float] = {}  # address -> until
        self.blocks_total = 0

    def _exempt(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.never)

    def on_event(self, msg: Message, now: float) -> str | None:
        """Count a failed authentication; the address when it becomes blocked now."""
        if self.failures <= 0 or msg.event not in FAILURE_EVENTS or msg.get("Service") != "PJSIP":
            return None
        ip = remote_ip(msg.get("RemoteAddress") or "")
        if ip is None or ip in self.blocked or self._exempt(ip):
            return None
        seen = self._seen.setdefault(ip, deque())
        seen.append(now)
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if len(self._seen) > 10_000:  # a flood of addresses: keep memory bounded
            self._seen = {ip: seen}
        if len(seen) < self.failures:
            return None
        del self._seen[ip]
        self.blocked[ip] = now + self.block_s
        self.blocks_total += 1
        return ip

    def expire(self, now: float) -> list[str]:
        """Addresses whose block ended (removed from the list)."""
        done = [ip for ip, until in self.blocked.items() if until <= now]
        for ip in done:
            del self.blocked[ip]
        return done
