"""The one role check of the HTTP edge.

The authentication middleware (:mod:`cti.web.app`) puts the verified
:class:`~cti.principal.Principal` on every ``/api/`` request under :data:`PRINCIPAL`.
Handlers call :func:`require_role` (403 below the role) or :func:`has_role` (a bool, for
"supervisors see everything, agents only their own"), or :func:`require_agent_access`
for "an agent acts only on itself, a supervisor on the agents of their scope".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cti.accounts.audit import AuditLog
from cti.accounts.service import Accounts
from cti.principal import ROLE_RANK, Principal
from cti.web.errors import Forbidden, Unauthorized

__all__ = [
    "ACCOUNTS",
    "AUDIT",
    "PRINCIPAL",
    "address_of",
    "audit",
    "has_role",
    "principal",
    "require_agent_access",
    "require_role",
]

PRINCIPAL = web.RequestKey("principal", Principal)
ACCOUNTS = web.AppKey("accounts", Accounts)
AUDIT = web.AppKey("audit", AuditLog)


def address_of(request: web.Request) -> str:
    """The peer address of the connection (never a forwarded-for header)."""
    return request.remote or ""


async def audit(
    request: web.Request,
    action: str,
    *,
    target_type: str = "",
    target_id: str | int = "",
    before: Any = None,
    after: Any = None,
    detail: str = "",
) -> None:
    """Record a change made through this request in the audit log: the actor and their
    address come from the request. The one function features call for their changes
    (``action`` like ``"queue.update"``; ``before``/``after`` JSON-able snapshots)."""
    who = request.get(PRINCIPAL)
    await request.app[AUDIT].record(
        action, actor=who, address=address_of(request), target_type=target_type,
        target_id=target_id, before=before, after=after, detail=detail,
    )  # fmt: skip


def principal(request: web.Request) -> Principal:
    """The request's principal (401 when the route was reached without one)."""
    if PRINCIPAL not in request:
        raise Unauthorized("sign in or present a bearer token")
    return request[PRINCIPAL]


def require_role(request: web.Request, role: str) -> Principal:
    """The principal, if it has ``role`` or above; otherwise 403."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")
    p = principal(request)
    if not p.at_least(role):
        raise Forbidden(f"needs role {role}", code="needs-role", details={"role": role})
    return p


def has_role(request: web.Request, role: str) -> bool:
    return principal(request).at_least(role)


def require_agent_access(request: web.Request, agent: str) -> Principal:
    """An agent may act only on itself; a supervisor on the agents it may see."""
    p = principal(request)
    if not p.sees_agent(agent):
        if p.at_least("supervisor"):
            raise Forbidden("this agent is outside your teams", code="out-of-scope")
        raise Forbidden("agents may act only on themselves", code="not-yourself")
    return p
