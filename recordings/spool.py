"""Recordings from an Asterisk on another host: a sidecar serves its monitor spool, the
node pulls each finished file into its own root (docs/deploy.md, decision 0032).

MixMonitor writes on Asterisk's host. ``cti recordings spool-serve`` runs there (the
daemon's code, no store, no AMI) and answers, for a recording path signed with the
shared ``[recordings] spool_secret``:

- ``GET  /spool/v1/<sig>/<path>``: the file while MixMonitor has closed it (the WAV
  header's sizes match, recordings.audio.wav_closed), **409** while it is still being
  written, 404 when absent;
- ``DELETE`` the same: removes it (after the node has its copy), 404 when absent;
- ``GET  /spool/v1/<sig>``: the recordings on the spool, ``[path, size, age_s]`` each
  (at most ``LIST_MAX``): reconcile adopts those no row names (recordings.reconcile).

``sig`` is an HMAC-SHA256 of the method and the path: a URL is good for that one file
and that one action, nothing else under the spool is reachable (the path also passes
recordings.naming.resolve_inside: a recording name, no symlink, inside the root).

The node (``[recordings] spool_url``) pulls before processing (recordings.processing):
it polls until the file is closed or the processor's wait ends, writes it atomically at
the same relative path under its own root, then deletes it on the sidecar; from there
on everything (compression, playback, retention) works on the node's copy as before.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import aiohttp
from aiohttp import web

from recordings import audio
from recordings.naming import NAME_RE, PathRefused, check_name, resolve_inside, scan

__all__ = ["LIST_MAX", "SpoolClient", "SpoolSigner", "spool_app"]

log = logging.getLogger(__name__)

PREFIX = "/spool/v1"
#: entries in one listing (a spool holds the calls in progress and what nobody pulled)
LIST_MAX = 10_000


class SpoolSigner:
    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("[recordings] spool_secret: at least 16 characters")
        self.key = hashlib.sha256(b"cti-spool\0" + secret.encode()).digest()

    def sig(self, method: str, path: str) -> str:
        mac = hmac.new(self.key, f"{method}\n{path}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def valid(self, method: str, path: str, sig: str) -> bool:
        return hmac.compare_digest(self.sig(method, path).encode(), sig.encode())

    def url_path(self, method: str, path: str) -> str:
        check_name(path)
        return f"{PREFIX}/{self.sig(method, path)}/{path}"

    def list_path(self) -> str:
        return f"{PREFIX}/{self.sig('LIST', '')}"


def spool_app(root: Path, signer: SpoolSigner) -> web.Application:
    """The sidecar's application: GET and DELETE of signed recording paths of ``root``."""

    def _file(request: web.Request) -> Path:
        sig, path = request.match_info["sig"], request.match_info["path"]
        method = "DELETE" if request.method == "DELETE" else "GET"
        if not signer.valid(method, path, sig):
            raise web.HTTPForbidden(text="not a valid spool link\n")
        try:
            return resolve_inside(root, path)
        except PathRefused:
            raise web.HTTPForbidden(text="not a recording path\n") from None

    def _closed(path: Path) -> bool:
        """Whether MixMonitor is done with it (raises OSError when absent)."""
        if not path.is_file():
            raise FileNotFoundError(path)
        return path.suffix != ".wav" or audio.wav_closed(path)

    async def get(request: web.Request) -> web.StreamResponse:
        path = _file(request)
        try:
            closed = await asyncio.to_thread(_closed, path)
        except OSError:
            raise web.HTTPNotFound(text="no such recording\n") from None
        if not closed:
            raise web.HTTPConflict(text="still being recorded\n")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    async def delete(request: web.Request) -> web.Response:
        path = _file(request)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            raise web.HTTPNotFound(text="no such recording\n") from None
        return web.Response(status=204)

    def _listing() -> list[tuple[str, int, float]]:
        now = time.time()
        return [(rel, size, round(now - mtime, 1)) for rel, size, mtime in scan(root)][:LIST_MAX]

    async def listing(request: web.Request) -> web.Response:
        if not signer.valid("LIST", "", request.match_info["sig"]):
            raise web.HTTPForbidden(text="not a valid spool link\n")
        return web.json_response({"files": await asyncio.to_thread(_listing)})

    app = web.Application(client_max_size=1024)
    app.router.add_get(PREFIX + "/{sig}", listing, allow_head=False)
    app.router.add_get(PREFIX + "/{sig}/{path:.+}", get, allow_head=False)
    app.router.add_delete(PREFIX + "/{sig}/{path:.+}", delete)
    return app


