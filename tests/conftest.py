"""Shared fixtures: real databases for integration and acceptance tests.

``db_url`` runs a test once on SQLite (a file under tmp_path) and once on PostgreSQL (a
fresh database ``cti_test_<hex>`` on the local server, made before the test asks and
dropped after it, in the background). It is empty, unless the test also asks for ``db``
or ``migrated_db`` (the acceptance tests all do): then it is already migrated, and ``db``
is a :class:`~cti.store.db.Database` on it.
A migrated database is a copy of the session's template (every migration applied once per
session: a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL) instead of
a run of every migration per test; the copy is the same schema, revision and rows.
PostgreSQL is not optional: if it cannot be reached the test fails.

The PostgreSQL server is ``postgresql://postgres@127.0.0.1:5432/postgres`` unless
``CTI_TEST_PG_ADMIN_URL`` names another (it must allow CREATE/DROP DATABASE).

``--part asterisk|others`` runs one of the suite's two parts (scripts/test.sh runs both at
once, each in a pytest process of its own): ``asterisk``, the tests that use the session's
Asterisk or the machine's NATS (some restart it), in the order they always ran, but for a
few long modules that run on the others' own Asterisk; ``others``, every other test.
Together they are the whole suite (decision 0034).
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from cti.store.db import Database
from cti.store.migrate import upgrade

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "CTI_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


PARTS = ("asterisk", "others")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--part", choices=PARTS, default=None,
        help="run only this part of the suite (scripts/test.sh runs both parts at once)",
    )  # fmt: skip


#: Modules on the session's Asterisk that run in the others part all the same, on that
#: process's own session Asterisk (each pytest process starts its own): long, self-contained
#: (no machine-wide change, no NATS), so the two parts take about as long (decision 0034).
ON_THE_OTHERS_ASTERISK = frozenset(
    {
        "test_call_truth.py",
        "test_demo.py",
        "test_outbound_dialer.py",
        "test_quality_wrapup.py",
        "test_stats.py",
    }
)


def part_of(item: pytest.Item) -> str:
    """``asterisk`` for a test that uses the session's Asterisk or the machine's NATS
    (``broker``: some stop and start it, so no other test may use it meanwhile), except
    the modules of :data:`ON_THE_OTHERS_ASTERISK`; else ``others``, which runs beside them
    (its own Asterisk servers, databases and ports)."""
    if item.get_closest_marker("broker"):
        return "asterisk"
    if "asterisk" not in getattr(item, "fixturenames", ()):
        return "others"
    return "others" if item.path.name in ON_THE_OTHERS_ASTERISK else "asterisk"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = config.getoption("part")
    if part is None:
        return
    kept = [item for item in items if part_of(item) == part]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if part_of(i) != part])
        items[:] = kept


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _pg_url(name: str) -> str:
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {_shown(PG_ADMIN_URL)} "
            f"({type(exc).__name__}: {exc}). "
            "Integration tests need it (CI tests both SQLite and PostgreSQL): start the "
            "server or set CTI_TEST_PG_ADMIN_URL.",
            pytrace=False,
        )


async def _pg_create(name: str, template: str | None = None) -> None:
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = await _pg_admin()
    try:
        try:  # FILE_COPY (PostgreSQL 15+) is twice as fast as WAL_LOG for tiny databases
            await admin.execute(f'CREATE DATABASE "{name}"{copy} STRATEGY FILE_COPY')
        except asyncpg.PostgresSyntaxError:
            await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await admin.close()


async def _pg_drop(name: str) -> None:
    admin = await _pg_admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class _PgDatabases:
    """The tests' PostgreSQL databases, made and dropped by two threads of their own, so a
    test waits for neither (a CREATE or DROP DATABASE takes 0.2-1 s, under load more): the
    next database of each kind (empty, or a copy of the migrated template) is made while
    the current test runs, and a dropped one is handed over at teardown. At the end of the
    session every database is dropped, and a failed drop fails the session."""

    def __init__(self) -> None:
        self.template: str | None = None
        self.ready = {kind: queue.Queue[str | BaseException]() for kind in (False, True)}
        self.to_make: queue.Queue[bool | None] = queue.Queue()
        self.to_drop: queue.Queue[str | None] = queue.Queue()
        self.failures: list[str] = []
        self.asked: set[bool] = set()
        self.threads = [
            threading.Thread(target=self._make, name="pg-create", daemon=True),
            threading.Thread(target=self._drop, name="pg-drop", daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _make(self) -> None:
        while (migrated := self.to_make.get()) is not None:
            name = f"cti_test_{secrets.token_hex(6)}"
            try:
                if migrated and self.template is None:
                    template = f"cti_template_{secrets.token_hex(6)}"
                    asyncio.run(_pg_create(template))
                    self.template = template  # dropped at the end even if half made
                    upgrade(_pg_url(template))
                asyncio.run(_pg_create(name, self.template if migrated else None))
                self.ready[migrated].put(name)
            except BaseException as exc:  # pytest.fail's Failed too: raised in the test
                self.ready[migrated].put(exc)

    def _drop(self) -> None:
        while (name := self.to_drop.get()) is not None:
            try:
                asyncio.run(_pg_drop(name))
            except BaseException as exc:  # pytest.fail's Failed too
                self.failures.append(f"{name}: {type(exc).__name__}: {exc}")

    def take(self, migrated: bool) -> str:
        """A fresh database (blocks; call it through ``asyncio.to_thread``)."""
        if migrated not in self.asked:  # from then on one spare of each kind asked for
            self.asked.add(migrated)
            self.to_make.put(migrated)
        got = self.ready[migrated].get()
        self.to_make.put(migrated)  # the next test's, made meanwhile
        if isinstance(got, BaseException):
            raise got
        return got

    def close(self) -> None:
        self.to_make.put(None)
        self.threads[0].join()
        for ready in self.ready.values():
            while not ready.empty():
                if isinstance(name := ready.get(), str):
                    self.to_drop.put(name)
        if self.template is not None:
            self.to_drop.put(self.template)
        self.to_drop.put(None)
        self.threads[1].join()
        assert not self.failures, f"test databases not dropped: {self.failures}"


@pytest.fixture(scope="session")
def _pg_databases() -> Iterator[_PgDatabases]:
    databases = _PgDatabases()
    yield databases
    databases.close()


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread of its own: the templates are made on demand from inside an
    async fixture, and migrations (like any blocking call) refuse a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every migration applied, checkpointed (a copy of the file alone
    is the whole database)."""
    path = tmp_path_factory.mktemp("template") / "cti.db"

    def make() -> None:
        upgrade(f"sqlite+aiosqlite:///{path}")
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    _in_thread(make)
    return path


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of a database on SQLite and on PostgreSQL: empty, or migrated when the test
    asks for ``db``."""
    migrated = not {"db", "migrated_db"}.isdisjoint(request.fixturenames)
    if request.param == "sqlite":
        path = tmp_path / "db" / "cti.db"
        if migrated:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    databases: _PgDatabases = request.getfixturevalue("_pg_databases")
    name = await asyncio.to_thread(databases.take, migrated)
    try:
        yield _pg_url(name)
    finally:
        databases.to_drop.put(name)


@pytest.fixture
def migrated_db() -> None:
    """Asked for, ``db_url`` comes migrated (for tests whose daemon would otherwise run
    every migration at start; that start on an empty database is proved by
    tests/acceptance/test_daemon_process.py and tests/integration/test_openapi.py)."""


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on ``db_url`` with every migration applied."""
    database = Database.from_url(db_url)
    try:
        yield database
    finally:
        await database.dispose()
