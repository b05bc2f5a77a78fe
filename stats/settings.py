"""The ``[stats]`` configuration section."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cti.config import ConfigError, Settings
from cti.records import RecordSource, make_source
from cti.records.files import FileRecords
from cti.store.db import Database

__all__ = ["QueueAlarm", "StatsSettings", "queue_log_path", "stats_records"]


class QueueAlarm(BaseModel):
    """One queue's wallboard alarm thresholds (unset: the section's)."""

    model_config = ConfigDict(extra="forbid")

    waiting: int | None = Field(None, ge=0, le=10000)
    longest_wait_s: float | None = Field(None, ge=0, le=86400)
    sl_below_target: bool | None = None


class StatsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Service-level target (fraction answered within the queue's T) for staffing
    #: advice and the wallboard's colour; per-queue values override it.
    sl_target: float = Field(0.8, gt=0, lt=1)
    sl_target_by_queue: dict[str, float] = {}
    #: queue_log path; default ``<asterisk.log_dir>/queue_log`` (records = "files").
    queue_log: Path | None = None
    #: How often the queue_log tail is read while AMI is connected.
    tail_interval_s: float = Field(2.0, gt=0, le=300)
    #: Wallboard frames are coalesced to at most one per this many seconds.
    wallboard_interval_s: float = Field(0.25, ge=0.05, le=5)
    #: A waiting caller at this fraction of T turns the queue amber.
    risk_wait_fraction: float = Field(0.75, gt=0, le=1)
    #: Wallboard alarms (decision 0026): a queue with at least this many callers waiting
    #: (0: off), a caller waiting at least this long (0: off), today's service level
    #: below the queue's target; per-queue values override them.
    alarm_waiting: int = Field(0, ge=0, le=10000)
    alarm_longest_wait_s: float = Field(0.0, ge=0, le=86400)
    alarm_sl_below_target: bool = True
    alarms_by_queue: dict[str, QueueAlarm] = {}


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


def stats_records(
    settings: Settings, stats: StatsSettings, db: Database, queue_log: Path | None = None
) -> RecordSource:
    """Where statistics read the server's queue_log: ``queue_log`` when given (``cti
    stats rebuild --queue-log``), the store's table with ``asterisk.records =
    "postgresql"``, else the file (:func:`queue_log_path`)."""
    if queue_log is None and settings.asterisk.records == "postgresql":
        return make_source(settings, db)
    path = queue_log or queue_log_path(settings, stats)
    return FileRecords.in_log_dir(path.parent, path)
