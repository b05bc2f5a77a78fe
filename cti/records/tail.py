"""Reading queue_log incrementally (blocking: the caller runs these in a thread).

The position (:class:`TailPosition`) is also the cursor of the PostgreSQL source
(cti.records.postgres): ``inode`` 0, ``offset`` the id of the last row read.

The position is (inode, byte offset after the last complete line). A file with another
inode was rotated: the rest of the old file is read from a sibling that still has the
old inode (``queue_log.1``, ``queue_log-20261123``…) when there is one, then the new
file from its start. A file shorter than the offset was truncated: read from the start.
Re-reading is harmless (lines are keyed by their hash), losing lines is not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TailPosition", "read_all", "read_new"]

MAX_READ = 64 * 1024 * 1024  # per call; the rest comes on the next tail


@dataclass(frozen=True, slots=True)
class TailPosition:
    inode: int
    offset: int


def _read_from(path: Path, offset: int) -> tuple[list[str], int]:
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(MAX_READ)
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    chunk = data[: end + 1]
    return chunk.decode("utf-8", "replace").splitlines(), offset + end + 1


def _sibling_with_inode(path: Path, inode: int) -> Path | None:
    try:
        names = os.listdir(path.parent)
    except OSError:
        return None
    for name in sorted(names):
        if name == path.name or not name.startswith(path.name):
            continue
        candidate = path.parent / name
        try:
            if candidate.stat().st_ino == inode:
                return candidate
        except OSError:
            continue
    return None


def read_new(path: Path, pos: TailPosition | None) -> tuple[list[str], TailPosition | None]:
    """Lines added since ``pos`` and the new position (None: the file does not exist)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return [], pos
    lines: list[str] = []
    offset = 0
    if pos is not None:
        if pos.inode == st.st_ino:
            offset = pos.offset if st.st_size >= pos.offset else 0
        else:
            old = _sibling_with_inode(path, pos.inode)
            if old is not None:
                rest, _ = _read_from(old, pos.offset)
                lines.extend(rest)
    new, end = _read_from(path, offset)
    lines.extend(new)
    return lines, TailPosition(st.st_ino, end)


def read_all(path: Path) -> tuple[list[str], TailPosition | None]:
    """Every line of the rotated siblings (oldest name last is fine: order does not
    matter) and of the file itself, and the position at its end."""
    lines: list[str] = []
    try:
        names = sorted(os.listdir(path.parent))
    except OSError:
        names = []
    for name in names:
        if (
            name != path.name
            and name.startswith(path.name + ".")
            and not name.endswith((".gz", ".bz2", ".xz", ".zst"))
        ):
            lines.extend(_read_from(path.parent / name, 0)[0])
    cur, pos = read_new(path, None)
    lines.extend(cur)
    return lines, pos
