"""What the daemon gives Asterisk as its phones: an endpoint + aor + auth per phone, on the
``phone-webrtc`` / ``phone-sip`` / ``phone-aor`` templates of the shipped
``pjsip_phones_base.conf`` every file starts from, spread over :data:`SHARDS` files
``pjsip_phones.NN.conf`` by a hash of the name, and ``pjsip_phones.conf`` with the ACL of
addresses blocked after repeated failed registrations (the shipped pjsip.conf includes
them all). Pushed over AMI (cti.ami.config_push, decision 0031): Asterisk writes the
files itself, and each UpdateConfig rewrites one whole file, so small files keep a
change cheap at thousands of phones.

Every value written is checked against a strict pattern here, whatever checked it
before: nothing a request carried can add a line or an option to Asterisk's config.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from cti.ami.config_push import Category, ConfigFile, render_text

__all__ = [
    "BASE_FILE", "FILE_NAME", "SHARDS", "PhoneEntry", "config_file", "config_files", "render",
    "shard_file",
]  # fmt: skip

FILE_NAME = "pjsip_phones.conf"
#: the phone templates, shipped by the instance generation (dialplans/): each push
#: starts from it
BASE_FILE = "pjsip_phones_base.conf"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_REALM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_HA1_RE = re.compile(r"[0-9a-f]{32}")
TEMPLATES = {"webrtc": "phone-webrtc", "sip": "phone-sip"}
BLOCK_ACL = "cti-blocked"
#: the phones' files: a phone's file never changes (a hash of its name), a push rewrites
#: ~1/32 of the phones per message, and a file's GetConfig reply (~1.2 kB a phone) stays
#: under the AMI client's 1 MiB message up to ~800 phones a file (25,000 in all)
SHARDS = 32
_SHARD = "pjsip_phones.{:02d}.conf"


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


def shard_file(name: str) -> str:
    """The file that holds phone ``name`` (pjsip.conf: ``#tryinclude "pjsip_phones.*.conf"``)."""
    return _SHARD.format(zlib.crc32(name.encode()) % SHARDS)


def config_files(
    phones: Iterable[PhoneEntry], blocked: Iterable[str] = ()
) -> tuple[ConfigFile, ...]:
    """What Asterisk is given: ``pjsip_phones.conf`` (the blocked addresses) and every
    shard (an empty one too: a phone removed leaves its file)."""
    shards: dict[str, list[Category]] = {_SHARD.format(i): [] for i in range(SHARDS)}
    for p in sorted(phones, key=lambda e: e.name):
        shards[shard_file(p.name)] += _phone(p)
    index = ConfigFile(FILE_NAME, BASE_FILE, _acl(blocked))
    return (index, *(ConfigFile(f, BASE_FILE, tuple(c)) for f, c in shards.items()))


def config_file(phones: Iterable[PhoneEntry], blocked: Iterable[str] = ()) -> ConfigFile:
    """Every phone and the blocked addresses in the one file ``pjsip_phones.conf`` (what
    daemons before the shards pushed; tests and the push bench's baseline)."""
    cats = [c for p in sorted(phones, key=lambda e: e.name) for c in _phone(p)]
    return ConfigFile(FILE_NAME, BASE_FILE, (*cats, *_acl(blocked)))


def _phone(p: PhoneEntry) -> tuple[Category, ...]:
    _check(p)
    auth = (
        ("type", "auth"),
        ("auth_type", "digest"),
        ("username", p.name),
        ("realm", p.realm),
        ("password_digest", f"md5:{p.ha1}"),
        ("supported_algorithms_uas", "MD5"),
    )
    return (
        Category(p.name, (("aors", p.name), ("auth", p.name)), (TEMPLATES[p.kind],)),
        Category(p.name, (), ("phone-aor",)),
        Category(p.name, auth),
    )


def _acl(blocked: Iterable[str]) -> tuple[Category, ...]:
    nets = sorted({str(ipaddress.ip_network(a, strict=False)) for a in blocked})
    if not nets:  # addresses blocked after repeated failed registrations (phones.blocking)
        return ()
    return (Category(BLOCK_ACL, (("type", "acl"), *(("deny", n) for n in nets))),)
