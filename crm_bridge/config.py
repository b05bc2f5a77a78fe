"""The ``[crm]`` configuration section."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

WEBHOOK_EVENTS = (
    "call.ringing",
    "call.answered",
    "call.ended",
    "interaction.updated",
    "lead.assigned",
)
WebhookEvent = Literal[
    "call.ringing", "call.answered", "call.ended", "interaction.updated", "lead.assigned"
]


def _all_events() -> list[WebhookEvent]:
    return list(get_args(WebhookEvent))


class WebhookTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    secret: str = Field(min_length=16, repr=False)
    events: list[WebhookEvent] = Field(default_factory=lambda: _all_events())


class ExternalLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # GET {url}?number=+8613800138000 -> JSON {"name": ..., "company": ...} or 404
    url: HttpUrl | None = None
    timeout_s: float = Field(1.0, gt=0, le=10)
    cache_ttl_s: float = Field(300.0, ge=0)
    cache_size: int = Field(10000, ge=1)


class CrmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool_after_days: int = Field(30, ge=1, le=3650)
    pool_check_interval_s: float = Field(3600.0, gt=0)
    dormant_days: int = Field(90, ge=1, le=3650)
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    webhook_queue_size: int = Field(10000, ge=1)
    webhook_attempts: int = Field(5, ge=1, le=20)
    webhook_backoff_s: float = Field(1.0, ge=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    external_lookup: ExternalLookup = ExternalLookup()
