"""Alembic environment for the CTI store (SQLite and PostgreSQL, async drivers).

Run through :mod:`cti.store.migrate` (``cti db upgrade``); there is no alembic.ini. The
URL comes from ``config.attributes["url"]`` (or ``sqlalchemy.url``); a caller that
already holds a sync-facing connection may pass it as ``config.attributes["connection"]``.
Migrations run on the async engine through ``connection.run_sync``, so no sync
PostgreSQL driver is needed.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from cti.store.db import Database, to_async_url
from cti.store.migrate import include_object
from cti.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the migrations (cti.store.migrate)")
    return str(url)


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    url = to_async_url(_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    db = Database.from_url(_url())
    try:
        async with db.engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await db.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
