"""Backup then restore round trip on SQLite and PostgreSQL, and the CLI wiring."""

from __future__ import annotations

import argparse
import gzip
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from crm_bridge.access import Actor
from crm_bridge.cli import register
from crm_bridge.models import Contact, Customer, Phone
from crm_bridge.schemas import CustomerIn
from crm_bridge.store import CrmStore
from cti.store.backup import BackupError, backup, restore
from cti.store.db import Database
from cti.store.models import Call

SUP = Actor("sup", "supervisor")


async def _snapshot(db: Database) -> list[tuple[object, ...]]:
    async with db.session() as s:
        customers = [
            (c.id, c.name, c.notes, c.owner, c.created_at)
            for c in (await s.scalars(select(Customer).order_by(Customer.id))).all()
        ]
        contacts = [(c.id, c.name, c.birthday) for c in (await s.scalars(select(Contact))).all()]
        phones = [(p.id, p.raw, p.e164) for p in (await s.scalars(select(Phone))).all()]
        calls = [(c.linkedid, c.started_at) for c in (await s.scalars(select(Call))).all()]
    return [tuple(customers), tuple(contacts), tuple(phones), tuple(calls)]


async def test_backup_restore_round_trip(db: Database, tmp_path: Path) -> None:
    store = CrmStore(db, "CN")
    for i, name in enumerate(["王小明", "<b>x</b>\r\n'; --", "Zoë"]):
        await store.create_customer(
            CustomerIn(
                name=name,
                notes="n" * 1000,
                phones=[{"number": f"1380013800{i}"}],
                birthday=date(1990, 1, i + 1),
            ),
            SUP,
        )
    async with db.session() as s, s.begin():
        t = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)
        s.add(Call(linkedid="9.9", started_at=t, ended_at=t))
    before = await _snapshot(db)
    path = tmp_path / "cti.backup.gz"
    counts = await backup(db, path)
    assert counts["crm_customers"] == 3 and counts["calls"] == 1

    # damage the database, then restore
    await store.create_customer(CustomerIn(name="added later"), SUP)
    async with db.session() as s, s.begin():
        (await s.get(Customer, 1)).notes = "changed"  # type: ignore[union-attr]
    await restore(db, path)
    assert await _snapshot(db) == before
    # search finds what was restored (on SQLite through the FTS5 index the restored rows
    # rebuilt: docs/decisions/0011-crm-search.md), not what the restore removed
    assert [c["id"] for c in await store.search("王小明", SUP)] == [1]
    assert await store.search("added later", SUP) == []
    if db.engine.dialect.name == "sqlite":
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO crm_search_fts (crm_search_fts, rank)"
                    " VALUES ('integrity-check', 1)"
                )
            )
    # ids continue after the restored ones (PostgreSQL sequences were moved)
    created = await store.create_customer(CustomerIn(name="after restore"), SUP)
    assert created["id"] == 4


async def test_restore_is_all_or_nothing(db: Database, tmp_path: Path) -> None:
    store = CrmStore(db, "CN")
    await store.create_customer(CustomerIn(name="keep me"), SUP)
    path = tmp_path / "b.gz"
    await backup(db, path)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress("\n".join([*lines, '{"t": "nope", "r": []}']).encode()))
    await store.create_customer(CustomerIn(name="second"), SUP)
    with pytest.raises(BackupError, match="unknown table"):
        await restore(db, broken)
    async with db.session() as s:
        assert await s.scalar(select(func.count(Customer.id))) == 2  # untouched
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(BackupError):
        await restore(db, bad)
    with pytest.raises(BackupError, match="no such"):
        await restore(db, tmp_path / "missing.gz")


def test_cli_extends_platform_db_command() -> None:
    from cti.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "crm" not in sub.choices:  # not yet registered as an entry point
        register(sub)
    args = parser.parse_args(["db", "backup", "/tmp/x.gz"])
    assert (args.action, args.file) == ("backup", "/tmp/x.gz")
    args = parser.parse_args(["db", "upgrade"])
    assert args.action == "upgrade"
    args = parser.parse_args(["crm", "import", "customers.csv", "--as", "ops"])
    assert (args.action, args.file, args.actor) == ("import", "customers.csv", "ops")
