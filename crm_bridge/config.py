"""The ``[crm]`` configuration section."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

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


DISPOSITION_CODE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class Disposition(BaseModel):
    """A wrap-up code the agent picks for a call (``[[crm.dispositions]]`` in the config)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=DISPOSITION_CODE)
    label_en: str = Field(min_length=1, max_length=128)
    label_zh: str = Field(min_length=1, max_length=128)


DEFAULT_DISPOSITIONS = (
    Disposition(code="resolved", label_en="Resolved", label_zh="已解决"),
    Disposition(code="follow_up", label_en="Follow up", label_zh="待跟进"),
    Disposition(code="complaint", label_en="Complaint", label_zh="投诉"),
    Disposition(code="sale", label_en="Sale", label_zh="成交"),
    Disposition(code="wrong_number", label_en="Wrong number", label_zh="打错电话"),
    Disposition(code="no_answer", label_en="No answer", label_zh="无人接听"),
)


def _unique_codes(items: list[Disposition]) -> list[Disposition]:
    codes = [d.code for d in items]
    if len(set(codes)) != len(codes):
        raise ValueError("disposition codes must be unique")
    return items


class LeadRules(BaseModel):
    """How a new lead (from the web form, or created without an owner by a supervisor)
    gets its owner: ``manual`` (none: a supervisor assigns it), ``round_robin`` over
    ``agents``, ``region`` / ``industry`` (the first key contained in the lead's region /
    equal to its industry names the agent; no match: round robin)."""

    model_config = ConfigDict(extra="forbid")

    rule: Literal["manual", "round_robin", "region", "industry"] = "manual"
    agents: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)
    by_region: dict[str, Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=dict
    )
    by_industry: dict[str, Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=dict
    )


class LeadForm(BaseModel):
    """``POST /forms/lead?key=…``: a public web form a site posts leads to. Off without
    keys; each key is a shared secret of one site form (16+ characters)."""

    model_config = ConfigDict(extra="forbid")

    keys: list[Annotated[str, Field(min_length=16, max_length=256)]] = Field(
        default_factory=list, repr=False
    )
    per_minute: int = Field(10, ge=1, le=10_000)  # per client address
    burst: int = Field(5, ge=1, le=10_000)
    total_per_minute: int = Field(600, ge=1, le=1_000_000)  # all addresses together


class CrmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool_after_days: int = Field(30, ge=1, le=3650)
    # claims from the public pool one agent may make in 24 hours
    pool_claims_per_day: int = Field(20, ge=1, le=100_000)
    lead_rules: LeadRules = LeadRules()
    lead_form: LeadForm = LeadForm()
    lead_stale_days: int = Field(14, ge=1, le=3650)
    # the won value a month's sales should reach (the dashboard's target), 0: none
    sales_target_monthly: float = Field(0.0, ge=0, le=1e15)
    pool_check_interval_s: float = Field(3600.0, gt=0)
    dormant_days: int = Field(90, ge=1, le=3650)
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    webhook_queue_size: int = Field(10000, ge=1)
    webhook_attempts: int = Field(5, ge=1, le=20)
    webhook_backoff_s: float = Field(1.0, ge=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    external_lookup: ExternalLookup = ExternalLookup()
    dispositions: Annotated[
        list[Disposition], Field(min_length=1, max_length=200), AfterValidator(_unique_codes)
    ] = Field(default_factory=lambda: list(DEFAULT_DISPOSITIONS))
