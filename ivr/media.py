"""Prompts served to Asterisk over HTTP (decision 0032).

Asterisk 22 plays any sound name that contains ``://`` through its media cache
(main/file.c ``is_remote_path`` -> main/media_cache.c -> res_http_media_cache): it
downloads the URL once into its cache directory and plays the local copy. So a node on
another host needs no shared directory for what it renders: a text prompt, an uploaded
recording or a queue announcement is named to Asterisk as

    <media_url>/media/v1/<sig>/<name>.wav

where ``name`` is the file's name in ``[ivr] prompt_dir`` (the SHA-256 prefix of what
determines the sound, or ``upload-<SHA-256 of the audio>``) and ``sig`` an HMAC-SHA256
of the name under the node's media key. Guarantees:

- **Nothing to enumerate**: a name is served only with its signature (403 otherwise), so
  a caller who knows one URL cannot derive another; names are a fixed alphabet and the
  file is looked up in ``prompt_dir`` only (no path from the request reaches the
  filesystem: no ``/``, no ``..``, no symlink out).
- **Never stale**: a name is the hash of its content, so a changed prompt is a new URL.
  The response says so (``Cache-Control: public, max-age=<1 year>, immutable`` and an
  ``ETag`` of the name): Asterisk keeps its copy without asking again, and a
  revalidation (``HEAD`` with ``If-None-Match``) gets 304.
- **What Asterisk accepts**: res_http_media_cache takes the file's extension from the
  Content-Type (``audio/wav`` is format_wav's) or else from the URL's path, so both say
  WAV. The URL holds no ``,`` ``&`` ``;`` ``|`` ``?`` or white space: Playback, GET DATA
  and app_queue's ``periodic-announce`` split their lists on those, and queues.conf
  reads ``;`` as a comment.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from cti.web.errors import Forbidden, NotFound

__all__ = ["MEDIA_PATH", "MediaServer", "MediaSigner", "auto_base", "media_key"]

MEDIA_PATH = "/media/v1"
#: a served file's name (without .wav): a text prompt's key or an upload's
NAME = re.compile(r"(?:upload-)?[0-9a-f]{16,64}")
_SIG = re.compile(r"[A-Za-z0-9_-]{22}")
#: the response's lifetime in Asterisk's cache (content-addressed: it never changes)
MAX_AGE_S = 365 * 24 * 3600


def media_key(secret: str) -> bytes | None:
    """The signing key derived from ``[ivr] media_secret``; None without one: then the key
    the store keeps (:meth:`ivr.store.IvrStore.media_key`, made once), the same for every
    node and every start either way, so a URL Asterisk cached stays good."""
    if not secret:
        return None
    return hashlib.sha256(b"cti-media\0" + secret.encode()).digest()


def auto_base(http_host: str, http_port: int, ami_host: str, advertise: str = "") -> str | None:
    """``[ivr] media_url = "auto"``: this node's HTTP as its Asterisk reaches it, or None
    when that cannot be told here (then prompts are played by path):

    - a node listening on one address (``[http] host``): that address, but a loopback one
      only when Asterisk is on this host too (its AMI is on loopback);
    - a node listening on every address (``0.0.0.0``): ``agi.advertise`` when set (the
      address Asterisk reaches this node at), else this host's address on the route to
      Asterisk's AMI (the kernel's choice for a datagram socket connected there: nothing
      is sent);
    - ``[http] port = 0`` (bound at start, a test's node), an IPv6 address or a name that
      does not resolve: None.
    """
    if http_port == 0:
        return None
    if _is_loopback(http_host) and not _is_loopback(ami_host):
        return None  # Asterisk on another host cannot reach this node's loopback
    try:
        everywhere = ipaddress.ip_address(http_host).is_unspecified
    except ValueError:  # a host name: as Asterisk will resolve it
        everywhere = False
    host = (advertise or _route_source(ami_host) or "") if everywhere else http_host
    url = f"http://{host}:{http_port}"
    return url if host and _BASE.fullmatch(url) else None


_BASE = re.compile(r"http://[A-Za-z0-9.-]+:[0-9]{1,5}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _route_source(host: str) -> str | None:
    """This host's address on its route to ``host`` (IPv4), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))  # UDP: a route lookup, no packet
            return str(probe.getsockname()[0])
    except OSError:  # no route, an unresolvable name
        return None


class MediaSigner:
    """Signs and checks the names in media URLs."""

    def __init__(
        self,
        key: bytes | None,
        base_url: str,
        load_key: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        #: None until :meth:`ensure_key` read it (``load_key``: from the store)
        self.key = key
        self.base_url = base_url.rstrip("/")
        self._load_key = load_key
        self._loading = asyncio.Lock()

    async def ensure_key(self) -> None:
        """Read the key (once) if it was not given: before the first URL is made."""
        async with self._loading:
            if self.key is None and self._load_key is not None:
                self.key = await self._load_key()

    def __repr__(self) -> str:  # never the key
        return f"<MediaSigner {self.base_url}>"

    def sig(self, name: str) -> str:
        if self.key is None:
            raise RuntimeError("the media key is not loaded yet")
        mac = hmac.new(self.key, name.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")

    def url(self, name: str) -> str:
        """The URL Asterisk plays ``name`` (a file of ``prompt_dir``, no extension) by."""
        if NAME.fullmatch(name) is None:
            raise ValueError(f"not a media name: {name!r}")
        return f"{self.base_url}{MEDIA_PATH}/{self.sig(name)}/{name}.wav"

    def valid(self, sig: str, name: str) -> bool:
        if NAME.fullmatch(name) is None or _SIG.fullmatch(sig) is None or self.key is None:
            return False
        return hmac.compare_digest(self.sig(name), sig)


class MediaServer:
    """``GET``/``HEAD {MEDIA_PATH}/{sig}/{name}.wav``: a file of ``directory``."""

    def __init__(
        self, signer: MediaSigner, directory: Path, registry: CollectorRegistry | None = None
    ) -> None:
        self.signer = signer
        self.directory = directory
        #: outcome -> requests answered (served, not-modified, refused, missing)
        self.counts: dict[str, int] = {}
        self._metric = Counter(
            "cti_media_requests", "Prompt files requested over HTTP (by Asterisk)",
            ["outcome"], registry=registry,
        )  # fmt: skip

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(MEDIA_PATH + "/{sig}/{file}", self.handle)

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self._metric.labels(outcome).inc()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sig, file = request.match_info["sig"], request.match_info["file"]
        name = file.removesuffix(".wav")
        if not file.endswith(".wav") or not self.signer.valid(sig, name):
            self._count("refused")
            raise Forbidden("not a valid media link", code="bad-media-link")
        etag = f'"{name}"'
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={MAX_AGE_S}, immutable",
            "X-Content-Type-Options": "nosniff",
        }
        if etag in _etags(request.headers.get("If-None-Match", "")):
            self._count("not-modified")
            return web.Response(status=304, headers=headers)
        try:
            data = await asyncio.to_thread(self._read, name)
        except OSError:
            self._count("missing")
            raise NotFound("this prompt is not on this node", code="no-media") from None
        self._count("served")
        return web.Response(body=data, content_type="audio/wav", headers=headers)

    def _read(self, name: str) -> bytes:
        """The file's bytes (a regular file directly inside ``directory``)."""
        path = self.directory / f"{name}.wav"
        if path.is_symlink() or not path.is_file():
            raise FileNotFoundError(path)
        return path.read_bytes()


def _etags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
