"""TOTP second factor (RFC 6238 through pyotp): 30 s steps, 6 digits, one step of clock
drift either way, and a code accepted at most once (the last used step is stored)."""

from __future__ import annotations

import time

import pyotp

__all__ = ["new_secret", "provisioning_uri", "verify_code"]

_CODE_LEN = 6


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, login: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=issuer)


def verify_code(secret: str, code: object, last_step: int, now: float | None = None) -> int | None:
    """The time step ``code`` is valid for (newer than ``last_step``), else None."""
    if not isinstance(code, str):
        return None
    code = code.strip().replace(" ", "")
    if len(code) != _CODE_LEN or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    t = time.time() if now is None else now
    step = int(t // totp.interval)
    for candidate in (step, step - 1, step + 1):
        if candidate > last_step and pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
            return candidate
    return None
