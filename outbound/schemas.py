"""A campaign's settings as the API takes them (validated whole, errors named)."""

from __future__ import annotations

import re
from datetime import date, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["WEEKDAYS", "CampaignIn", "CampaignPatch", "RetryRule", "Window"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00")
#: outcomes a retry rule may be set for
RETRY_OUTCOMES = ("busy", "no_answer", "failed", "congestion", "machine", "abandoned")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Window(_Model):
    """When calls may be placed, in the site's time zone: per weekday a list of
    ["HH:MM", "HH:MM"] ranges (a weekday not listed: no calls), no calls on ``holidays``
    nor, when ``holiday_country`` is set, on that country's public holidays."""

    days: dict[str, list[tuple[str, str]]] = Field(
        default_factory=lambda: {d: [("09:00", "12:00"), ("13:30", "20:00")] for d in WEEKDAYS[:5]}
    )
    holidays: list[date] = Field(default_factory=list, max_length=400)
    holiday_country: str = Field(default="", pattern=r"^([A-Z]{2})?$")

    @field_validator("days")
    @classmethod
    def _days(cls, v: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        for day, ranges in v.items():
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r}: a weekday is one of {', '.join(WEEKDAYS)}")
            if len(ranges) > 8:
                raise ValueError(f"{day}: at most 8 ranges")
            for start, end in ranges:
                if not (_HHMM.fullmatch(start) and _HHMM.fullmatch(end)):
                    raise ValueError(f"{day}: times are HH:MM")
                if start >= end:
                    raise ValueError(f"{day}: {start}-{end} ends before it starts")
        return v

    def ranges(self, weekday: int) -> list[tuple[time, time | None]]:
        """The ranges of ``weekday`` (0: Monday); an end of 24:00 is None."""
        out: list[tuple[time, time | None]] = []
        for start, end in self.days.get(WEEKDAYS[weekday], []):
            out.append((time.fromisoformat(start),
                        None if end == "24:00" else time.fromisoformat(end)))  # fmt: skip
        return out


class RetryRule(_Model):
    """Redial a lead after ``delay_min`` minutes, at most ``max_attempts`` calls in all."""

    delay_min: int = Field(default=60, ge=0, le=60 * 24 * 30)
    max_attempts: int = Field(default=3, ge=1, le=20)


def _default_retry() -> dict[str, RetryRule]:
    return {
        "busy": RetryRule(delay_min=10, max_attempts=4),
        "no_answer": RetryRule(delay_min=120, max_attempts=3),
        "failed": RetryRule(delay_min=30, max_attempts=2),
        "congestion": RetryRule(delay_min=10, max_attempts=3),
        "machine": RetryRule(delay_min=240, max_attempts=2),
        "abandoned": RetryRule(delay_min=30, max_attempts=3),
    }


class CampaignIn(_Model):
    name: str = Field(pattern=NAME)
    title: str = Field(default="", max_length=200)
    mode: Literal["preview", "progressive", "predictive"] = "progressive"
    queue: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9_]{0,63})?$")  # an ACD queue
    agents: list[str] = Field(default_factory=list, max_length=500)
    caller_id: str = Field(default="", pattern=r"^(\+?[0-9]{2,20})?$")
    window: Window = Field(default_factory=Window)
    retry: dict[str, RetryRule] = Field(default_factory=_default_retry)
    #: predictive: the most abandoned (dropped) calls allowed, a share of answered calls
    abandon_cap: float = Field(default=0.03, ge=0.0, le=0.2)
    #: predictive: most calls in flight per free agent
    max_ratio: float = Field(default=3.0, ge=1.0, le=10.0)
    ring_s: int = Field(default=25, ge=5, le=120)
    amd: bool = False
    script: str = Field(default="", max_length=20000)
    #: redial no-answers of a finished list after this many hours (0: never)
    recycle_after_h: int = Field(default=0, ge=0, le=24 * 90)
    #: a personal callback its agent cannot take this many minutes after it is due goes
    #: to anyone (0: it waits for its agent)
    callback_anyone_after_min: int = Field(default=15, ge=0, le=60 * 24 * 7)

    @field_validator("agents")
    @classmethod
    def _agents(cls, v: list[str]) -> list[str]:
        for a in v:
            if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,128}", a):
                raise ValueError("agent names: 1-128 of letters, digits and _.@-")
        return v

    @field_validator("retry")
    @classmethod
    def _retry(cls, v: dict[str, RetryRule]) -> dict[str, RetryRule]:
        unknown = sorted(set(v) - set(RETRY_OUTCOMES))
        if unknown:
            raise ValueError(f"no retry rule for {', '.join(unknown)} "
                             f"(outcomes: {', '.join(RETRY_OUTCOMES)})")  # fmt: skip
        return v


class CampaignPatch(_Model):
    """Any of :class:`CampaignIn`'s fields but the name."""

    title: str | None = Field(default=None, max_length=200)
    mode: Literal["preview", "progressive", "predictive"] | None = None
    queue: str | None = Field(default=None, pattern=r"^([a-z0-9][a-z0-9_]{0,63})?$")
    agents: list[str] | None = Field(default=None, max_length=500)
    caller_id: str | None = Field(default=None, pattern=r"^(\+?[0-9]{2,20})?$")
    window: Window | None = None
    retry: dict[str, RetryRule] | None = None
    abandon_cap: float | None = Field(default=None, ge=0.0, le=0.2)
    max_ratio: float | None = Field(default=None, ge=1.0, le=10.0)
    ring_s: int | None = Field(default=None, ge=5, le=120)
    amd: bool | None = None
    script: str | None = Field(default=None, max_length=20000)
    recycle_after_h: int | None = Field(default=None, ge=0, le=24 * 90)
    callback_anyone_after_min: int | None = Field(default=None, ge=0, le=60 * 24 * 7)
