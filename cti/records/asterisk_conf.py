"""Asterisk's side of ``[asterisk] records = "postgresql"``: the configuration that makes
Asterisk write its queue_log and CDR into the store's tables with its own modules.

- ``res_config_pgsql`` (res_pgsql.conf) + extconfig.conf ``queue_log => pgsql,…``: the
  realtime queue_log into ``asterisk_queue_log``; logger.conf keeps ``queue_log_to_file``
  (the file stays, on Asterisk's host) and sets ``queue_log_realtime_use_gmt``;
- ``cdr_pgsql`` (cdr_pgsql.conf) into ``asterisk_cdr``; ``cdr_custom`` keeps its CSV;
- both connect with ``application_name`` = the server's name: the tables' ``server``
  column takes it as its default (migration records_0001).

With records = "files" the three files say nothing (no realtime queue_log, no pgsql
module loaded), as on the single box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from cti.config import ConfigError, Settings

__all__ = [
    "CDR_TABLE",
    "QUEUE_LOG_TABLE",
    "RecordsDb",
    "records_db",
    "write_records_conf",
]

QUEUE_LOG_TABLE = "asterisk_queue_log"
CDR_TABLE = "asterisk_cdr"
MODULES = ("res_config_pgsql.so", "cdr_pgsql.so")
# Asterisk's config files end a value at ';' and its modules build a libpq conninfo
# without quoting: no spaces, quotes, backslashes, commas or semicolons
_SAFE = re.compile(r"[^\s;'\"\\,]*")


@dataclass(frozen=True)
class RecordsDb:
    """Where and as whom Asterisk writes its records, and the server name they carry."""

    host: str
    port: int
    dbname: str
    user: str
    password: str
    server: str

    def check(self) -> None:
        for name in ("host", "dbname", "user", "password", "server"):
            value = getattr(self, name)
            if not _SAFE.fullmatch(value):
                raise ConfigError(
                    f"records: the database {name} must not contain spaces, quotes, "
                    "backslashes, commas or semicolons (Asterisk's pgsql modules cannot "
                    "pass them)"
                )
        if not self.host or not self.dbname or not self.server:
            raise ConfigError("records: Asterisk needs a database host, name and server name")
        if len(self.server) > 63:
            raise ConfigError(
                "records: the server name is PostgreSQL's application_name: at most 63 characters"
            )


def records_db(settings: Settings) -> RecordsDb | None:
    """What Asterisk's configuration needs for ``records = "postgresql"`` (None: files)."""
    a = settings.asterisk
    if a.records != "postgresql":
        return None
    url = make_url(settings.database.url)
    if url.get_backend_name() != "postgresql":
        raise ConfigError('asterisk.records = "postgresql" needs database.url on PostgreSQL')
    db = RecordsDb(
        host=a.records_host or url.host or "", port=a.records_port or url.port or 5432,
        dbname=url.database or "", user=url.username or "", password=url.password or "",
        server=settings.server_name,
    )  # fmt: skip
    db.check()
    return db


def write_records_conf(etc_dir: Path, db: RecordsDb | None) -> None:
    """Write extconfig.conf, res_pgsql.conf and cdr_pgsql.conf into the rendered
    configuration ``etc_dir`` and load the pgsql modules (appended to its modules.conf)."""
    if db is None:
        (etc_dir / "extconfig.conf").write_text("[settings]\n")
        (etc_dir / "res_pgsql.conf").unlink(missing_ok=True)
        (etc_dir / "cdr_pgsql.conf").unlink(missing_ok=True)
        return
    db.check()
    (etc_dir / "extconfig.conf").write_text(
        f"[settings]\nqueue_log => pgsql,{db.dbname},{QUEUE_LOG_TABLE}\n"
    )
    (etc_dir / "res_pgsql.conf").write_text(
        "[general]\n"
        f"dbhost = {db.host}\ndbport = {db.port}\ndbname = {db.dbname}\n"
        f"dbuser = {db.user}\ndbpass = {db.password}\ndbappname = {db.server}\n"
        # never ALTER the tables: the migration owns them
        "requirements = warn\n"
    )
    (etc_dir / "cdr_pgsql.conf").write_text(
        "[global]\n"
        f"hostname = {db.host}\nport = {db.port}\ndbname = {db.dbname}\n"
        f"user = {db.user}\npassword = {db.password}\nappname = {db.server}\n"
        f"table = {CDR_TABLE}\nencoding = UTF8\ntimezone = UTC\n"
    )
    modules = etc_dir / "modules.conf"
    text = modules.read_text()
    lines = "".join(f"load => {m}\n" for m in MODULES if f"load => {m}" not in text)
    if lines:
        head = text.rstrip("\n") + "\n\n; records into PostgreSQL (cti.records)\n"
        modules.write_text(head + lines)
