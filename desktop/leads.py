"""The campaign lead on an agent's card (the outbound feature's ``CampaignLeadConnected``):
what the page shows of the lead, bounded. Every text is customer data (imported lists):
the page renders it inert."""

from __future__ import annotations

from typing import Any

from cti.events import CampaignLeadConnected

__all__ = ["MAX_FIELDS", "lead_card"]

MAX_FIELDS = 50
_TEXT = 256


def _clip(value: object, limit: int = _TEXT) -> str:
    return (value if isinstance(value, str) else str(value))[:limit]


def lead_card(event: CampaignLeadConnected) -> dict[str, Any]:
    """``lead`` of the pop / ``call.update``: the campaign, the lead's id (for
    ``POST /api/v1/outbound/leads/{id}/outcome``) and its imported columns."""
    return {
        "campaign": _clip(event.campaign, 128),
        "lead_id": event.lead_id,
        "number": _clip(event.number, 64),
        "name": _clip(event.name, 128),
        "region": _clip(event.region, 64),
        "customer_id": event.customer_id,
        "fields": [[_clip(k, 64), _clip(v)] for k, v in event.fields[:MAX_FIELDS]],
    }
