"""``cti user …`` and ``cti token …``: accounts and API tokens from the command line.

The CLI acts as ``cli`` in the audit log. Passwords are read from standard input (one
line) or generated (``--generate``, printed once); never taken from the command line,
where ``ps`` and shell history would keep them. A token revoked here ends its open
websockets within the daemon's sweep period (2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cti.config import Settings

if TYPE_CHECKING:  # imported where a command runs: ``cti --help`` and others start fast
    from cti.accounts.service import Accounts
    from cti.store.db import Database

__all__ = ["add_account_commands"]

T = TypeVar("T")
ACTOR = "cli"
SettingsOf = Callable[[argparse.Namespace], Settings]


def _run(settings: Settings, work: Callable[[Database, Accounts], Awaitable[T]]) -> T:
    from cti.accounts.audit import AuditLog
    from cti.accounts.service import Accounts
    from cti.store.db import Database
    from cti.store.migrate import upgrade

    upgrade(settings.database.url)

    async def go() -> T:
        db = Database.from_url(settings.database.url)
        try:
            return await work(db, Accounts(db, settings.auth, AuditLog(db)))
        finally:
            await db.dispose()

    return asyncio.run(go())


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    if args.generate:
        return generate_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    return line, False


def _fail(exc: Exception) -> int:
    from cti.web.errors import ApiError

    message = exc.message if isinstance(exc, ApiError) else str(exc)
    print(f"error: {message}", file=sys.stderr)
    return 2


def _user_create(settings_of: SettingsOf) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from cti.web.errors import ApiError

        password, generated = _password(args)
        data: dict[str, Any] = {"login": args.login, "password": password, "role": args.role,
                                "display_name": args.display_name or "", "agent": args.agent,
                                "must_change_password": args.must_change}  # fmt: skip
        if args.queues:
            data["queues"] = [q for q in args.queues.split(",") if q]

        async def work(_: Database, accounts: Accounts) -> None:
            if args.if_missing and await accounts.find_login(args.login) is not None:
                raise _Exists
            await accounts.create_user(ACTOR, data)

        try:
            _run(settings_of(args), work)
        except _Exists:
            return 0
        except (ApiError, ValueError) as exc:
            return _fail(exc)
        if generated:
            print(password)
        return 0

    return run


class _Exists(Exception):
    pass


def _on_user(
    settings_of: SettingsOf, act: Callable[[Accounts, int, argparse.Namespace], Awaitable[None]]
) -> Callable[[argparse.Namespace], int]:
    """A command acting on the user named by ``args.login``."""

    def run(args: argparse.Namespace) -> int:
        from cti.web.errors import ApiError

        async def work(_: Database, accounts: Accounts) -> None:
            user = await accounts.find_login(args.login)
            if user is None:
                raise ValueError(f"no user {args.login!r}")
            await act(accounts, user["id"], args)

        try:
            _run(settings_of(args), work)
        except (ApiError, ValueError) as exc:
            return _fail(exc)
        return 0

    return run


def _user_password(settings_of: SettingsOf) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        password, generated = _password(args)

        async def act(accounts: Accounts, user_id: int, a: argparse.Namespace) -> None:
            await accounts.set_password(ACTOR, user_id, password, must_change=a.must_change)

        result = _on_user(settings_of, act)(args)
        if result == 0 and generated:
            print(password)
        return result

    return run


def _user_state(settings_of: SettingsOf, disabled: bool) -> Callable[[argparse.Namespace], int]:
    async def act(accounts: Accounts, user_id: int, _: argparse.Namespace) -> None:
        await accounts.set_disabled(ACTOR, user_id, disabled)

    return _on_user(settings_of, act)


def _user_list(settings_of: SettingsOf) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def work(_: Database, accounts: Accounts) -> list[dict[str, Any]]:
            return await accounts.list_users()

        for u in _run(settings_of(args), work):
            state = "disabled" if u["disabled"] else "active"
            print(f"{u['id']:>5}  {u['login']:<24} {u['role']:<10} {state:<8} "
                  f"agent={u['agent'] or '-'} teams={','.join(u['teams']) or '-'}")  # fmt: skip
        return 0

    return run


def _token_create(settings_of: SettingsOf) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        expires = None
        if args.expires_days is not None:
            expires = datetime.now(UTC) + timedelta(days=args.expires_days)
        queues = [q for q in args.queues.split(",") if q] if args.queues else None

        from cti.store.tokens import create_token

        async def work(db: Database, _: Accounts) -> str:
            return await create_token(db, args.name, args.role, expires_at=expires,
                                      queues=queues, created_by=ACTOR)  # fmt: skip

        try:
            print(_run(settings_of(args), work))
        except ValueError as exc:
            return _fail(exc)
        return 0

    return run


def _token_list(settings_of: SettingsOf) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from cti.store.tokens import list_tokens

        async def work(db: Database, _: Accounts) -> list[dict[str, Any]]:
            return await list_tokens(db, include_ended=args.all)

        for t in _run(settings_of(args), work):
            expires, used = t["expires_at"] or "never", t["last_used_at"] or "-"
            print(f"{t['id']:>5}  {t['name']:<24} {t['role']:<10} {t['state']:<8} "
                  f"expires={expires} last_used={used}")  # fmt: skip
        return 0

    return run


def _token_revoke(settings_of: SettingsOf) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from cti.store.tokens import revoke_token, revoke_token_id

        async def work(db: Database, accounts: Accounts) -> int:
            if args.target.isascii() and args.target.isdigit():
                n = int(await revoke_token_id(db, int(args.target)))
            else:
                n = await revoke_token(db, args.target)
            await accounts.audit.record("token.revoke", actor=ACTOR, target_type="token",
                                        target_id=args.target, detail=f"{n} revoked")  # fmt: skip
            return n

        n = _run(settings_of(args), work)
        print(f"{n} token(s) revoked")
        return 0 if n else 1

    return run


def add_account_commands(sub: Any, settings_of: SettingsOf) -> None:
    """Add ``user`` and ``token`` to the ``cti`` parser's subcommands."""
    user = sub.add_parser("user", help="people who sign in (accounts)")
    us = user.add_subparsers(dest="user_cmd", required=True)
    p = us.add_parser("create", help="create a user (password from stdin, or --generate)")
    p.add_argument("login")
    p.add_argument("--role", default="agent", choices=["agent", "supervisor", "admin"])
    p.add_argument("--agent", help="the ACD agent this user is")
    p.add_argument("--display-name")
    p.add_argument("--queues", help="comma-separated queue scope")
    p.add_argument("--generate", action="store_true", help="generate and print a password")
    p.add_argument("--must-change", action="store_true", help="change it at first sign-in")
    p.add_argument("--if-missing", action="store_true", help="do nothing if the login exists")
    p.set_defaults(func=_user_create(settings_of))
    p = us.add_parser("password", help="set a user's password (their sessions end)")
    p.add_argument("login")
    p.add_argument("--generate", action="store_true")
    p.add_argument("--must-change", action="store_true")
    p.set_defaults(func=_user_password(settings_of))
    for name, disabled in (("disable", True), ("enable", False)):
        p = us.add_parser(name, help=f"{name} a user")
        p.add_argument("login")
        p.set_defaults(func=_user_state(settings_of, disabled))
    p = us.add_parser("list", help="list users")
    p.set_defaults(func=_user_list(settings_of))

    token = sub.add_parser("token", help="API tokens for integrations")
    ts = token.add_subparsers(dest="token_cmd", required=True)
    p = ts.add_parser("create", help="create a token and print it (shown once)")
    p.add_argument("name")
    p.add_argument("--role", default="supervisor", choices=["agent", "supervisor", "admin"])
    p.add_argument("--expires-days", type=int)
    p.add_argument("--queues", help="comma-separated queue scope")
    p.set_defaults(func=_token_create(settings_of))
    p = ts.add_parser("list", help="list tokens (never their secrets)")
    p.add_argument("--all", action="store_true", help="also revoked and expired ones")
    p.set_defaults(func=_token_list(settings_of))
    p = ts.add_parser("revoke", help="revoke a token by id, or every token of a name")
    p.add_argument("target", help="token id or name")
    p.set_defaults(func=_token_revoke(settings_of))
