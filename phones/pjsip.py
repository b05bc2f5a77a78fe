"""What the daemon gives Asterisk as ``pjsip_phones.conf`` (included by the shipped
pjsip.conf): an endpoint + aor + auth per phone, on the ``phone-webrtc`` / ``phone-sip``
/ ``phone-aor`` templates of the shipped ``pjsip_phones_base.conf`` it starts from, and
the ACL of addresses blocked after repeated failed registrations. Pushed over AMI
(cti.ami.config_push, decision 0031): Asterisk writes the file itself.

Every value written is checked against a strict pattern here, whatever checked it
before: nothing a request carried can add a line or an option to Asterisk's config.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cti.ami.config_push import Category, ConfigFile, render_text

__all__ = ["BASE_FILE", "FILE_NAME", "PhoneEntry", "config_file", "render"]

FILE_NAME = "pjsip_phones.conf"
#: the phone templates, shipped by the instance generation (dialplans/): each push
#: starts from it
BASE_FILE = "pjsip_phones_base.conf"
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
    """:func:`config_file`'s categories as the text Asterisk writes (after the base's)."""
    head = "; pjsip_phones.conf: pushed by the cti daemon (phones) from its store\n\n"
    return head + render_text(config_file(phones, blocked).categories)


def config_file(phones: Iterable[PhoneEntry], blocked: Iterable[str] = ()) -> ConfigFile:
    cats: list[Category] = []
    for p in sorted(phones, key=lambda e: e.name):
        _check(p)
        auth = (
            ("type", "auth"),
            ("auth_type", "digest"),
            ("username", p.name),
            ("realm", p.realm),
            ("password_digest", f"md5:{p.ha1}"),
            ("supported_algorithms_uas", "MD5"),
        )
        cats += [
            Category(p.name, (("aors", p.name), ("auth", p.name)), (TEMPLATES[p.kind],)),
            Category(p.name, (), ("phone-aor",)),
            Category(p.name, auth),
        ]
    nets = sorted({str(ipaddress.ip_network(a, strict=False)) for a in blocked})
    if nets:  # addresses blocked after repeated failed registrations (phones.blocking)
        cats.append(Category(BLOCK_ACL, (("type", "acl"), *(("deny", n) for n in nets))))
    return ConfigFile(FILE_NAME, BASE_FILE, tuple(cats))
