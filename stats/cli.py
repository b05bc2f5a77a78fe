"""``cti stats …`` commands.

``cti stats rebuild --since 2026-11-01`` (a local date or an ISO date-time) re-reads
Asterisk's queue_log (and its rotated siblings) and fills the statistics store from it:
idempotent, safe to run beside the daemon (both converge on the same rows).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from cti.cli import command_settings
from cti.config import ConfigError
from cti.features import offered_services
from cti.store.db import Database
from cti.store.migrate import upgrade
from stats.service import StatsService
from stats.settings import StatsSettings, queue_log_path, stats_records

__all__ = ["parse_since", "register"]


def parse_since(raw: str, tz: ZoneInfo) -> datetime:
    """A local date (midnight, site time zone) or an ISO date-time (naive = local)."""
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(0), tz)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"--since: not a date or ISO date-time: {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def _rebuild(args: argparse.Namespace) -> int:
    try:
        settings = command_settings(args)  # finds the log the way `cti run` does
        stats = StatsSettings.model_validate((settings.model_extra or {}).get("stats", {}))
        tz = ZoneInfo(settings.site.timezone)
        since = parse_since(args.since, tz)
        qlog = Path(args.queue_log) if args.queue_log else None
        if qlog is None and settings.asterisk.records == "files":
            qlog = queue_log_path(settings, stats)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    upgrade(settings.database.url)

    async def go() -> None:
        db = Database.from_url(settings.database.url)
        try:
            services = offered_services(settings, db)  # the ACD's queue thresholds
            records = stats_records(settings, stats, db, qlog)
            svc = StatsService(db, tz, records, stats, queues=lambda: services.queues)
            result = await svc.rebuild(since)
            print(f"rebuilt from {records.key}: {result.lines} line(s) since {since.isoformat()}, "
                  f"{result.entries_touched} hourly bucket(s)")  # fmt: skip
        finally:
            await db.dispose()

    asyncio.run(go())
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("stats", help="queue statistics")
    stats_sub = p.add_subparsers(dest="stats_command", required=True)
    r = stats_sub.add_parser("rebuild", help="fill the statistics store from queue_log")
    r.add_argument("--since", required=True, help="local date YYYY-MM-DD or ISO date-time")
    r.add_argument("--queue-log", default="", help="queue_log path (default from config)")
    r.set_defaults(func=_rebuild)
