"""Which browser origins may talk to the daemon: websockets and cookie-signed writes.

Never derived from the request's ``Host`` header (an attacker's page at evil.example
sends ``Origin: http://evil.example`` and ``Host: evil.example`` alike, e.g. through DNS
rebinding). An origin is allowed when it is

- one of the configured public URLs of the site (``[http] public_urls``, e.g.
  ``https://cti.example.com``) or extra ``allowed_origins``; or
- with no public URL configured: a loopback origin (``localhost``, ``127.0.0.1``,
  ``[::1]``) or the daemon's own bind address, on the port the connection actually
  arrived on (read from the socket, not from a header) — what ``make up`` and the tests
  use on 127.0.0.1/localhost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["OriginPolicy", "normalise_origin"]

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(url: str) -> str | None:
    """``scheme://host[:port]`` lower-cased with default ports dropped; None if not a URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _origins(urls: Iterable[str]) -> frozenset[str]:
    return frozenset(o for o in (normalise_origin(u) for u in urls) if o)


@dataclass(frozen=True)
class OriginPolicy:
    public: frozenset[str] = frozenset()  # the site's own URLs
    extra: frozenset[str] = frozenset()  # other trusted origins (an integration's page)
    bind_host: str = "127.0.0.1"

    @classmethod
    def of(
        cls,
        public_urls: Iterable[str] = (),
        extra: Iterable[str] = (),
        bind_host: str = "127.0.0.1",
    ) -> OriginPolicy:
        return cls(_origins(public_urls), _origins(extra), bind_host.lower())

    @property
    def secure_only(self) -> bool:
        """Every configured public URL is https (cookies get ``Secure``)."""
        return bool(self.public) and all(o.startswith("https://") for o in self.public)

    def allows(self, origin: str, request: web.Request) -> bool:
        wanted = normalise_origin(origin)
        if wanted is None:
            return False
        if wanted in self.public or wanted in self.extra:
            return True
        if self.public:
            return False
        parts = urlsplit(wanted)
        host = (parts.hostname or "").lower()
        if host not in _LOOPBACK and host != self.bind_host:
            return False
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        if not sock:
            return False
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        return port == int(sock[1])
