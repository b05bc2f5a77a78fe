"""Text written into files a spreadsheet opens (CSV exports), never run as a formula.

Excel and LibreOffice run a CSV cell that starts with ``=``, ``+``, ``-`` or ``@`` as a
formula (CSV injection: ``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``), and a leading tab
or carriage return hides such a start. So a text cell starting with one of them — or
with its full-width form (U+FF1D, U+FF0B, U+FF0D, U+FF20),
which East Asian input methods produce and spreadsheets may convert — gets a leading
``'`` (OWASP's advice). Numbers stay numbers: a negative number is data, not a formula.
Caller names, CRM notes, anything a caller or user typed goes through here; every CSV
export of the product uses this one function.

:func:`restore` undoes :func:`neutralise_text` on import, so an exported file imports back
unchanged.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DANGEROUS", "cell", "neutralise_text", "restore"]

DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise_text(text: str) -> str:
    """``text`` as a spreadsheet cell that is never a formula."""
    return "'" + text if text.startswith(DANGEROUS) else text


def cell(value: Any) -> str:
    """Any value as a CSV cell: numbers as numbers, None empty, booleans true/false,
    lists and mappings as JSON, everything else as neutralised text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return neutralise_text(str(value))


def restore(text: str) -> str:
    """A cell read back from an exported file: the ``'`` :func:`neutralise_text` added is
    removed (only there: before one of :data:`DANGEROUS`)."""
    if text.startswith("'") and text[1:].startswith(DANGEROUS):
        return text[1:]
    return text
