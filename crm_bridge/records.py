"""The JSON shape of each CRM row, as the API, webhooks and pops return it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from crm_bridge.keys import tags_list
from crm_bridge.models import Contact, Customer, Email, Interaction, Phone

__all__ = ["contact_dict", "customer_dict", "interaction_dict", "iso"]


def iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def customer_dict(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "company": c.company,
        "tier": c.tier,
        "region": c.region,
        "custom": json.loads(c.custom or "{}"),
        "tags": tags_list(c.tags),
        "notes": c.notes,
        "owner": c.owner,
        "owned_since": iso(c.owned_since),
        "last_contact_at": iso(c.last_contact_at),
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
    }


def contact_dict(c: Contact, phones: Sequence[Phone], emails: Sequence[Email]) -> dict[str, Any]:
    return {
        "id": c.id,
        "customer_id": c.customer_id,
        "name": c.name,
        "title": c.title,
        "birthday": iso(c.birthday),
        "tags": tags_list(c.tags),
        "notes": c.notes,
        "phones": [{"id": p.id, "raw": p.raw, "e164": p.e164, "label": p.label} for p in phones],
        "emails": [e.address for e in emails],
    }


def interaction_dict(i: Interaction) -> dict[str, Any]:
    return {
        "id": i.id,
        "linkedid": i.linkedid,
        "customer_id": i.customer_id,
        "contact_id": i.contact_id,
        "kind": i.kind,
        "caller_num": i.caller_num,
        "agent": i.agent,
        "queue": i.queue,
        "started_at": iso(i.started_at),
        "ended_at": iso(i.ended_at),
        "wait_s": i.wait_s,
        "talk_s": i.talk_s,
        "outcome": i.outcome,
        "disposition": i.disposition,
        "notes": i.notes,
        "recording": i.recording,
        "ivr_path": i.ivr_path,
        "survey_score": i.survey_score,
        "updated_at": iso(i.updated_at),
    }
