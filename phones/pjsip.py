"""What the daemon writes into Asterisk's ``pjsip_phones.conf`` (included by the shipped
pjsip.conf): an endpoint + aor + auth per phone, on the ``phone-webrtc`` / ``phone-sip``
templates, and the ACL of addresses blocked after repeated failed registrations.

Every value written is checked against a strict pattern here, whatever checked it
before: nothing a request carried can add a line or an option to Asterisk's config.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FILE_NAME", "PhoneEntry", "render"]

FILE_NAME = "pjsip_phones.conf"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_REALM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_HA1_RE = re.compile(r"[0-9a-f]{32}")
TEMPLATES = {"webrtc": "phone-webrtc", "sip": "phone-sip"}
BLOCK_ACL = "cti-blocked"


@dataclass(frozen=True, slots=True)
class PhoneEntry:
    name: str
    kind: str
    realm: str
    ha1: str


def _check(entry: PhoneEntry) -> None:
    if not NAME_RE.fullmatch(entry.name):
        raise ValueError(f"phone name not allowed in pjsip.conf: {entry.name!r}")
    if entry.kind not in TEMPLATES:
        raise ValueError(f"unknown phone kind {entry.kind!r}")
    if not _REALM_RE.fullmatch(entry.realm) or not _HA1_RE.fullmatch(entry.ha1):
        raise ValueError(f"phone {entry.name}: bad realm or credential hash")


def render(phones: Iterable[PhoneEntry], blocked: Iterable[str] = ()) -> str:
    lines = [
        "; Written by the cti daemon (phones feature) from its store: do not edit.",
        "; Changes are applied with a res_pjsip reload; calls in progress are kept.",
        "",
    ]
    for p in sorted(phones, key=lambda e: e.name):
        _check(p)
        lines += [
            f"[{p.name}]({TEMPLATES[p.kind]})",
            f"aors = {p.name}",
            f"auth = {p.name}",
            "",
            f"[{p.name}](phone-aor)",
            "",
            f"[{p.name}]",
            "type = auth",
            "auth_type = digest",
            f"username = {p.name}",
            f"realm = {p.realm}",
            f"password_digest = md5:{p.ha1}",
            "supported_algorithms_uas = MD5",
            "",
        ]
    nets = sorted({str(ipaddress.ip_network(a, strict=False)) for a in blocked})
    if nets:
        lines += [
            "; addresses blocked after repeated failed registrations (phones.blocking)",
            f"[{BLOCK_ACL}]",
            "type = acl",
            *(f"deny = {n}" for n in nets),
            "",
        ]
    return "\n".join(lines)
