"""Cleaning a list before it is dialled (pure: no I/O).

:func:`parse_number` turns what a file holds into E.164 or a reason it cannot be dialled;
:func:`region_of` is the number's region from phonenumbers' offline geocoder (号码归属地:
the province/city of a Chinese fixed line or mobile block), in Chinese and English.
:func:`clean` maps rows, normalises numbers and finds duplicates inside the file;
the store then removes do-not-call hits and numbers already in the list, and names the
CRM customers a number belongs to (:mod:`outbound.store`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from cti.phone import region
from outbound.sheets import Mapping, Table

__all__ = ["Candidate", "Cleaned", "clean", "parse_number", "region_of"]

#: entries of each kind listed in a report (the counts are always complete)
REPORT_LIMIT = 1000

_ALLOWED = re.compile(r"\+?[0-9 ().\-/]+", re.ASCII)
_WHY = {
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length",
}


def parse_number(raw: str, region: str) -> tuple[str, str]:
    """(E.164, "") or ("", reason)."""
    text = raw.strip()
    if not text:
        return "", "empty"
    if len(text) > 40 or _ALLOWED.fullmatch(text) is None:
        return "", "not a phone number (digits, + and separators only)"
    try:
        number = phonenumbers.parse(text, region.upper() or None)
    except phonenumbers.NumberParseException as exc:
        return "", f"not a phone number ({_parse_error(exc)})"
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (
        phonenumbers.ValidationResult.IS_POSSIBLE,
        phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ):
        return "", _WHY.get(possible, "not a possible number")
    if not phonenumbers.is_valid_number(number):
        return "", "not a valid number (no such number range)"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""


def _parse_error(exc: phonenumbers.NumberParseException) -> str:
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, "unreadable")


def region_of(e164: str) -> tuple[str, str]:
    """(Chinese, English) region of ``e164`` ("" when the geocoder has none):
    :func:`cti.phone.region`."""
    return region(e164, "zh"), region(e164, "en")


@dataclass
class Candidate:
    line: int
    number: str
    name: str
    data: dict[str, str]
    region: str = ""
    region_en: str = ""


@dataclass
class Cleaned:
    rows: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    rejected_count: int = 0
    duplicate_count: int = 0

    def reject(self, line: int, value: str, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < REPORT_LIMIT:
            self.rejected.append({"line": line, "value": value[:64], "reason": reason})

    def duplicate(self, line: int, number: str, **where: Any) -> None:
        self.duplicate_count += 1
        if len(self.duplicates) < REPORT_LIMIT:
            self.duplicates.append({"line": line, "number": number, **where})


def clean(table: Table, mapping: Mapping, region: str) -> Cleaned:
    """Map, normalise and de-duplicate the rows of ``table`` (lines count the header)."""
    mapping.check(table.header)
    index = {h: i for i, h in enumerate(table.header)}
    out = Cleaned()
    first: dict[str, int] = {}

    def cell(row: list[str], column: str) -> str:
        i = index.get(column, -1) if column else -1
        return row[i].strip() if 0 <= i < len(row) else ""

    for n, row in enumerate(table.rows):
        line = n + 2
        if not any(c.strip() for c in row):
            continue
        out.rows += 1
        raw = cell(row, mapping.phone)
        number, reason = parse_number(raw, region)
        if not number:
            out.reject(line, raw, reason)
            continue
        if number in first:
            out.duplicate(line, number, first_line=first[number])
            continue
        first[number] = line
        zh, en = region_of(number)
        data = {c: cell(row, c) for c in mapping.keep if c not in (mapping.phone, mapping.name)}
        out.candidates.append(Candidate(line, number, cell(row, mapping.name)[:200], data, zh, en))
    return out
