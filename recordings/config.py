"""The ``[recordings]`` config section (validated with pydantic)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEVICE_RE", "Policy", "QueueRecording", "RecordingsConfig"]

Policy = Literal["always", "never", "on_demand"]
DEFAULT_ROOT = Path("/var/spool/asterisk/monitor")

# A supervisor's device as an Originate channel: technology/resource, nothing that could
# add a second target (``&``), options (``,`` ``|``) or whitespace.
DEVICE_RE = re.compile(r"(PJSIP|SIP|IAX2|DAHDI|Local)/[A-Za-z0-9_.@+\-]{1,80}(/n)?")


class QueueRecording(BaseModel):
    """Per-queue overrides; anything unset falls back to the section's default."""

    model_config = ConfigDict(extra="forbid")
    policy: Policy | None = None
    retention_days: int | None = Field(default=None, ge=1, le=36500)


class RecordingsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Asterisk's monitor directory as the daemon sees it (MixMonitor is given paths
    # relative to it, so Asterisk may see the same directory under another name: chroot,
    # container volume).
    # None: beside asterisk.log_dir (the chroot runner's layout, ``…/log`` and
    # ``…/spool/monitor``) when that exists, else Debian's /var/spool/asterisk/monitor
    root: Path | None = None
    policy: Policy = "always"
    retention_days: int = Field(default=365, ge=1, le=36500)
    queues: dict[str, QueueRecording] = Field(default_factory=dict)
    # calls the system places for an agent (click-to-call, a callback dialled by hand);
    # None: the same as ``policy``
    outbound_policy: Policy | None = None
    # compressed format after the call: "mp3" (plays everywhere), "opus" (Ogg Opus,
    # smaller), or "wav" (keep MixMonitor's file as is)
    format: Literal["mp3", "opus", "wav"] = "mp3"
    bitrate: str = Field(default="32k", pattern=r"^[0-9]{1,3}k$")
    keep_original: bool = False  # keep the WAV after the compressed copy is verified
    # reconcile: every N seconds in the daemon (0 = only `cti recordings reconcile`)
    reconcile_interval_s: float = Field(default=3600.0, ge=0)
    # files younger than this are never touched by reconcile (still being written)
    grace_s: float = Field(default=300.0, ge=0)
    # answered calls this far back are checked for a recording (or a reason)
    lookback_days: int = Field(default=7, ge=1, le=3650)
    # signed playback URLs (the <audio> element cannot send a bearer token)
    url_ttl_s: int = Field(default=300, ge=10, le=86400)
    url_secret: str = ""  # empty: a random key per daemon start
    # Asterisk on another host (recordings.spool): its monitor spool as the sidecar
    # `cti recordings spool-serve` serves it, e.g. "http://10.0.5.10:8090"; each finished
    # file is pulled into ``root`` before processing. "": ``root`` is Asterisk's spool
    spool_url: str = Field(default="", pattern=r"^(https?://[A-Za-z0-9.:\[\]-]+/?)?$")
    spool_secret: str = Field(default="", repr=False)  # shared with the sidecar, >= 16
    # live monitoring: supervisor name -> the device ChanSpy is originated to
    supervisor_devices: dict[str, str] = Field(default_factory=dict)
    spy_caller_id: str = Field(default="Monitor", pattern=r"^[A-Za-z0-9 _.\-]{1,40}$")

    @field_validator("supervisor_devices")
    @classmethod
    def _devices(cls, value: dict[str, str]) -> dict[str, str]:
        for name, device in value.items():
            if DEVICE_RE.fullmatch(device) is None:
                raise ValueError(f"{name}: {device!r} is not a device (e.g. PJSIP/1001)")
        return value

    def with_root(self, log_dir: Path | None) -> RecordingsConfig:
        """This config with ``root`` decided (see the field's comment)."""
        if self.root is not None:
            return self
        root = DEFAULT_ROOT
        if log_dir is not None and (Path(log_dir).parent / "spool" / "monitor").is_dir():
            root = Path(log_dir).parent / "spool" / "monitor"
        return self.model_copy(update={"root": root})

    @property
    def root_dir(self) -> Path:
        return self.root if self.root is not None else DEFAULT_ROOT

    def policy_for(self, queue: str) -> Policy:
        if not queue:
            return self.outbound_policy or self.policy
        q = self.queues.get(queue)
        return q.policy if q is not None and q.policy is not None else self.policy

    def retention_for(self, queue: str) -> int:
        q = self.queues.get(queue)
        if q is not None and q.retention_days is not None:
            return q.retention_days
        return self.retention_days
