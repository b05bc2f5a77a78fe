"""Password hashing (argon2id through argon2-cffi) and the password rules.

Hashing and verifying cost tens of milliseconds and tens of MiB by design, so both run
in a worker thread: the event loop never stalls on a sign-in. A sign-in for a login that
does not exist still verifies against a dummy hash, so the answer takes as long as for
a wrong password (no account enumeration by timing).
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cti.web.errors import BadRequest

__all__ = ["MAX_PASSWORD_LEN", "Passwords", "check_password_rules"]

MAX_PASSWORD_LEN = 256


def check_password_rules(password: object, *, login: str, min_length: int) -> str:
    """The password if acceptable, else :class:`BadRequest` saying why."""
    if not isinstance(password, str):
        raise BadRequest("password: a string", code="weak-password")
    if len(password) < min_length:
        raise BadRequest(f"password: at least {min_length} characters", code="weak-password")
    if len(password) > MAX_PASSWORD_LEN:
        raise BadRequest(f"password: at most {MAX_PASSWORD_LEN} characters", code="weak-password")
    if login and login.lower() in password.lower():
        raise BadRequest("password: must not contain the login name", code="weak-password")
    if len(set(password)) < 4:
        raise BadRequest("password: too repetitive", code="weak-password")
    return password


class Passwords:
    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4):
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; with no stored hash (unknown user)
        the same work is done against a dummy hash and the answer is False."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash("dummy password for unknown logins")
            await asyncio.to_thread(self._verify, self._dummy, password)
            return False
        return await asyncio.to_thread(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
