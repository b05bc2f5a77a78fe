"""CLI commands: ``cti db backup|restore FILE`` and ``cti crm import|export FILE``.

Registered through the ``cti.commands`` entry point group (``crm =
"crm_bridge.cli:register"``). ``cti db`` already exists in the platform (``upgrade``):
:func:`register` extends that parser with the two actions instead of adding a second
``db`` command (argparse refuses duplicates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cti.config import Settings

Command = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> Settings:
    from cti.cli import _settings as platform_settings

    return platform_settings(args)


class ProgressBar:
    """One self-overwriting line on stderr (only when it is a terminal, else silent)."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if done != total and done % 100:
            return
        width = 30
        filled = width * done // total
        self.stream.write(f"\r{self.label} [{'#' * filled}{' ' * (width - filled)}] {done}/{total}")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


async def _with_db(settings: Settings, job: Callable[[Any], Any]) -> Any:
    from cti.store.db import Database

    db = Database.from_url(settings.database.url)
    try:
        return await job(db)
    finally:
        await db.dispose()


def cmd_crm(args: argparse.Namespace) -> int:
    from crm_bridge.access import Actor
    from crm_bridge.importexport import (
        ImportFormatError,
        export_rows,
        import_rows,
        read_csv,
        read_xlsx,
        to_csv,
        to_xlsx,
    )
    from crm_bridge.pool import Pool
    from crm_bridge.store import CrmStore

    settings = _settings(args)
    actor = Actor(args.actor, "admin")
    path = Path(args.file) if args.file else None
    xlsx = path is not None and path.suffix.lower() == ".xlsx"

    async def job(db: Any) -> int:
        store = CrmStore(db, settings.site.default_region)
        if args.action == "import":
            assert path is not None
            data = path.read_bytes()
            rows = read_xlsx(data) if xlsx else read_csv(data)
            report = await import_rows(store, rows, actor, progress=ProgressBar("importing"))
            if report["errors"]:
                for err in report["errors"]:
                    print(
                        f"line {err['line']}: {json.dumps(err, ensure_ascii=False)}",
                        file=sys.stderr,
                    )
                print(f"nothing imported: {len(report['errors'])} bad rows", file=sys.stderr)
                return 1
            print(f"imported {report['imported']} customers")
            return 0
        if args.action == "export":
            assert path is not None
            rows_out = await export_rows(store, actor)
            path.write_bytes(to_xlsx(rows_out) if xlsx else to_csv(rows_out))
            print(f"exported {len(rows_out) - 1} customers to {path}")
            return 0
        days = args.days
        if days is None:
            from crm_bridge.config import CrmConfig

            raw = (settings.model_extra or {}).get("crm", {})
            days = CrmConfig.model_validate(raw).pool_after_days
        moved = await Pool(store).return_dormant(days)
        print(f"{len(moved)} customers returned to the pool")
        return 0

    if args.action in ("import", "export") and path is None:
        print(f"error: cti crm {args.action} needs a FILE", file=sys.stderr)
        return 2
    try:
        return int(asyncio.run(_with_db(settings, job)))
    except (ImportFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("crm", help="CRM: import/export customers, run the pool job")
    p.add_argument("action", choices=["import", "export", "pool-return"])
    p.add_argument("file", nargs="?", help="CSV or .xlsx file (import/export)")
    p.add_argument("--as", dest="actor", default="cli", help="name recorded in the audit")
    p.add_argument("--days", type=int, default=None, help="pool-return: idle days")
    p.set_defaults(func=cmd_crm)
