"""HTTP ``Range: bytes=…`` parsing for recording playback (RFC 9110 §14).

Only single ranges are served (what ``<audio>`` sends); a syntactically invalid or
multi-range header is ignored (200 with the whole file, as the RFC allows); a valid range
that starts beyond the end is :class:`Unsatisfiable` (416).
"""

from __future__ import annotations

import re

__all__ = ["Unsatisfiable", "content_range", "parse_range"]

_RANGE = re.compile(r"bytes=(?P<first>[0-9]{0,18})-(?P<last>[0-9]{0,18})")


class Unsatisfiable(ValueError):
    """The range lies outside the representation (answer 416 ``bytes */size``)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive byte positions to send, or None for the whole file."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None
    first_s, last_s = m["first"], m["last"]
    if first_s == "" and last_s == "":
        return None
    if first_s == "":  # suffix: the last N bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - n), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid: ignore the header
    if first >= size:
        raise Unsatisfiable
    last = int(last_s) if last_s else size - 1
    return first, min(last, size - 1)


def content_range(first: int, last: int, size: int) -> str:
    return f"bytes {first}-{last}/{size}"
