"""The ``[desktop]`` section of the daemon configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DesktopConfig"]


class DesktopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # how long a pop may wait for a customer lookup still running when the phone rings;
    # after that the pop goes out without the card and a call.update brings it later
    lookup_wait_s: float = Field(0.0, ge=0, le=2)
    # a lookup that takes longer frees its concurrency slot and waits up to 30 s more
    # (the pops say "looking up" meanwhile; the card follows in a call.update)
    lookup_timeout_s: float = Field(3.0, gt=0, le=30)
    # customer lookups running at the same time (the rest wait their turn)
    lookup_concurrency: int = Field(16, ge=1, le=256)
    # interactions shown on the card
    history_limit: int = Field(5, ge=0, le=20)
    # calls followed at once (oldest forgotten first); bounds every per-call cache
    max_calls: int = Field(20_000, ge=100, le=1_000_000)
    # an ended pop stays in the agent's reconnect snapshot this long (notes after the call)
    keep_ended_s: float = Field(1800, ge=0, le=86_400)
    # pops per agent kept for the snapshot (newest first)
    pops_per_agent: int = Field(5, ge=1, le=50)
