"""Sending a recording file over HTTP with single-range support (what ``<audio>`` seeks
with): 200 whole file, 206 with ``Content-Range``, 416 ``bytes */size``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from cti.web.errors import NotFound
from recordings.ranges import Unsatisfiable, content_range, parse_range

__all__ = ["CHUNK", "CONTENT_TYPES", "audio_headers", "send_file"]

CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}
CHUNK = 64 * 1024


def audio_headers(suffix: str, download_name: str | None = None) -> dict[str, str]:
    """The headers of every answer with a recording's bytes (here or relayed: peers)."""
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if download_name:
        headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
    return headers


def _open(path: Path) -> tuple[BinaryIO, int]:
    f = path.open("rb")
    return f, os.fstat(f.fileno()).st_size


async def send_file(
    request: web.Request, path: Path, *, download_name: str | None = None
) -> web.StreamResponse:
    """Stream ``path`` (already resolved inside the recordings root) for ``request``."""
    try:
        f, size = await asyncio.to_thread(_open, path)
    except OSError:
        raise NotFound("recording file not found") from None
    try:
        headers = audio_headers(path.suffix, download_name)
        try:
            wanted = parse_range(request.headers.get("Range"), size)
        except Unsatisfiable:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        if wanted is None:
            first, last, status = 0, size - 1, 200
        else:
            first, last = wanted
            status = 206
            headers["Content-Range"] = content_range(first, last, size)
        length = max(0, last - first + 1)
        headers["Content-Length"] = str(length)
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        await asyncio.to_thread(f.seek, first)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
            if not chunk:
                break
            await resp.write(chunk)
            left -= len(chunk)
        await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(f.close)
