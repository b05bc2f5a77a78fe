"""``cti recordings …`` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from cti.config import ConfigError, load_config
from cti.store.db import Database
from cti.store.migrate import upgrade

__all__ = ["register"]


def _reconcile(args: argparse.Namespace) -> int:
    from recordings.config import RecordingsConfig
    from recordings.policy import PolicyBook
    from recordings.processing import Processor
    from recordings.reconcile import reconcile
    from recordings.store import RecordingStore

    raw = getattr(args, "config", None) or os.environ.get("CTI_CONFIG")
    default = Path("var/cti.toml")
    settings = load_config(Path(raw) if raw else (default if default.exists() else None))
    section = (settings.model_extra or {}).get("recordings", {})
    try:
        config = RecordingsConfig.model_validate(section)
    except ValueError as exc:
        raise ConfigError(f"invalid [recordings] section: {exc}") from None
    log_dir = settings.asterisk.log_dir
    if log_dir is None and config.root is None:
        from cti.asterisk.runner import chroot_log_dir

        log_dir = chroot_log_dir(settings)  # as `cti run` finds it
    config = config.with_root(log_dir)
    upgrade(settings.database.url)

    async def go() -> dict[str, list[int] | list[str]]:
        db = Database.from_url(settings.database.url)
        try:
            await PolicyBook(config, db).load()  # the console's per-queue values
            # in a cluster: this node's name, so only what it holds is checked
            processor = Processor(config, RecordingStore(db), node=settings.node_name)
            report = await reconcile(processor)
            return report.as_dict()
        finally:
            await db.dispose()

    result = asyncio.run(go())
    if args.json:
        print(json.dumps(result))
    else:
        for key, items in result.items():
            print(f"{key}: {len(items)}")
            for item in items:
                print(f"  {item}")
    missing = result["missing_files"] or result["missing_calls"]
    if missing:
        print("some answered calls have no recording (see above)", file=sys.stderr)
    return 0


def _spool_serve(args: argparse.Namespace) -> int:
    """The sidecar: the secret from CTI_RECORDINGS__SPOOL_SECRET (never a command line)."""
    from aiohttp import web

    from recordings.spool import SpoolSigner, spool_app

    secret = os.environ.get("CTI_RECORDINGS__SPOOL_SECRET", "")
    try:
        signer = SpoolSigner(secret)
    except ValueError as exc:
        raise ConfigError(f"CTI_RECORDINGS__SPOOL_SECRET: {exc}") from None
    web.run_app(spool_app(args.root, signer), host=args.host, port=args.port, print=None)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("recordings", help="call recordings")
    rsub = p.add_subparsers(dest="recordings_cmd", required=True)
    r = rsub.add_parser(
        "reconcile", help="retention, orphan/empty files, answered calls without a recording"
    )
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.set_defaults(func=_reconcile)
    v = rsub.add_parser(
        "spool-serve",
        help="on Asterisk's host: serve its monitor spool to the nodes (recordings.spool)",
    )
    v.add_argument("--root", type=Path, required=True, help="Asterisk's monitor directory")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on")
    v.add_argument("--port", type=int, default=8090)
    v.set_defaults(func=_spool_serve)