class SpoolClient:
    """The node's side: pulls a finished recording from the sidecar at ``base_url``."""

    def __init__(self, base_url: str, signer: SpoolSigner, poll_s: float = 0.3) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.poll_s = poll_s

    async def pull(self, relpath: str, target: Path, timeout: float) -> bool:
        """``relpath`` into ``target`` (atomically) and off the sidecar; False when it was
        not there closed within ``timeout`` (nothing written). A ``target`` that exists
        already (an earlier pull) is kept."""
        if await asyncio.to_thread(target.exists):
            return True
        get_url = self.base_url + self.signer.url_path("GET", relpath)
        deadline = time.monotonic() + timeout
        # no overall limit (an hour's WAV is ~58 MB), but a stalled transfer ends
        limits = aiohttp.ClientTimeout(total=None, connect=5, sock_read=30)
        async with aiohttp.ClientSession(timeout=limits) as http:
            while True:
                try:
                    async with http.get(get_url) as resp:
                        if resp.status == 200:
                            await _receive(resp, target)
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(self.poll_s)
            await self._delete(http, relpath)  # if it fails: reconcile removes it later
        return True

    async def _delete(self, http: aiohttp.ClientSession, relpath: str) -> bool:
        url = self.base_url + self.signer.url_path("DELETE", relpath)
        try:
            async with http.delete(url) as resp:
                return resp.status == 204
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def delete(self, relpath: str) -> bool:
        """Remove ``relpath`` from the spool (whether the sidecar said it did)."""
        async with aiohttp.ClientSession(timeout=_SHORT) as http:
            return await self._delete(http, relpath)

    async def listing(self) -> list[tuple[str, int, float]] | None:
        """``(path, size, age in seconds)`` of the recordings on the spool, None when the
        sidecar cannot be asked (logged). Entries that are not recording names are left
        out."""
        url = self.base_url + self.signer.list_path()
        try:
            async with (
                aiohttp.ClientSession(timeout=_SHORT) as http,
                http.get(url) as resp,
            ):
                if resp.status != 200:
                    log.warning("spool sidecar %s: listing answered %s", self.base_url, resp.status)
                    return None
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("spool sidecar %s: no listing: %r", self.base_url, exc)
            return None
        items = body.get("files") if isinstance(body, dict) else None
        out: list[tuple[str, int, float]] = []
        for item in items if isinstance(items, list) else []:
            if (
                isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and NAME_RE.fullmatch(item[0]) is not None and type(item[1]) is int
                and isinstance(item[2], int | float)
            ):  # fmt: skip
                out.append((item[0], item[1], float(item[2])))
        return out


_SHORT = aiohttp.ClientTimeout(total=60, connect=5)


async def _receive(resp: aiohttp.ClientResponse, target: Path) -> None:
    """The body streamed into a temporary file beside ``target``, renamed when whole."""
    fh, name = await asyncio.to_thread(_temporary, target)
    try:
        with fh:
            async for chunk in resp.content.iter_chunked(256 * 1024):
                await asyncio.to_thread(fh.write, chunk)
        await asyncio.to_thread(os.replace, name, target)
    except BaseException:
        await asyncio.to_thread(_discard, name)
        raise


def _temporary(target: Path) -> tuple[BinaryIO, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".pull-", suffix=".tmp")
    return os.fdopen(fd, "wb"), name


def _discard(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
