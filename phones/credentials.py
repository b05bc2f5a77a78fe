"""Phone credentials: generated, strong, shown once, kept only as Asterisk needs them.

A SIP phone's password is random (144 bits) and shown once; the store keeps its HA1 =
MD5(user:realm:password), the only thing Asterisk's digest check needs
(``password_digest = md5:<ha1>``). A browser phone's password is
HMAC-SHA256(phone key, name + generation), so the agent's desktop can be given it at
sign-in while the store keeps nothing from which it follows (docs/decisions/0022).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["browser_password", "ha1", "new_password", "phone_key"]


def new_password() -> str:
    """24 URL-safe characters, 144 random bits (typable on a desk phone's keypad UI)."""
    return secrets.token_urlsafe(18)


def ha1(username: str, realm: str, password: str) -> str:
    """The SIP digest HA1 (RFC 2617/7616, MD5): what ``password_digest = md5:`` holds."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


def phone_key(configured: str, ami_secret: str) -> bytes:
    """The key browser phones' passwords are derived from."""
    if configured:
        return configured.encode()
    return hmac.new(ami_secret.encode(), b"cti phones key", hashlib.sha256).digest()


def browser_password(key: bytes, name: str, generation: int) -> str:
    mac = hmac.new(key, f"browser phone\0{name}\0{generation}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("=")
