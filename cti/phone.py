"""Phone number normalisation to E.164 (``+8613800138000``) with ``phonenumbers``.

Caller IDs are attacker-controlled: :func:`normalize` accepts any string, never raises,
and returns ``""`` for anything that is not a possible phone number.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import phonenumbers
from phonenumbers import geocoder

__all__ = ["MAX_INPUT_LEN", "normalize", "region"]

log = logging.getLogger(__name__)

#: Longer input is refused before parsing (E.164 has at most 15 digits; this leaves
#: room for separators and an international prefix).
MAX_INPUT_LEN = 48

# Digits, a leading plus, and the usual separators; no letters (vanity numbers are not
# caller IDs, and letters are how "<script>" or "anonymous" would sneak digits through).
_ACCEPTABLE = re.compile(r"\+?[0-9 ().\-/]+", re.ASCII)


def normalize(raw: str, default_region: str) -> str:
    """E.164 form of ``raw`` (national numbers read in ``default_region``, e.g. "CN";
    international prefixes such as CN's 00 are understood), or "" if not possible."""
    if not isinstance(raw, str) or len(raw) > MAX_INPUT_LEN:
        return ""
    region = default_region.strip().upper() if isinstance(default_region, str) else ""
    return _parse_cached(raw.strip(), region)


@lru_cache(maxsize=8192)
def _parse_cached(text: str, region: str) -> str:
    """:func:`normalize`'s parse, remembered: the same numbers are normalised over and
    over (the wallboard does every waiting caller and every agent's peer in every frame:
    9 % of the daemon's event loop during a burst, issue #19)."""
    try:
        if not text or _ACCEPTABLE.fullmatch(text) is None:
            return ""
        number = phonenumbers.parse(text, region or None)
        if not phonenumbers.is_possible_number(number):
            return ""
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return ""
    except Exception:  # never let a caller ID take a call path down
        log.exception("unexpected error normalising a phone number")
        return ""


@lru_cache(maxsize=4096)
def region(e164: str, lang: str = "zh") -> str:
    """号码归属地: where an E.164 number belongs ("北京市", "Beijing"; "中国" / "China"
    when the geocoder knows only the country), in ``lang`` ("zh" or "en"), from
    phonenumbers' offline data; "" when unknown or not a number. Never raises."""
    if not isinstance(e164, str) or not e164.startswith("+") or len(e164) > 16:
        return ""
    try:
        number = _parse_e164(e164)
        if number is None:
            return ""
        return str(geocoder.description_for_number(number, "zh" if lang == "zh" else "en"))[:64]
    except Exception:  # a display nicety never takes a call path down
        log.exception("unexpected error looking up a number's region")
        return ""


@lru_cache(maxsize=1024)
def _parse_e164(e164: str) -> phonenumbers.PhoneNumber | None:
    """One parse for both of :func:`region`'s languages (a pop asks for both)."""
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
