"""The ports phones reach Asterisk on: read back from the instance's rendered
configuration (pjsip.conf transports, http.conf's WebSocket server) when the node sees
it, else as the same settings render them (a node on another host, decision 0031)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cti.config import AsteriskConfig

__all__ = ["Ports", "ports_from_settings", "read_ports"]

_SECTION = re.compile(r"^\[([^\]]+)\]")
_KV = re.compile(r"^\s*([a-z_]+)\s*=\s*([^;]*?)\s*(;.*)?$")


@dataclass(frozen=True, slots=True)
class Ports:
    sip: dict[str, int]  # protocol (udp, tcp, tls) -> port
    ws: int | None
    wss: bool = False


def _sections(path: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = _SECTION.match(line.strip())
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        kv = _KV.match(line)
        if kv and current is not None:
            current.setdefault(kv.group(1), kv.group(2))
    return out


def read_ports(etc_dir: Path | None) -> Ports:
    if etc_dir is None:
        return Ports({}, None)
    sip: dict[str, int] = {}
    transports = {**_sections(etc_dir / "pjsip.conf"),
                  **_sections(etc_dir / "pjsip_transports.conf")}  # fmt: skip
    for section in transports.values():
        if section.get("type") != "transport":
            continue
        proto, bind = section.get("protocol", ""), section.get("bind", "")
        port = bind.rsplit(":", 1)[1] if ":" in bind and not bind.endswith("]") else ""
        if proto in ("udp", "tcp", "tls") and port.isdigit():
            sip.setdefault(proto, int(port))
    http = _sections(etc_dir / "http.conf").get("general", {})
    ws: int | None = None
    tls = http.get("tlsenable", "no").lower() in ("yes", "true", "1")
    raw = http.get("tlsbindaddr", "") if tls else http.get("bindport", "")
    if tls and ":" in raw:
        raw = raw.rsplit(":", 1)[1]
    if http.get("enabled", "no").lower() in ("yes", "true", "1") and raw.isdigit():
        ws = int(raw)
    return Ports(sip, ws, tls)


def ports_from_settings(a: AsteriskConfig) -> Ports:
    """The ports ``cti asterisk up`` renders from these settings (cti.asterisk.sip)."""
    sip = {"udp": a.sip_port}
    if a.sip.tcp:
        sip["tcp"] = a.sip_port
    if a.sip.tls_port:
        sip["tls"] = a.sip.tls_port
    return Ports(sip, a.ws_port)
