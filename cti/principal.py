"""Who a request or a websocket speaks for, and the one ranking of roles.

A :class:`Principal` comes from an API token (integrations) or a browser session (a
person's account). ``name`` is who it acts as — for a person linked to an ACD agent,
that agent's name, so "an agent acts only on itself" and "an agent receives only its
own pops" compare one field — while ``login`` is the account's login name (empty for a
token) and is what the audit log records as the actor.

``queues`` / ``agents`` scope a supervisor to the queues and agents of their teams
(``None``: unrestricted; an empty set: none — what a supervisor is left with when a
removal takes their last team, decision 0036). Roles rank agent < supervisor < admin;
:func:`role_at_least` is the one comparison. :attr:`Principal.access` is everything that
decides what it may see and do: two principals of one credential with the same
``access`` are interchangeable (the websocket hub closes a connection whose credential's
``access`` changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ROLES", "ROLE_RANK", "Principal", "role_at_least"]

#: Roles, least to most privileged.
ROLES: tuple[str, ...] = ("agent", "supervisor", "admin")
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}


def role_at_least(role: str, minimum: str) -> bool:
    """True when ``role`` is ``minimum`` or above (unknown roles are below everything)."""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[minimum]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified credential speaks for."""

    token_id: int | None
    name: str
    role: str
    user_id: int | None = None
    session_id: int | None = None
    login: str = ""
    queues: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    #: when the credential expires by itself (a token may never; a session's absolute
    #: expiry): the websocket hub closes what it opened then, with no query
    expires_at: datetime | None = None

    def at_least(self, role: str) -> bool:
        return role_at_least(self.role, role)

    @property
    def actor(self) -> str:
        """What the audit log records: the login of a person, else the token's name."""
        return self.login or self.name

    @property
    def access(self) -> tuple[object, ...]:
        """What it acts as and may see: name, login, role and scope (not its expiry)."""
        return (self.name, self.login, self.role, self.user_id, self.queues, self.agents)

    @property
    def credential(self) -> tuple[str, int]:
        """(kind, id) of the credential: revoking it ends what it opened."""
        if self.session_id is not None:
            return ("session", self.session_id)
        return ("token", self.token_id or 0)

    def sees_queue(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues

    def sees_agent(self, agent: str) -> bool:
        if agent == self.name:
            return True
        if not self.at_least("supervisor"):
            return False
        return self.agents is None or agent in self.agents
