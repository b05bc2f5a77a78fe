"""The one role check of the HTTP edge.

The authentication middleware (:mod:`cti.web.app`) puts the verified
:class:`~cti.principal.Principal` on every ``/api/`` request under :data:`PRINCIPAL`.
Handlers call :func:`require_role` (403 below the role) or :func:`has_role` (a bool, for
"supervisors see everything, agents only their own"), or :func:`require_agent_access`
for "an agent acts only on itself, a supervisor on the agents of their scope".
"""

from __future__ import annotations

from aiohttp import web

from cti.principal import ROLE_RANK, Principal
from cti.web.errors import Forbidden, Unauthorized

__all__ = ["PRINCIPAL", "has_role", "principal", "require_agent_access", "require_role"]

PRINCIPAL = web.RequestKey("principal", Principal)


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
