"""Synchronous needs between features, as small Protocols (design.md §1).

A feature that offers a service sets it on :class:`Services` in its ``setup``; a feature
that needs it reads it at call time (it may be absent: degrade, never crash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CustomerCard:
    """What the IVR, the ACD and the screen pop know about a caller."""

    customer_id: int
    name: str
    company: str = ""
    tier: str = ""  # e.g. "vip", "standard"
    owner_agent: str = ""
    tags: tuple[str, ...] = ()
    notes: str = ""
    birthday: date | None = None
    contact_id: int | None = None
    contact_name: str = ""


class CustomerDirectory(Protocol):
    """Implemented by crm_bridge; used by ivr (recognition), acd (owner routing), pops."""

    async def lookup_number(self, e164: str) -> CustomerCard | None: ...

    async def recent_interactions(
        self, customer_id: int, limit: int = 5
    ) -> list[dict[str, object]]: ...


@dataclass
class Services:
    customer_directory: CustomerDirectory | None = None
    extra: dict[str, object] = field(default_factory=dict)
