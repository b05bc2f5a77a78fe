"""``cti records backfill --since WHEN``: run on an Asterisk server's host, puts into the
store's tables the queue_log lines and CDRs its files have and the tables lack
(PostgreSQL was unreachable for Asterisk: decision 0029)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cti.config import ConfigError, Settings

__all__ = ["add_records_commands", "parse_when"]


def parse_when(raw: str) -> datetime:
    """An ISO date-time (UTC unless it says otherwise)."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"--since: not an ISO date-time: {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_records_commands(sub: Any, settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    p = sub.add_parser("records", help="Asterisk's queue_log and CDR in the store")
    rs = p.add_subparsers(dest="records_cmd", required=True)
    b = rs.add_parser(
        "backfill", help="insert what the server's files have and the store's tables lack"
    )
    b.add_argument("--since", required=True, help="ISO date-time (UTC unless given)")

    def run(args: argparse.Namespace) -> int:
        from cti.records.backfill import backfill
        from cti.records.files import FileRecords
        from cti.store.db import Database

        settings = settings_of(args)
        since = parse_when(args.since)
        if settings.asterisk.records != "postgresql" or not settings.database.url.startswith(
            ("postgresql", "postgres:")
        ):
            raise ConfigError(
                'records backfill is for asterisk.records = "postgresql" (database.url on '
                "PostgreSQL)"
            )
        if settings.asterisk.log_dir is None:
            raise ConfigError("records backfill reads the server's files: set asterisk.log_dir")
        files = FileRecords.in_log_dir(Path(settings.asterisk.log_dir))
        server = settings.server_name

        async def go() -> None:
            db = Database.from_url(settings.database.url)
            try:
                result = await backfill(files, db, server, since)
            finally:
                await db.dispose()
            print(f"{server}: {result.lines} queue_log line(s), {result.cdrs} CDR(s) inserted")

        try:
            asyncio.run(go())
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0

    b.set_defaults(func=run)
