"""Phones in the store (table ``phones``)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from cti.store.db import Database
from cti.store.models import utcnow
from phones.models import KINDS, PhoneRow

__all__ = ["PhoneInvalid", "check_agent", "create", "delete_phone", "get", "list_phones",
           "rotate", "view"]  # fmt: skip

#: An agent name as the ACD accepts it (acd.store.AGENT_RE)
AGENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_PREFIX = {"webrtc": "web", "sip": "sip"}


class PhoneInvalid(ValueError):
    """A request to the phones store that cannot be done (message for the user)."""


def check_agent(agent: Any) -> str:
    if not isinstance(agent, str) or not AGENT_RE.fullmatch(agent):
        raise PhoneInvalid("agent: 1-64 of A-Z a-z 0-9 _ . @ - (an ACD agent's name)")
    return agent


def view(row: PhoneRow) -> dict[str, Any]:
    return {
        "name": row.name, "agent": row.agent, "kind": row.kind, "label": row.label,
        "created_at": row.created_at.isoformat(), "rotated_at": row.rotated_at.isoformat(),
    }  # fmt: skip


async def list_phones(db: Database, agent: str | None = None) -> list[PhoneRow]:
    async with db.session() as s:
        q = select(PhoneRow).order_by(PhoneRow.agent, PhoneRow.id)
        if agent is not None:
            q = q.where(PhoneRow.agent == agent)
        return list((await s.execute(q)).scalars())


async def get(db: Database, name: str) -> PhoneRow | None:
    async with db.session() as s:
        return (await s.execute(select(PhoneRow).where(PhoneRow.name == name))).scalar_one_or_none()


async def create(
    db: Database, agent: str, kind: str, label: str, realm: str, ha1_of: Any, max_per_agent: int
) -> PhoneRow:
    """A new phone for ``agent``; its name is ``<agent>-<web|sip><n>``. ``ha1_of(name)``
    gives the stored hash ('' for a browser phone)."""
    check_agent(agent)
    if kind not in KINDS:
        raise PhoneInvalid(f"kind: one of {', '.join(KINDS)}")
    if not isinstance(label, str) or len(label) > 64 or any(ord(c) < 32 for c in label):
        raise PhoneInvalid("label: up to 64 characters, one line")
    base = _SAFE.sub("_", agent)[:48] + "-" + _PREFIX[kind]
    for _ in range(5):
        try:
            async with db.session() as s, s.begin():
                count = (
                    await s.execute(select(func.count()).where(PhoneRow.agent == agent))
                ).scalar_one()
                if count >= max_per_agent:
                    raise PhoneInvalid(f"an agent has at most {max_per_agent} phones")
                names = set(
                    (
                        await s.execute(select(PhoneRow.name).where(PhoneRow.name.like(base + "%")))
                    ).scalars()
                )
                n = 1
                while f"{base}{n}" in names:
                    n += 1
                name = f"{base}{n}"
                row = PhoneRow(name=name, agent=agent, kind=kind, label=label, realm=realm,
                               ha1=ha1_of(name), generation=1)  # fmt: skip
                s.add(row)
                await s.flush()
                return row
        except IntegrityError:
            continue  # the same name taken meanwhile: count again
    raise PhoneInvalid("could not name the phone (try again)")


async def rotate(db: Database, name: str, realm: str, ha1_of: Any) -> PhoneRow | None:
    async with db.session() as s, s.begin():
        row = (await s.execute(select(PhoneRow).where(PhoneRow.name == name))).scalar_one_or_none()
        if row is None:
            return None
        row.generation += 1
        row.realm = realm
        row.ha1 = ha1_of(name)
        row.rotated_at = utcnow()
        await s.flush()
        return row


async def delete_phone(db: Database, name: str) -> PhoneRow | None:
    async with db.session() as s, s.begin():
        row = (await s.execute(select(PhoneRow).where(PhoneRow.name == name))).scalar_one_or_none()
        if row is None:
            return None
        await s.execute(delete(PhoneRow).where(PhoneRow.id == row.id))
        return row
