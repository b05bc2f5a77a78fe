"""What proves who a request or a websocket is: a bearer token or a session cookie.

- ``Authorization: Bearer <token>``: an API token (integrations, scripts). Never a CSRF
  concern: a browser does not attach it on its own.
- the ``cti_session`` cookie (HttpOnly, SameSite=Strict, Secure over TLS): a person's
  browser session. Every state-changing request that relies on it must carry the
  session's CSRF token in ``X-CSRF-Token`` (derived from the cookie's secret, handed to
  the page at sign-in and by ``GET /api/v1/auth/session``) and, when the browser sends
  an Origin, one of the site's origins (:mod:`cti.web.origins`).

:class:`Authenticator` is also what the websocket hub asks whether any credential changed
(:meth:`changes`, one row) and whether open connections' credentials still hold, and what
they may see now (:meth:`live`).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from cti.accounts.service import Accounts, csrf_for
from cti.principal import Principal
from cti.store.credential_changes import credential_mark
from cti.store.db import Database
from cti.store.tokens import live_tokens, verify_token

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "Authenticator", "bearer_of", "csrf_ok"]

SESSION_COOKIE = "cti_session"
CSRF_HEADER = "X-CSRF-Token"


def bearer_of(request: web.Request) -> str | None:
    """The bearer token of the request, "" for a malformed header, None for none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def csrf_ok(request: web.Request, secret: str) -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(sent) and sent.isascii() and hmac.compare_digest(sent, csrf_for(secret))


class Authenticator:
    def __init__(self, db: Database, accounts: Accounts | None = None) -> None:
        self.db = db
        self.accounts = accounts

    async def bearer(self, token: str) -> Principal | None:
        return await verify_token(self.db, token)

    async def session(self, secret: str) -> Principal | None:
        if self.accounts is None:
            return None
        return await self.accounts.verify_session(secret)

    async def changes(self) -> int:
        """The credential change marker (:mod:`cti.store.credential_changes`): while it
        reads the same, no credential was revoked, disabled or deleted, and none's role or
        scope changed, by anyone."""
        return await credential_mark(self.db)

    @property
    def session_recheck_s(self) -> float | None:
        """How often an open session must be checked again to stay in use (None: this
        authenticator knows no sessions)."""
        return None if self.accounts is None else self.accounts.session_recheck_s

    async def live(self, credentials: set[tuple[str, int]]) -> dict[tuple[str, int], Principal]:
        """The credentials among these that still hold, each with the principal verifying
        it would build now (its role and scope as they are now, its expiry); sessions'
        idle timers refreshed: an open websocket is use."""
        tokens = {i for kind, i in credentials if kind == "token"}
        sessions = {i for kind, i in credentials if kind == "session"}
        out: dict[tuple[str, int], Principal] = {
            ("token", i): p for i, p in (await live_tokens(self.db, tokens)).items()
        }
        if self.accounts is not None and sessions:
            live = await self.accounts.live_sessions(sessions, touch=True)
            out.update({("session", i): p for i, p in live.items()})
        return out
