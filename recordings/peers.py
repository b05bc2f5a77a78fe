"""Any node plays any recording (decision 0033): a node whose root lacks a recording's
file relays the bytes from the node that holds it.

Each node that processed a recording is its holder (``recordings.node``; "" on a single
node or a root every node shares). A node with ``[cluster] http_url`` writes it to
``recording_nodes`` at start. Asked for a recording it does not have (the bearer route
``/api/v1/recordings/{id}/audio`` or a signed ``/recordings/media/{id}`` link), a node
that has authorized the viewer as always (and audited the listen) asks the holder for
``GET /recordings/peer/v1/{id}?e&s``, signed with a key derived from ``[recordings]
url_secret`` for that recording and a minute, passing the viewer's ``Range`` on, and
streams the answer through (200, 206 with ``Content-Range``, 416): seeking works as on
the holder, nothing is copied to this node's disk, and the event loop only moves
chunks. The holder serves the file its own row names, re-checked with
``resolve_inside`` as every playback is, and never relays further.
"""

from __future__ import annotations

import re

import aiohttp
from aiohttp import web

from cti.web.errors import NotFound, Unavailable
from recordings.models import Recording
from recordings.serve import CHUNK, audio_headers
from recordings.signing import PeerSigner
from recordings.store import RecordingStore

__all__ = ["PEER_ROUTE", "Peers"]

PEER_ROUTE = "/recordings/peer/v1/{id:[0-9]{1,18}}"
_CONTENT_RANGE = re.compile(r"bytes (\d{1,15}-\d{1,15}|\*)/\d{1,15}")
_LENGTH = re.compile(r"\d{1,15}")


class Peers:
    def __init__(self, store: RecordingStore, signer: PeerSigner, node: str) -> None:
        self.store = store
        self.signer = signer
        self.node = node
        self._http: aiohttp.ClientSession | None = None

    def elsewhere(self, row: Recording) -> bool:
        """Whether another node holds the file (a single node never relays)."""
        return bool(self.node and row.node and row.node != self.node)

    async def relay(
        self, request: web.Request, row: Recording, *, suffix: str, download_name: str | None
    ) -> web.StreamResponse:
        """The holder's answer for ``request`` (its ``Range`` passed on) streamed through."""
        base = await self.store.node_url(row.node)
        if not base:
            raise Unavailable(
                f"recording {row.id} is on node {row.node}, which gave no [cluster] http_url"
            )
        headers = {}
        if (wanted := request.headers.get("Range")) is not None:
            headers["Range"] = wanted[:256]
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=30)
            )
        url = base.rstrip("/") + PEER_ROUTE.replace("{id:[0-9]{1,18}}", str(row.id))
        try:
            async with self._http.request(
                request.method, url, params=self.signer.query(row.id), headers=headers,
                allow_redirects=False,
            ) as got:  # fmt: skip
                return await self._through(request, got, suffix, download_name, row)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(
                f"recording {row.id} is on node {row.node}, which cannot be reached: "
                f"{type(exc).__name__}"
            ) from None

    async def _through(
        self, request: web.Request, got: aiohttp.ClientResponse, suffix: str,
        download_name: str | None, row: Recording,
    ) -> web.StreamResponse:  # fmt: skip
        content_range = got.headers.get("Content-Range", "")
        if got.status == 416 and _CONTENT_RANGE.fullmatch(content_range):
            return web.Response(status=416, headers={"Content-Range": content_range})
        if got.status == 404:
            raise NotFound("recording file not found")
        if got.status == 403:
            raise Unavailable(
                f"node {row.node} refused to hand recording {row.id} over: the nodes must "
                "share [recordings] url_secret"
            )
        if got.status not in (200, 206):
            raise Unavailable(f"node {row.node} answered {got.status} for recording {row.id}")
        headers = audio_headers(suffix, download_name)
        if got.status == 206:
            if not _CONTENT_RANGE.fullmatch(content_range):
                raise Unavailable(f"node {row.node} answered a range without Content-Range")
            headers["Content-Range"] = content_range
        length = got.headers.get("Content-Length", "")
        if _LENGTH.fullmatch(length):
            headers["Content-Length"] = length
        out = web.StreamResponse(status=got.status, headers=headers)
        await out.prepare(request)
        if request.method != "HEAD":
            async for chunk in got.content.iter_chunked(CHUNK):
                await out.write(chunk)
        await out.write_eof()
        return out

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
