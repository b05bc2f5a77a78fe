"""Search through the ``crm_search`` table gives exactly what scanning the customer,
contact, phone and email tables gives, on real SQLite and PostgreSQL, after creates,
edits, added / changed contacts, deletes and an import (the table is kept by the store)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from sqlalchemy import column, insert, select, table, text
from sqlalchemy.sql.dml import Insert

from crm_bridge import search_walk
from crm_bridge.access import SYSTEM, Actor
from crm_bridge.errors import DuplicateError
from crm_bridge.importexport import import_rows, read_csv
from crm_bridge.keys import name_key
from crm_bridge.models import CustomerSearch
from crm_bridge.schemas import ContactIn, ContactPatch, CustomerIn, CustomerPatch
from crm_bridge.search import Filters, reindex
from crm_bridge.store import CrmStore
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import utcnow

SURNAMES = "王李张刘陈杨黄赵"
GIVEN = "伟芳娜秀英敏静丽强"
LATIN = ["Anna", "Smith", "Lee", "Garcia", "O'Brien", "Zhang San", "Müller"]
COMPANIES = ["北京科技有限公司", "上海贸易", "Acme Ltd", "Globex_Systems", "100% Pure", ""]
QUERIES = [
    "王", "王伟", "秀英", "anna", "SMITH", "zhang san", "zhangsan", "müller", "o'brien",
    "北京", "科技有限", "acme", "globex systems", "100%", "%", "_", "1380", "0013 8",
    "+86 138", "0086-139", "555", "@mail", "mail-3.ex", "user1", "ex.com", "a b", "-", "  ",
    "13800138000", "nobody",
    # short and CJK: under three characters no trigram (the scan path), at three the index
    "伟", "芳", "王伟芳", "李秀英", "有限公", "an", "ith", "o'b", '"an', "an%",
    # digits and e-mail parts
    "13", "138", "0013", "8613", "13 8", "ple.c", "example.com", "@", "a@", "mail-3",
]  # fmt: skip


def _customer(rng: random.Random, i: int) -> CustomerIn:
    if rng.random() < 0.5:
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
    else:
        name = f"{rng.choice(LATIN)} {rng.choice(LATIN)}"
    contacts = [
        ContactIn(
            name=name if c == 0 else f"{rng.choice(LATIN)} {i}",
            phones=[f"+86 13{rng.randint(0, 9)} {rng.randint(0, 9999):04d} {i:04d}"],
            emails=[f"user{i}.{c}@mail-{rng.randint(1, 5)}.example.com"][: rng.randint(0, 1)],
        )
        for c in range(rng.randint(1, 2))
    ]
    owner = rng.choice([None, "agent1", "agent2"])
    return CustomerIn(name=name, company=rng.choice(COMPANIES), owner=owner, contacts=contacts)


async def _both(store: CrmStore, q: str, actor: Actor) -> tuple[list[int], list[int]]:
    index = [c["id"] for c in await store.search(q, actor, limit=500, method="index")]
    scan = [c["id"] for c in await store.search(q, actor, limit=500, method="scan")]
    return index, scan


async def test_index_and_scan_agree(db: Database) -> None:
    store = CrmStore(db, "CN")
    rng = random.Random(7)
    ids = []
    for i in range(120):
        try:
            ids.append((await store.create_customer(_customer(rng, i), SYSTEM))["id"])
        except DuplicateError:
            pass
    # edits that change what search matches
    for cid in rng.sample(ids, 20):
        try:
            await store.update_customer(
                cid, CustomerPatch(name=f"Renamed {cid}", company="新公司"), SYSTEM
            )
        except DuplicateError:
            pass
    for cid in rng.sample(ids, 10):
        await store.add_contact(
            cid, ContactIn(name="李雷", phones=[f"0755-8888 {cid:04d}"]), SYSTEM, force=True
        )
    for cid in rng.sample(ids, 10):
        full = await store.get_customer(cid, SYSTEM)
        await store.update_contact(
            full["contacts"][0]["id"],
            ContactPatch(name="Han Meimei", phones=[f"+1 650 253 {cid:04d}"], emails=[]),
            SYSTEM,
        )
    for cid in rng.sample(ids, 10):
        await store.delete_customer(cid, SYSTEM)
    report = await import_rows(
        store,
        read_csv(
            "name,company,phones,emails\n导入客户,深圳物流,13912345678,imported@mail-9.example.com\n".encode()
        ),
        SYSTEM,
    )
    assert not report["errors"]
    queries = [*QUERIES, "Renamed", "新公司", "李雷", "8888", "han mei", "650 253", "导入", "深圳"]
    mismatches = {}
    hits = 0
    for actor in (SYSTEM, Actor("agent1", "agent")):
        for q in queries:
            index, scan = await _both(store, q, actor)
            hits += len(index)
            if index != scan:
                mismatches[(actor.name, q)] = (index, scan)
    assert mismatches == {}
    assert hits > 200  # the queries do find things
    if db.engine.dialect.name == "sqlite":
        await _fts_integrity(db)
    else:
        await _trigrams_integrity(db)


async def test_one_statement_per_shape_serves_every_actor_and_filter_value(db: Database) -> None:
    """A search's statement is built once per shape (which owner, filter and visibility
    conditions it has) and kept, their values bind parameters: searches in turn by other
    agents, owners, tiers, regions, tags, contact dates and ids, each with the same shape
    as the one before, every one gets the scan's list (a value left in a kept statement
    would give the earlier search's list)."""
    store = CrmStore(db, "CN")
    rng = random.Random(11)
    prefixes = ["138 0013", "139 1234", "150 0000", "135 1234"]  # 北京, 常州, 上海, 重庆
    ids = []
    for i in range(48):
        created = await store.create_customer(
            CustomerIn(
                name=f"{rng.choice(['王伟', 'Anna Lee', '王芳'])} {i:03d}",
                tier=rng.choice(["", "gold", "silver"]),
                tags=rng.choice([[], ["vip"], ["key account"]]),
                owner=rng.choice([None, "agent1", "agent2", "agent3"]),
                phones=[f"+86 {prefixes[i % 4]} {i:04d}"],
                force=True,
            ),
            SYSTEM,
        )
        ids.append(created["id"])
    now = utcnow()
    async with db.session() as session:
        for i, cid in enumerate(ids[::2]):
            await session.execute(
                text("UPDATE crm_customers SET last_contact_at = :at WHERE id = :id"),
                {"at": now - timedelta(days=i), "id": cid},
            )
    agents = [Actor(f"agent{n}", "agent") for n in (1, 2, 3)]
    day = now - timedelta(days=8)
    searches: list[tuple[Actor, str | None, Filters | None]] = [
        *((agent, None, None) for agent in agents),
        *((SYSTEM, owner, None) for owner in ("agent1", "agent2", "")),
        *((SYSTEM, None, Filters(tier=t)) for t in ("gold", "silver", "")),
        *(
            (agent, None, Filters(tag=t))
            for agent, t in zip(agents, ["vip", "key account", "vip"], strict=True)
        ),
        *((SYSTEM, None, Filters(region=r)) for r in ("北京", "江苏", "上海市")),
        *((SYSTEM, None, Filters(contacted_after=d)) for d in (day, now - timedelta(days=2))),
        *((agents[0], None, Filters(contacted_before=d)) for d in (day, now)),
        *((SYSTEM, None, Filters(ids=tuple(part))) for part in (ids[:10], ids[30:35], ())),
    ]
    seen = set()
    for q in ("王", "anna", "138", "0000", "+86 13"):
        for actor, owner, filters in searches:
            scan, index = [
                [
                    c["id"]
                    for c in await store.search(
                        q, actor, limit=500, owner=owner, filters=filters, method=method
                    )
                ]
                for method in ("scan", "index")
            ]
            assert index == scan, (q, actor, owner, filters)
            seen.add(tuple(scan))
    assert len(seen) > 40  # the searches' lists do differ


