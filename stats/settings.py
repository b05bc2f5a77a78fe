"""The ``[stats]`` configuration section."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cti.config import ConfigError, Settings

__all__ = ["StatsSettings", "queue_log_path"]


class StatsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Service-level target (fraction answered within the queue's T) for staffing
    #: advice and the wallboard's colour; per-queue values override it.
    sl_target: float = Field(0.8, gt=0, lt=1)
    sl_target_by_queue: dict[str, float] = {}
    #: queue_log path; default ``<asterisk.log_dir>/queue_log``.
    queue_log: Path | None = None
    #: How often the queue_log tail is read while AMI is connected.
    tail_interval_s: float = Field(2.0, gt=0, le=300)
    #: Wallboard frames are coalesced to at most one per this many seconds.
    wallboard_interval_s: float = Field(0.25, ge=0.05, le=5)
    #: A waiting caller at this fraction of T turns the queue amber.
    risk_wait_fraction: float = Field(0.75, gt=0, le=1)


def queue_log_path(settings: Settings, stats: StatsSettings) -> Path:
    """``[stats] queue_log``, else ``<asterisk.log_dir>/queue_log``; statistics cannot work
    without it, so neither the daemon nor ``cti stats rebuild`` starts without one."""
    if stats.queue_log is not None:
        return stats.queue_log
    if settings.asterisk.log_dir is not None:
        return Path(settings.asterisk.log_dir) / "queue_log"
    raise ConfigError(
        "statistics need Asterisk's queue_log: set asterisk.log_dir (the host directory of "
        "the instance's logs) or [stats] queue_log; none was set and no local instance "
        "(cti asterisk up) was found"
    )
