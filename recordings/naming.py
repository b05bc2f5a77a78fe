"""Recording file names and where they may live: the one place that decides both.

A name is built only from Asterisk identifiers (Linkedid, Uniqueid) reduced to
``[A-Za-z0-9_-]`` and a timestamp, in a ``YYYY/MM/DD`` directory relative to the
recordings root (Asterisk's monitor directory). Nothing a caller or a client sends ever
becomes part of a path; the HTTP side only knows recording ids, and every stored path is
checked again by :func:`resolve_inside` before a file is opened or deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "EXTENSIONS",
    "NAME_RE",
    "PathRefused",
    "parse_name",
    "recording_path",
    "resolve_inside",
    "safe_id",
    "scan",
    "with_format",
]

EXTENSIONS = {"wav": ".wav", "mp3": ".mp3", "opus": ".ogg"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
NAME_RE = re.compile(
    r"(?P<y>[0-9]{4})/(?P<m>[0-9]{2})/(?P<d>[0-9]{2})/"
    r"cti-(?P<ts>[0-9]{8}T[0-9]{6})-(?P<lid>[A-Za-z0-9_-]{1,64})-(?P<seg>[0-9]{1,3})"
    r"\.(?P<ext>wav|mp3|ogg)"
)


class PathRefused(ValueError):
    """A stored path that is not a recording inside the root (never served)."""


def safe_id(value: str, limit: int = 64) -> str:
    """An Asterisk id reduced to ``[A-Za-z0-9_-]`` (dots become ``_``), never empty."""
    return _UNSAFE.sub("_", value)[:limit] or "x"


def recording_path(linkedid: str, started: datetime, segment: int) -> str:
    """The relative path of a new recording (``segment`` counts starts within one call)."""
    t = started.astimezone(UTC)
    seg = max(0, min(segment, 999))
    return f"{t:%Y/%m/%d}/cti-{t:%Y%m%dT%H%M%S}-{safe_id(linkedid)}-{seg}.wav"


def with_format(relpath: str, fmt: str) -> str:
    """The same recording's path in another format (``mp3``, ``opus``, ``wav``)."""
    check_name(relpath)
    return relpath.rsplit(".", 1)[0] + EXTENSIONS[fmt]


def check_name(relpath: str) -> re.Match[str]:
    m = NAME_RE.fullmatch(relpath)
    if m is None:
        raise PathRefused("not a recording path")
    return m


def parse_name(relpath: str) -> tuple[str, datetime, int]:
    """(linkedid as filtered, start time, segment) of a recording path."""
    m = check_name(relpath)
    started = datetime.strptime(m["ts"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return m["lid"], started, int(m["seg"])


def resolve_inside(root: Path, relpath: str) -> Path:
    """The real file for ``relpath`` under ``root``, or :class:`PathRefused`.

    Refuses anything that is not a recording name (so ``..``, ``%2e%2e``, absolute
    paths, backslashes and NUL never get as far as the file system), symlinks, and any
    path whose resolved form is outside the resolved root.
    """
    if not isinstance(relpath, str) or len(relpath) > 200:
        raise PathRefused("not a recording path")
    check_name(relpath)
    real_root = root.resolve()
    candidate = real_root / relpath
    # no component may be a symlink (a link inside the root could point anywhere)
    probe = real_root
    for part in relpath.split("/"):
        probe = probe / part
        if probe.is_symlink():
            raise PathRefused("symlink in a recording path")
    resolved = candidate.resolve()
    if not resolved.is_relative_to(real_root):
        raise PathRefused("outside the recordings root")
    return resolved


def scan(root: Path) -> list[tuple[str, int, float]]:
    """(relative path, size, mtime) of every file that looks like one of ours."""
    out: list[tuple[str, int, float]] = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
        for name in filenames:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if NAME_RE.fullmatch(rel) is None or full.is_symlink():
                continue
            with contextlib.suppress(OSError):
                st = full.stat()
                out.append((rel, st.st_size, st.st_mtime))
    return out