async def _fts_integrity(db: Database) -> None:
    """SQLite: the FTS5 indexes (crm_0005 trigrams, crm_0006 grams) hold exactly
    crm_search's rows, kept by their triggers (FTS5's check raises otherwise)."""
    async with db.engine.begin() as conn:
        for fts in ("crm_search_fts", "crm_search_fts_grams"):
            await conn.execute(
                text(f"INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)")
            )


async def _trigrams_integrity(db: Database) -> None:
    """PostgreSQL: crm_search_trigrams (crm_0007, kept by triggers) holds exactly the
    trigrams the search looks up (crm_bridge.search_walk.trigrams) of every entry of every
    crm_search row, after every kind of write."""
    async with db.session() as session:
        rows = (await session.execute(select(CustomerSearch))).scalars().all()
        expected = {
            (gram, r.customer_id)
            for r in rows
            for col in ("names", "phones", "emails")
            for entry in getattr(r, col).split("\n")
            for gram in search_walk.trigrams(col, entry)
        }
        result = await session.execute(text("SELECT gram, customer_id FROM crm_search_trigrams"))
        stored = {(gram, customer_id) for gram, customer_id in result}
    assert stored == expected
    assert len(stored) > 500


@pytest.mark.parametrize("walk", ["whole lists", "tiny budget"])
async def test_pages_of_frequent_and_short_needles_are_the_scans(
    db: Database, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Needles found in most rows (王, garcia, 138) and in few (伟芳, q, 00), under three
    characters too (crm_0006's grams index), alone and with a filter, for a supervisor and
    an agent: read page by page, newest first, by offset and by keyset (``before`` the
    last id), the pages joined are the scan's list (no row missing or twice), and the
    page after the last is empty. On PostgreSQL with a tiny sample and budget too, so the
    ordered walk of crm_search_trigrams runs out and hands over to the GIN indexes."""
    if walk == "tiny budget":
        monkeypatch.setattr(search_walk, "SAMPLE", 2)
        monkeypatch.setattr(search_walk, "BUDGET", 4)
    store = CrmStore(db, "CN")
    rng = random.Random(20)
    names = ["王伟", "王芳", "王秀英", "Anna Garcia", "Garcia Lee", "李雷", "伟芳 Q"]
    for i in range(45):
        await store.create_customer(
            CustomerIn(
                name=f"{rng.choice(names)} {i:03d}",
                tier=rng.choice(["", "gold"]),
                owner=rng.choice([None, "agent1", "agent2"]),
                contacts=[
                    ContactIn(
                        name="x",
                        phones=[f"+86 138 {rng.randint(0, 9999):04d} {i:04d}"],
                        emails=[f"ka@x{i}.cn"] if i % 5 == 0 else [],
                    )
                ],
                force=True,
            ),
            SYSTEM,
        )
    needles = ["王", "garcia", "138", "00138", "伟芳", "q", "00", "0013", "王伟", "a@", "nobody"]
    found: dict[tuple[str, bool, str], int] = {}
    for actor in (SYSTEM, Actor("agent1", "agent")):
        for filters in (None, Filters(tier="gold")):
            for q in needles:
                scan = [
                    c["id"]
                    for c in await store.search(q, actor, limit=500, method="scan", filters=filters)
                ]
                pages: list[int] = []
                for offset in range(0, len(scan) + 7, 7):
                    page = await store.search(q, actor, limit=7, offset=offset, filters=filters)
                    pages += [c["id"] for c in page]
                assert pages == scan, (actor.name, filters, q)
                keyset: list[int] = []
                before = None
                while page := await store.search(q, actor, limit=7, before=before, filters=filters):
                    keyset += [c["id"] for c in page]
                    before = page[-1]["id"]
                assert keyset == scan, (actor.name, filters, q, "keyset")
                found[(actor.name, filters is None, q)] = len(scan)
    assert found[("system", True, "138")] == 45  # in every number: seven pages
    assert found[("system", True, "00138")] == 45  # both lengths: 00138 and 138
    assert found[("system", True, "王")] > 14  # three pages and more
    assert all(found[("system", True, q)] for q in needles if q != "nobody")
    if db.engine.dialect.name == "sqlite":
        await _fts_integrity(db)
    else:
        await _trigrams_integrity(db)


def _as_of_crm_0001(table_name: str, /, **values: object) -> Insert:
    """An insert of only the given columns (the models have columns later migrations add;
    their Python-side defaults would name columns the old schema does not have)."""
    return insert(table(table_name, *(column(key) for key in values))).values(**values)


async def test_migration_fills_the_table_like_reindex(db_url: str) -> None:
    """Customers that exist before crm_0002 are searchable after it, with the same text
    the store writes on every change."""
    await asyncio.to_thread(upgrade, db_url, "crm_0001")
    db = Database.from_url(db_url)
    try:
        now = utcnow()
        async with db.engine.begin() as conn:
            for cid, (name, company) in enumerate([("王伟", "北京科技"), ("Anna Lee", "")], 1):
                await conn.execute(
                    _as_of_crm_0001("crm_customers",
                        id=cid, kind="person", name=name, name_key=name_key(name),
                        company=company, company_key=name_key(company), tier="", tags="",
                        notes="", owner=None, created_at=now, updated_at=now,
                    )
                )  # fmt: skip
                await conn.execute(
                    _as_of_crm_0001("crm_contacts",
                        id=cid, customer_id=cid, name=name, name_key=name_key(name),
                        title="", tags="", notes="", created_at=now, updated_at=now,
                    )
                )  # fmt: skip
            await conn.execute(
                _as_of_crm_0001(
                    "crm_phones",
                    contact_id=1,
                    customer_id=1,
                    raw="138",
                    e164="+8613800138000",
                    label="",
                )
            )
            await conn.execute(
                _as_of_crm_0001(
                    "crm_emails",
                    contact_id=2,
                    customer_id=2,
                    address="A@x.cn",
                    address_key="a@x.cn",
                )
            )
        await db.dispose()
        await asyncio.to_thread(upgrade, db_url, "heads")
        db = Database.from_url(db_url)

        async def rows() -> list[tuple[int, str, str, str]]:
            async with db.session() as session:
                found = await session.scalars(
                    select(CustomerSearch).order_by(CustomerSearch.customer_id)
                )
                return [(r.customer_id, r.names, r.phones, r.emails, r.grams) for r in found]

        migrated = await rows()
        assert [r[:4] for r in migrated] == [
            (1, "王伟\n北京科技\n王伟", "+8613800138000", ""),
            (2, "annalee\n\nannalee", "", "a@x.cn"),
        ]
        assert "n_738b__4f1f_" in migrated[0][4].split()  # 王伟, crm_0006
        assert "e_40_x" in migrated[1][4].split()  # @x
        store = CrmStore(db, "CN")
        async with db.session() as session, session.begin():
            for cid in (1, 2):
                await reindex(session, cid)
        assert await rows() == migrated
        assert [c["id"] for c in await store.search("0013800", SYSTEM)] == [1]
        assert [c["id"] for c in await store.search("王伟", SYSTEM)] == [1]
        assert [c["id"] for c in await store.search("@x", SYSTEM)] == [2]
    finally:
        await db.dispose()


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
@pytest.mark.parametrize("plans", ["force_generic_plan", "force_custom_plan"])
async def test_one_statement_gives_the_scans_pages_under_any_plan(
    db_url: str, plans: str, migrated_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a search is one prepared statement (crm_bridge.search_walk), and after
    five runs the server may plan it once for every needle (a generic plan). Under
    generic plans and under plans made for each needle alike, with the whole walks and
    with walks that run out at once (a needle of 1-2 characters that looks frequent in
    its first rows walks on, then hands over like the others to the GIN indexes),
    merging the rarest two gram lists of a needle or probing the second, every page
    read by keyset is the next slice of the scan's list (none short, none missing a
    row), for a supervisor and for an agent with a filter."""
    admin = Database.from_url(db_url)
    try:
        async with admin.engine.connect() as conn:
            name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
            await conn.execute(text(f'ALTER DATABASE "{name}" SET plan_cache_mode = {plans}'))
            await conn.commit()
    finally:
        await admin.dispose()
    db = Database.from_url(db_url)
    try:
        async with db.reader.connect() as conn:
            assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one() == plans
        store = CrmStore(db, "CN")
        rng = random.Random(21)
        names = ["王伟", "王芳", "Anna Garcia", "Garcia Lee", "李雷", "伟芳 Q", "Globex Sys"]
        for i in range(30):
            await store.create_customer(
                CustomerIn(
                    name=f"{rng.choice(names)} {i:03d}",
                    tier=rng.choice(["", "gold"]),
                    owner=rng.choice([None, "agent1", "agent2"]),
                    contacts=[
                        ContactIn(
                            name="x",
                            phones=[f"+86 138 {rng.randint(0, 9999):04d} {i:04d}"],
                            emails=[f"ka@x{i}.cn"] if i % 4 == 0 else [],
                        )
                    ],
                    force=True,
                ),
                SYSTEM,
            )
        needles = ["王", "王伟", "a", "q", "garcia", "138", "00138", "伟芳", "0013", "globexsys"]
        needles += ["a@", "nobody"]
        # the rarest two gram lists merged always (a huge ratio) and never (0), with whole
        # walks and with walks that run out at once
        rounds = ((250, 5000, 1000, 20000, 10**6), (2, 3, 2, 6, 0), (2, 3, 2, 6, 10**6))
        for sample, budget, first_rows, rows, merge_ratio in rounds:
            monkeypatch.setattr(search_walk, "MERGE_RATIO", merge_ratio)
            monkeypatch.setattr(search_walk, "SAMPLE", sample)
            monkeypatch.setattr(search_walk, "BUDGET", budget)
            monkeypatch.setattr(search_walk, "FIRST_ROWS", first_rows)
            monkeypatch.setattr(search_walk, "ROWS", rows)
            agent = (Actor("agent1", "agent"), Filters(tier="gold"))
            for actor, filters in ((SYSTEM, None), agent):
                for q in needles:
                    scan = [
                        c["id"]
                        for c in await store.search(
                            q, actor, limit=500, method="scan", filters=filters
                        )
                    ]
                    keyset: list[int] = []
                    before = None
                    while page := await store.search(
                        q, actor, limit=4, before=before, filters=filters
                    ):
                        ids = [c["id"] for c in page]
                        assert ids == scan[len(keyset) : len(keyset) + 4], (
                            plans,
                            rows,
                            q,
                            merge_ratio,
                        )
                        keyset += ids
                        before = ids[-1]
                    assert keyset == scan, (plans, rows, actor.name, q, merge_ratio)
        assert len(await store.search("138", SYSTEM, limit=500)) == 30
    finally:
        await db.dispose()
