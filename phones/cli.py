"""``cti phones …``: agents' phones in the store from the command line (setup, scripts).

The REST API applies a change to the running Asterisk at once; a change made here reaches
Asterisk when the daemon next connects to it (``cti run`` start, AMI reconnect).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from cti.cli import config_errors_exit, settings_of, with_store
from cti.config import ConfigError, Settings
from cti.store.db import Database
from phones import store
from phones.credentials import ha1, new_password
from phones.settings import PhonesSettings

__all__ = ["register"]

T = TypeVar("T")


def _settings(args: argparse.Namespace) -> Settings:
    return settings_of(args)


def _phones_settings(settings: Settings) -> PhonesSettings:
    try:
        return PhonesSettings.model_validate((settings.model_extra or {}).get("phones", {}))
    except ValidationError as exc:
        raise ConfigError(f"invalid [phones] configuration: {exc}") from None


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    return with_store(settings, work)


def _list(args: argparse.Namespace) -> int:
    rows = _run(_settings(args), lambda db: store.list_phones(db, args.agent))
    for row in rows:
        print(json.dumps(store.view(row), ensure_ascii=False))
    return 0


def _add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    ps = _phones_settings(settings)
    password = new_password() if args.kind == "sip" else ""

    async def add(db: Database) -> Any:
        return await store.create(
            db, args.agent, args.kind, args.label, ps.realm,
            lambda name: ha1(name, ps.realm, password) if password else "", ps.max_per_agent,
        )  # fmt: skip

    try:
        row = _run(settings, add)
    except store.PhoneInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = store.view(row)
    if password:
        out["password"] = password  # shown once
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _remove(args: argparse.Namespace) -> int:
    row = _run(_settings(args), lambda db: store.delete_phone(db, args.name))
    if row is None:
        print(f"error: no phone {args.name!r}", file=sys.stderr)
        return 1
    print(f"removed {row.name}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("phones", help="agents' browser and SIP phones")
    ps = p.add_subparsers(dest="phones_command", required=True)
    a = ps.add_parser("list", help="list phones")
    a.add_argument("--agent", default=None)
    a.set_defaults(func=config_errors_exit(_list))
    a = ps.add_parser("add", help="provision a phone (a SIP phone's password is printed once)")
    a.add_argument("agent")
    a.add_argument("--kind", choices=("webrtc", "sip"), default="webrtc")
    a.add_argument("--label", default="")
    a.set_defaults(func=config_errors_exit(_add))
    a = ps.add_parser("remove", help="remove a phone")
    a.add_argument("name")
    a.set_defaults(func=config_errors_exit(_remove))
