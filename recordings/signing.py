"""Short-lived signed playback URLs.

The browser's ``<audio>`` element cannot send an ``Authorization`` header, and a bearer
token in a query string ends up in logs and history. Instead the page asks (with its
token) for a URL that names one recording, one principal and an expiry, signed with
HMAC-SHA256; it is useless for anything else and dies after ``url_ttl_s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

__all__ = ["PeerSigner", "UrlSigner"]


def _seconds(expires: str) -> bool:
    """An expiry as signed: up to 12 ASCII digits (str.isdigit also takes '²', which int
    refuses)."""
    return expires.isascii() and expires.isdigit() and len(expires) <= 12


def _usable(name: str) -> bool:
    return 0 < len(name) <= 128 and "\n" not in name and "\r" not in name


class UrlSigner:
    def __init__(self, secret: str = "", ttl_s: int = 300) -> None:
        self.key = secret.encode() if secret else secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _sig(self, recording_id: int, principal: str, expires: int) -> str:
        msg = f"{recording_id}\n{principal}\n{expires}".encode()
        mac = hmac.new(self.key, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def sign(self, recording_id: int, principal: str, now: float | None = None) -> str:
        """The path (with query) to play ``recording_id`` as ``principal``."""
        if not _usable(principal):
            raise ValueError("principal name not usable in a URL")
        expires = int((time.time() if now is None else now) + self.ttl_s)
        sig = self._sig(recording_id, principal, expires)
        who = quote(principal, safe="")
        return f"/recordings/media/{recording_id}?p={who}&e={expires}&s={sig}"

    def verify(
        self, recording_id: int, principal: str, expires: str, sig: str, now: float | None = None
    ) -> bool:
        if not _usable(principal) or not _seconds(expires):
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        good = self._sig(recording_id, principal, int(expires))
        return hmac.compare_digest(good.encode(), sig.encode())


class PeerSigner:
    """A node asking the node that holds a recording for its bytes (recordings.peers):
    HMAC-SHA256 over the recording id and an expiry, with a key derived from
    ``[recordings] url_secret``, which the nodes of a cluster share (the viewer was
    authorized by the asking node; the holder trusts the asking node, not the viewer)."""

    def __init__(self, secret: str, ttl_s: int = 60) -> None:
        base = secret.encode() if secret else secrets.token_bytes(32)
        self.key = hashlib.sha256(b"cti-recordings-peer\0" + base).digest()
        self.ttl_s = ttl_s

    def _sig(self, recording_id: int, expires: int) -> str:
        mac = hmac.new(self.key, f"peer\n{recording_id}\n{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def query(self, recording_id: int, now: float | None = None) -> dict[str, str]:
        expires = int((time.time() if now is None else now) + self.ttl_s)
        return {"e": str(expires), "s": self._sig(recording_id, expires)}

    def verify(self, recording_id: int, expires: str, sig: str, now: float | None = None) -> bool:
        if not _seconds(expires):
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._sig(recording_id, int(expires)).encode(), sig.encode())
