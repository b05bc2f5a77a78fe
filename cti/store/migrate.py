"""Schema migrations (alembic, scripts in ``cti/migrations``), driven from code.

Both functions are synchronous and run their own event loop: from async code (the
daemon) call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from cti.store.db import Database, to_async_url

__all__ = [
    "SCRIPT_LOCATION",
    "alembic_config",
    "applied",
    "current",
    "heads",
    "include_object",
    "shipped",
    "upgrade",
]

SCRIPT_LOCATION = "cti:migrations"


#: Suffix of indexes a migration creates only when the server supports them (PostgreSQL
#: ``pg_trgm`` GIN indexes for CRM search): not in the models, never "missing".
OPTIONAL_INDEX_SUFFIX = "_trgm"

#: Prefixes of tables a migration creates only on one kind of server and the daemon's
#: models do not describe: SQLite's FTS5 index of CRM search (crm_0005) and the shadow
#: tables SQLite makes for it; the tables Asterisk writes its records into on PostgreSQL
#: (records_0001, read by cti.records.postgres); PostgreSQL's trigram lists of CRM search,
#: kept by triggers (crm_0007, read by crm_bridge.search_walk).
SERVER_ONLY_TABLE_PREFIXES = ("crm_search_fts", "crm_search_trigrams", "asterisk_")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's comparison filter: leave the optional server-side indexes and the
    server-only tables alone."""
    if not reflected:
        return True
    if type_ == "index":
        return not (name or "").endswith(OPTIONAL_INDEX_SUFFIX)
    if type_ == "table":
        return not (name or "").startswith(SERVER_ONLY_TABLE_PREFIXES)
    return True


def alembic_config(url: str) -> Config:
    """An alembic :class:`Config` for ``url`` (no alembic.ini involved)."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    # Passed as an attribute, not a main option: the ini parser would interpolate "%"
    # in passwords.
    cfg.attributes["url"] = url
    return cfg


def _no_running_loop(what: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"cti.store.migrate.{what}() blocks: call it via asyncio.to_thread()")


def upgrade(url: str, revision: str = "heads") -> None:
    """Migrate the database at ``url`` to ``revision`` (a no-op when already there)."""
    _no_running_loop("upgrade")
    to_async_url(url)  # StoreConfigError before alembic gets involved
    command.upgrade(alembic_config(url), revision)


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


async def _current(url: str) -> tuple[str, ...]:
    db = Database.from_url(url)
    try:
        async with db.engine.connect() as connection:
            return await connection.run_sync(_current_heads)
    finally:
        await db.dispose()


def current(url: str) -> tuple[str, ...]:
    """The revisions (one per branch: the platform's and each feature's) the database at
    ``url`` is at; empty when it was never migrated."""
    _no_running_loop("current")
    return asyncio.run(_current(url))


def applied(url: str) -> frozenset[str]:
    """Every revision the database at ``url`` has had applied: its current heads and all
    they stand on, through each branch and across branches (``depends_on``: a head that
    another branch's revision depends on is applied but is not a current head)."""
    heads_now = current(url)
    if not heads_now:
        return frozenset()
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(r.revision for r in script.revision_map.iterate_revisions(heads_now, "base"))


def shipped() -> frozenset[str]:
    """Every revision the shipped migration scripts define."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(r.revision for r in script.walk_revisions())


def heads() -> tuple[str, ...]:
    """The newest revision of each branch the shipped migration scripts define."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()))
