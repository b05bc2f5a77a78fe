"""Render the queue parameters kept in the store into ``queues_cti.conf``.

The shipped ``queues.conf`` ``#tryinclude``s this file *before* its own ``[support]`` and
``[sales]`` (defaults, so those exist before the daemon ever ran): app_queue reads a
queue's parameters from the first category of that name. Every category here is
complete, without a template: app_queue takes ``strategy`` from the first occurrence of
the key, so a template's value would win over ours. Names and values are validated
before they get here (:mod:`acd.store`); nothing free-form reaches the file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUILTIN_QUEUES", "FILE_NAME", "QueueParams", "render", "write_atomically"]

FILE_NAME = "queues_cti.conf"
BUILTIN_QUEUES = ("support", "sales")


@dataclass(frozen=True, slots=True)
class QueueParams:
    name: str
    strategy: str = "rrmemory"
    timeout_s: int = 15
    retry_s: int = 2
    wrapup_s: int = 0
    max_wait_s: int = 300
    max_len: int = 0
    join_empty: bool = True
    leave_empty: bool = False
    music_class: str = "default"
    announce_position: bool = False
    announce_holdtime: bool = False
    announce_frequency_s: int = 0
    service_level_s: int = 20
    short_abandon_s: int = 5
    overflow_after_s: int | None = None
    overflow_queue: str = ""


# what the shipped queue-defaults template sets besides the per-queue parameters
_FIXED = (
    "ringinuse = no",
    "periodic-announce-frequency = 0",
    "setinterfacevar = yes",
    "setqueueentryvar = yes",
    "setqueuevar = yes",
    "reportholdtime = no",
)


def _yn(value: bool) -> str:
    return "yes" if value else "no"


def render(queues: Iterable[QueueParams]) -> str:
    lines = ["; Written by the cti daemon (acd) from its store: do not edit.", ""]
    for q in sorted(queues, key=lambda q: q.name):
        lines += [
            f"[{q.name}]",
            f"strategy = {q.strategy}",
            f"timeout = {q.timeout_s}",
            f"retry = {q.retry_s}",
            f"wrapuptime = {q.wrapup_s}",
            f"maxlen = {q.max_len}",
            # "yes" lets callers in with no member; "strict" refuses when all are
            # paused/unavailable too (join-empty means nobody could answer)
            f"joinempty = {'yes' if q.join_empty else 'paused,unavailable,invalid'}",
            f"leavewhenempty = {'paused,unavailable,invalid' if q.leave_empty else 'no'}",
            f"musicclass = {q.music_class}",
            f"announce-position = {_yn(q.announce_position)}",
            f"announce-holdtime = {_yn(q.announce_holdtime)}",
            f"announce-frequency = {q.announce_frequency_s}",
            f"servicelevel = {q.service_level_s}",
            *_FIXED,
            "",
        ]
    return "\n".join(lines)


def write_atomically(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` (rename over it); False when it was already that."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".queues_cti.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
