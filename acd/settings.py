"""The ``[acd]`` configuration section."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AcdSettings"]


class AcdSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Unused since queues_cti.conf is pushed over AMI (decision 0031): accepted so that
    #: existing configurations still load; the daemon writes nothing there.
    asterisk_etc_dir: Path | None = None
    #: Pause reasons an agent may choose from.
    pause_reasons: list[str] = Field(
        default_factory=lambda: ["break", "lunch", "meeting", "training", "admin"]
    )
    #: The dialplan context of remote agents' mobile numbers (extensions_acd.conf).
    remote_context: str = "cti-acd-remote"
    #: How often waiting callers are checked for overflow.
    overflow_check_s: float = Field(0.5, gt=0, le=10)
    #: Callbacks: dial attempts before a request is left "unreached", time between them,
    #: and how long a placeholder may wait in its queue before it is queued again.
    callback_attempts: int = Field(3, ge=1, le=20)
    callback_retry_s: int = Field(300, ge=1, le=86400)
    callback_max_wait_s: int = Field(3600, ge=10, le=86400)
    #: What queues with a callback key announce (a sound file name, e.g. a recorded
    #: "press 1 to be called back"), and how often; "" announces nothing.
    callback_prompt: str = Field("", pattern=r"^[A-Za-z0-9_/-]{0,128}$")
    callback_announce_s: int = Field(30, ge=0, le=3600)
    #: Outbound calls (click-to-call, callbacks): how long the agent's device rings
    #: first, then how long the customer's phone rings.
    agent_ring_s: int = Field(30, ge=5, le=300)
    customer_ring_s: int = Field(45, ge=1, le=300)

    @field_validator("pause_reasons")
    @classmethod
    def _reasons(cls, v: list[str]) -> list[str]:
        for r in v:
            if not r or len(r) > 64 or not r.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"pause reason {r!r}: 1-64 letters, digits, '-' or '_'")
        return v
