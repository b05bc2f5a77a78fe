"""The `cti` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cti.accounts.commands import add_account_commands
from cti.config import ConfigError, Settings, load_config
from cti.records.cli import add_records_commands

if TYPE_CHECKING:
    from cti.store.db import Database

T = TypeVar("T")

DEFAULT_DATA_DIR = Path("var")
DEFAULT_CONFIG = DEFAULT_DATA_DIR / "cti.toml"


def _config_path(args: argparse.Namespace) -> Path | None:
    if args.config:
        return Path(args.config)
    env = os.environ.get("CTI_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _settings(args: argparse.Namespace) -> Settings:
    return load_config(_config_path(args))


def settings_of(args: argparse.Namespace) -> Settings:
    """The configuration a feature's command reads (``--config``, ``$CTI_CONFIG``,
    ``var/cti.toml``)."""
    return _settings(args)


def with_store(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the store of ``settings``, migrated first (a command may be the
    first thing run on a new database)."""
    from cti.store.db import Database
    from cti.store.migrate import upgrade

    upgrade(settings.database.url)

    async def go() -> T:
        db = Database.from_url(settings.database.url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def config_errors_exit(
    func: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A command that stops with exit status 2 and the message alone on a ConfigError."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2

    return wrapped


def command_settings(args: argparse.Namespace) -> Settings:
    """The configuration as ``cti run`` sees it: the file (``--config``, ``$CTI_CONFIG``,
    ``var/cti.toml``) and the local Asterisk instance's directories where the file leaves
    them unset. Every command that reads Asterisk's logs uses this."""
    from cti.asterisk.runner import find_instance_dirs

    settings = _settings(args)
    find_instance_dirs(settings, DEFAULT_DATA_DIR)
    return settings


def _progress(msg: str) -> None:
    print(f"==> {msg}", flush=True)


# --- commands ---------------------------------------------------------------------------------
def cmd_setup(args: argparse.Namespace) -> int:
    """Write var/cti.toml with a fresh AMI secret unless it exists."""
    path = Path(args.config) if args.config else DEFAULT_CONFIG
    if path.exists():
        print(f"{path} exists; keeping it")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    db = (path.parent / "cti.db").resolve()
    path.write_text(
        "# cti daemon configuration; CTI_<SECTION>__<KEY> environment variables override it\n"
        '[site]\nname = "demo call center"\ntimezone = "Asia/Shanghai"\n'
        'default_region = "CN"\n\n'
        f'[ami]\nhost = "127.0.0.1"\nport = 5038\nusername = "cti"\n'
        f'secret = "{secrets.token_urlsafe(24)}"\n\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n\n'
        '[http]\nhost = "127.0.0.1"\nport = 8080\n\n'
        '[agi]\nhost = "127.0.0.1"\nport = 4573\n\n'
        '[log]\nlevel = "INFO"\nformat = "text"\n'
    )
    path.chmod(0o600)
    print(f"wrote {path} (AMI secret generated)")
    return 0


def cmd_asterisk(args: argparse.Namespace) -> int:
    from cti.asterisk.instance import AsteriskError
    from cti.asterisk.runner import make_runner

    settings = _settings(args)
    try:
        runner = make_runner(settings, DEFAULT_DATA_DIR.resolve(), _progress)
        if args.action == "up":
            if runner.is_running():
                print(f"Asterisk ({runner.way}) already running; logs in {runner.log_dir}")
                return 0
            _progress(f"starting Asterisk 22 ({runner.way})")
            runner.start(tie_to_parent=False)
            took = runner.wait_fully_booted(60)
            print(
                f"Asterisk up ({runner.way}) in {took:.2f} s: AMI 127.0.0.1:{settings.ami.port}, "
                f"logs {runner.log_dir}"
            )
        elif args.action == "down":
            runner.stop()
            print(f"Asterisk ({runner.way}) stopped")
        elif args.action == "status":
            running = runner.is_running()
            print(f"Asterisk ({runner.way}): {'running' if running else 'stopped'}")
            return 0 if running else 3
        elif args.action == "cli":
            sys.stdout.write(runner.cli(" ".join(args.command)))
        elif args.action == "config":
            # render the instance directory without starting Asterisk (a container or a
            # systemd unit runs it: docs/deploy.md)
            from cti.asterisk.instance import ChrootAsterisk

            if not isinstance(runner, ChrootAsterisk):
                print("error: config: only for the chroot runner", file=sys.stderr)
                return 1
            runner.write_config()
            print(f"ASTERISK_BASE={shlex.quote(str(runner.base))}")
            print(f"ASTERISK_INNER={shlex.quote(runner.inner)}")
        elif args.action == "paths":
            # shell-friendly: where the instance's directories are on this host and as
            # Asterisk sees them (the chroot's /srv/cti/<name>), for scripts/up.sh
            from cti.asterisk.instance import ChrootAsterisk

            if not isinstance(runner, ChrootAsterisk):
                print("error: paths: only for the chroot runner", file=sys.stderr)
                return 1
            print(f"ASTERISK_BASE={shlex.quote(str(runner.base))}")
            print(f"ASTERISK_INNER={shlex.quote(runner.inner)}")
            # astdatadir's sounds (language sounds such as zh/digits go there)
            print(f"ASTERISK_SOUNDS={shlex.quote(str(runner.root / 'usr/share/asterisk/sounds'))}")
    except AsteriskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from cti.store.backup import BackupError, backup, restore
    from cti.store.db import Database
    from cti.store.migrate import upgrade

    settings = _settings(args)
    if args.action == "upgrade":
        upgrade(settings.database.url)
        print("database at the latest revision")
        return 0
    if not args.file:
        print(f"error: cti db {args.action} needs a FILE", file=sys.stderr)
        return 2
    path = Path(args.file)

    def report(table: str, rows: int) -> None:
        print(f"  {table}: {rows} rows", file=sys.stderr)

    async def job() -> dict[str, int]:
        db = Database.from_url(settings.database.url)
        try:
            if args.action == "backup":
                return await backup(db, path, report)
            return await restore(db, path, report)
        finally:
            await db.dispose()

    if args.action == "restore":
        upgrade(settings.database.url)  # restore needs the same schema revisions
    try:
        counts = asyncio.run(job())
    except (BackupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.action}: {sum(counts.values())} rows in {len(counts)} tables ({path})")
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    """Print the latest finished calls from the store."""
    from cti.calls.recorder import list_calls
    from cti.store.db import Database

    settings = _settings(args)

    async def fetch() -> list[dict[str, object]]:
        db = Database.from_url(settings.database.url)
        try:
            return await list_calls(db, limit=args.limit)
        finally:
            await db.dispose()

    for c in asyncio.run(fetch()):
        number = c["caller_num_e164"] or c["caller_num_raw"] or "?"
        print(
            f"{str(c['started_at'])[:19]}  {number!s:>16}  {c['disposition']!s:<11} "
            f"queue={c['queue'] or '-'} agent={c['agent'] or '-'} wait={c['wait_s']} "
            f"talk={c['talk_s']} [{c['source']}]"
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = command_settings(args)  # a bad configuration is told before the long import
    from cti.priority import set_nice

    priority = set_nice(settings.daemon.nice)  # before any thread: they inherit it
    from cti.daemon import Daemon
    from cti.logs import setup_logging

    writer = setup_logging(settings.log.level, settings.log.format)
    try:
        logging.getLogger("cti.priority").log(
            logging.WARNING if priority.refused else logging.INFO, priority.describe()
        )
        asyncio.run(Daemon(settings, demo=args.demo).run())
    finally:
        writer.stop()  # what the stop logged, written before the process ends
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """A container's (or any supervisor's) health check of the node this configuration
    runs: GET its ``/healthz`` (its Asterisk link up, or a standby; 503 when a node that
    should drive has no AMI link, or is stopping) or, with ``--ready``, ``/readyz`` (the
    load balancer's: database, broker, not draining) on the configured HTTP port. Exit 0
    and "healthy" on 200, else 1 and "unhealthy" with the answer or the error."""
    import urllib.error
    import urllib.request

    http = _settings(args).http
    # a node listening on every address is asked on loopback
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
    host = wildcard.get(http.host, http.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{http.port}/"
    url += "readyz" if args.ready else "healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:  # noqa: S310 (http:// built here)
            ok, body = resp.status == 200, resp.read(2000)
    except urllib.error.HTTPError as exc:
        ok, body = False, exc.read(2000)
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1
    print(f"{'healthy' if ok else 'unhealthy'}: {body.decode('utf-8', 'replace')}")
    return 0 if ok else 1


def _command_word(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word after the global options), if any."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``cti`` parser. With ``argv``, only the feature whose entry point has the name
    of the command ``argv`` names is loaded (a built-in command: none; any other word, or
    none, such as ``--help``: all of them): importing every feature costs a second."""
    parser = argparse.ArgumentParser(prog="cti", description="CTI call-center server")
    parser.add_argument("--config", help=f"TOML file (default: $CTI_CONFIG or {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("setup", help="write a configuration with a fresh AMI secret")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("asterisk", help="run the real Asterisk (Docker or chroot)")
    p.add_argument("action", choices=["up", "down", "status", "cli", "paths", "config"])
    p.add_argument("command", nargs="*", help="CLI command (with `cli`)")
    p.set_defaults(func=cmd_asterisk)

    p = sub.add_parser("db", help="migrations, backup and restore (SQLite and PostgreSQL)")
    p.add_argument("action", choices=["upgrade", "backup", "restore"])
    p.add_argument("file", nargs="?", help="backup file (backup/restore)")
    p.set_defaults(func=cmd_db)

    add_account_commands(sub, _settings)

    add_records_commands(sub, command_settings)

    p = sub.add_parser("calls", help="list the latest finished calls")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_calls)

    p = sub.add_parser("health", help="check the node's /healthz (or /readyz): exit 0 if 200")
    p.add_argument("--ready", action="store_true", help="readiness (/readyz) instead")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--demo", action="store_true", help="place demo calls continuously")
    p.set_defaults(func=cmd_run)

    # features add their own commands: entry point group "cti.commands", each a function
    # register(subparsers) that adds parsers with set_defaults(func=...); the entry
    # point's name is the command's
    features = sorted(entry_points(group="cti.commands"), key=lambda e: e.name)
    word = _command_word(argv) if argv is not None else None
    if word in sub.choices:  # a built-in command
        features = []
    elif any(ep.name == word for ep in features):
        features = [ep for ep in features if ep.name == word]
    for ep in features:
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
