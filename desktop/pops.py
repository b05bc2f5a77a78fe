"""What the desktop knows about each call, and the pop JSON built from it (no I/O).

Facts arrive from several features' events in any order (CallEntered, IvrCompleted,
CallQueued, CallOffered...); :class:`CallFacts` gathers them per Linkedid in a bounded,
oldest-first-evicted map. :func:`pop_message` and :func:`card_dict` turn them into the
JSON the contract names (docs/desktop.md). Caller-supplied text is clipped here and is
only ever rendered as text by the page.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cti.phone import region
from cti.services import CustomerCard

__all__ = [
    "HISTORY_FIELDS",
    "CallFacts",
    "FactsTable",
    "Pop",
    "caller_region",
    "card_dict",
    "history_item",
    "pop_message",
]

#: Interaction fields a card shows (the rest of the row stays in the CRM).
HISTORY_FIELDS = (
    "id", "linkedid", "kind", "agent", "queue", "started_at", "ended_at", "outcome",
    "disposition", "notes", "talk_s",
)  # fmt: skip
_NOTES_LEN = 280
_TEXT_LEN = 256


def _clip(value: object, limit: int = _TEXT_LEN) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return text[:limit]


@dataclass
class CallFacts:
    """Everything gathered about one call before and while it rings."""

    linkedid: str
    caller_raw: str = ""
    caller_name: str = ""
    caller_e164: str = ""
    # 号码归属地 of caller_e164, {"zh": ..., "en": ...}: worked out when the number is
    # known (the call's entry), not on the ring (a geocoder lookup each, decision 0027)
    caller_region: dict[str, str] = field(default_factory=dict)
    dnis: str = ""
    entered_at: datetime | None = None
    queued_at: datetime | None = None
    queue: str = ""
    ivr_path: tuple[str, ...] = ()
    ivr_collected: dict[str, str] = field(default_factory=dict)
    customer_id_hint: int | None = None
    # the lookup: None = not started; "pending" while running; then done
    lookup_state: str = "none"  # "none" | "pending" | "done"
    customer: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    agents: set[str] = field(default_factory=set)  # agents holding a pop of this call
    # call control: what the agents before wrote (oldest first), who talks to it now
    notes_from: list[dict[str, str]] = field(default_factory=list)
    handed_to: str = ""


@dataclass
class Pop:
    """One agent's card of one call: the message last sent, kept for resync."""

    agent: str
    linkedid: str
    message: dict[str, Any]
    ended_at: datetime | None = None


class FactsTable:
    """Linkedid -> :class:`CallFacts`, at most ``limit`` entries (oldest dropped)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._facts: OrderedDict[str, CallFacts] = OrderedDict()
        self.evicted = 0

    def get(self, linkedid: str) -> CallFacts | None:
        return self._facts.get(linkedid)

    def ensure(self, linkedid: str) -> CallFacts:
        facts = self._facts.get(linkedid)
        if facts is None:
            facts = self._facts[linkedid] = CallFacts(linkedid)
            while len(self._facts) > self.limit:
                self._facts.popitem(last=False)
                self.evicted += 1
        return facts

    def pop(self, linkedid: str) -> CallFacts | None:
        return self._facts.pop(linkedid, None)

    def __len__(self) -> int:
        return len(self._facts)

    def __iter__(self) -> Iterator[CallFacts]:
        return iter(list(self._facts.values()))


def card_dict(card: CustomerCard) -> dict[str, Any]:
    """The customer card as the pop carries it."""
    birthday: date | None = card.birthday
    return {
        "id": card.customer_id or None,
        "name": _clip(card.name),
        "company": _clip(card.company),
        "tier": _clip(card.tier, 32),
        "owner": _clip(card.owner_agent, 128),
        "tags": [_clip(t, 32) for t in card.tags[:32]],
        "notes": _clip(card.notes, 2000),
        "birthday": birthday.isoformat() if birthday else None,
        "contact_id": card.contact_id,
        "contact_name": _clip(card.contact_name),
    }


def history_item(row: Mapping[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in HISTORY_FIELDS:
        value = row.get(key)
        if isinstance(value, str):
            value = value[:_NOTES_LEN] if key == "notes" else value[:_TEXT_LEN]
        elif isinstance(value, datetime | date):
            value = value.isoformat()
        elif value is not None and not isinstance(value, int | float):
            value = _clip(value)
        out[key] = value
    return out


def caller_region(e164: str) -> dict[str, str]:
    """The pop's ``caller.region``: where ``e164`` belongs, in Chinese and in English."""
    return {"zh": region(e164, "zh"), "en": region(e164, "en")}


def pop_message(
    facts: CallFacts,
    *,
    agent: str,
    kind: str,
    at: datetime,
    queue: str = "",
    state: str = "ringing",
    callback_id: int | None = None,
) -> dict[str, Any]:
    """The ``{"type": "pop", ...}`` message for ``agent`` (contracts.md)."""
    since = facts.queued_at or facts.entered_at
    wait_s = max(0.0, (at - since).total_seconds()) if since is not None else None
    return {
        "type": "pop",
        "linkedid": facts.linkedid,
        "kind": kind,
        "agent": agent,
        "at": at.isoformat(),
        "caller": {
            "raw": _clip(facts.caller_raw, 64),
            "e164": facts.caller_e164,
            "name": _clip(facts.caller_name, 128),
            # 号码归属地 (cti.phone.region, offline data; decision 0026)
            "region": dict(facts.caller_region) or caller_region(facts.caller_e164),
        },
        "customer": facts.customer,
        "customer_pending": facts.lookup_state == "pending",
        "history": facts.history,
        "ivr": {"path": list(facts.ivr_path), "collected": dict(facts.ivr_collected)},
        "queue": queue or facts.queue,
        "wait_s": round(wait_s, 3) if wait_s is not None else None,
        # since when the caller waits (the page counts on from it while the phone rings)
        "waiting_since": since.isoformat() if since is not None else None,
        "dnis": _clip(facts.dnis, 64),
        "state": state,
        "callback_id": callback_id,
        "notes_from": [dict(n) for n in facts.notes_from],
    }
