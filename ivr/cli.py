"""``cti ivr check FILE`` and ``cti ivr reload``.

``check`` validates a menu file offline (exit 1 with line-precise errors). ``reload``
asks the running daemon to reload through its API (an admin token from ``--token`` or
``CTI_TOKEN``); the daemon refuses an invalid file and keeps serving the old menus.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from ivr.menus import MenuError, load_menus

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ivr = sub.add_parser("ivr", help="IVR menus")
    isub = ivr.add_subparsers(dest="ivr_command", required=True)
    check = isub.add_parser("check", help="validate a menu file")
    check.add_argument("file", type=Path)
    check.add_argument("--region", default="CN", help="phone region for national numbers")
    check.set_defaults(func=cmd_check)
    reload = isub.add_parser("reload", help="reload the running daemon's menus")
    reload.add_argument("--url", default=os.environ.get("CTI_URL", "http://127.0.0.1:8080"))
    reload.add_argument("--token", default=None, help="admin API token (default $CTI_TOKEN)")
    reload.set_defaults(func=cmd_reload)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        data = load_menus(args.file, region=args.region)
    except MenuError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file}: OK ({len(data.menus)} menus, {len(data.prompts)} prompts)")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("CTI_TOKEN", "")
    if not token:
        print("an admin token is needed: --token or CTI_TOKEN", file=sys.stderr)
        return 2
    return asyncio.run(_reload(args.url.rstrip("/"), token))


async def _reload(url: str, token: str) -> int:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(
                f"{url}/api/v1/ivr/reload", headers={"Authorization": f"Bearer {token}"}
            ) as r,
        ):
            body = await r.text()
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"cannot reach the daemon at {url}: {exc}", file=sys.stderr)
        return 1
    try:
        data = json.loads(body)
    except ValueError:
        data = {"error": body[:500]}
    if status == 200:
        print(f"reloaded: menus {', '.join(data.get('menus', []))}")
        return 0
    print(f"reload refused ({status}): {data.get('error', '')}", file=sys.stderr)
    for problem in data.get("problems", []):
        print(f"  {problem}", file=sys.stderr)
    return 1
