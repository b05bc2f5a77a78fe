"""CRM search and the customer page at 10,000 and 1,000,000 customers (with 2 interactions
per customer: 2,000,000 at 1M), SQLite and PostgreSQL, the plain scan as the baseline.

Per store and size: a database migrated to the newest schema, its secondary indexes
dropped, the synthetic rows bulk-loaded (Chinese and Latin names, companies, 1-2
contacts, 1-3 numbers, e-mails, the ``crm_search`` rows as the store writes them, calls
and notes; SQLite ``executemany`` in one transaction per chunk, PostgreSQL ``COPY``),
then the indexes, SQLite's FTS5 indexes and PostgreSQL's ``crm_search_trigrams``
(crm_0007, one ``INSERT … SELECT``) built after the load, and the statistics analysed.
The loaded databases are kept under ``--cache`` (SQLite files, PostgreSQL databases
``cti_bench_crm_<size>_<key>``; the key changes with the generator, the store's loader,
the search keys and the CRM migrations). Then, as a supervisor:

- search: the :data:`QUERIES` through ``CrmStore.search`` (``method="index"``), ``--rounds``
  rounds, each query ``--repeats`` times in a row; at 1M also ``method="scan"`` (the
  substring scan of the customer, contact, phone and e-mail tables: the baseline), every
  query once at the end of ``--scan-rounds`` of those rounds spread over the run (the
  baseline's samples taken in the same minutes as the search's), and both must find
  the same customers;
- page: what ``/crm/customer.html`` asks for a random customer (the card with contacts,
  its calls and notes, its audit trail, its opportunities), ``--pages`` customers.

Before measuring, every table and index of each database is read once into the OS page
cache (:func:`warm`), then every query and 20 pages run once: the figures are a server's
steady state, its database in memory, as a user meets it day after day; not the first
reads after a load (one such run gave a 1M page p99 of 174.8 ms against 32.5 ms at 10k,
its database files not yet read since the load; the next run, warm, 8.1 against 8.1).
The sizes are measured in turn, query by query and page by page (10k, 1m, 10k, ...), so
that the shared machine's changing load moves both alike and their ratio means something;
the median and slowest time of each query per size and the load average are printed as
comments. Prints one figure per line and store (ms, 99th percentile):
``search p99 10k``, ``search p99 1m``, ``scan p99 1m``, ``page p99 10k``, ``page p99 1m``,
``search p99 best of 3`` (the p99 of each query's fastest of its repeats: what is left
when a stall of the machine hits one run), then ``search speedup 1m`` (scan p99 / search
p99), the ``p99 ratio 1m/10k`` of the search and the page (#20's targets: speedup ≥ 50,
ratios ≤ 2) and the 1-minute load average before and after the measurements.

    .venv/bin/python bench/crm_search.py [--sizes 10000,1000000] [--only sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import inspect
import math
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
from scratch_pg import PG_ADMIN_URL, _admin, scratch_postgres  # bench/ helper
from sqlalchemy.engine import make_url

from crm_bridge import keys
from crm_bridge.access import Actor
from crm_bridge.interactions import Interactions
from crm_bridge.keys import name_key, region_of, search_grams
from crm_bridge.models import Contact, Customer, CustomerSearch, Email, Interaction, Phone
from crm_bridge.pool import Pool
from crm_bridge.search import GRAMS, TRIGRAMS
from crm_bridge.store import CrmStore
from cti import migrations
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import utcnow

SUP = Actor("bench-sup", "supervisor")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁"
SURNAMES += "潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉宇浩凯健俊帆"
FIRST = [
    "James",
    "Mary",
    "John",
    "Linda",
    "Robert",
    "Susan",
    "Michael",
    "Karen",
    "David",
    "Nancy",
    "Wei",
    "Ming",
    "Anna",
    "Peter",
    "Laura",
    "Chen",
    "Olga",
    "Hans",
    "Yuki",
    "Omar",
]
LAST = [
    "Smith",
    "Johnson",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Martin",
    "Lee",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Lopez",
]
CITY = "北京上海广州深圳杭州成都武汉南京天津重庆"
TRADE = ["科技", "贸易", "物流", "医药", "教育", "餐饮", "建材", "电子", "软件", "文化"]
CO_EN = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]
CO_SUFFIX = ["Ltd", "Inc", "GmbH", "Trading", "Logistics", "Systems"]

QUERIES: list[tuple[str, str]] = [
    ("chinese name, 2 chars", "张伟"),
    ("chinese name, 3 chars", "王秀英"),
    ("latin name", "garcia"),
    ("latin full name", "Anna Walker"),
    ("company (zh)", "杭州物流"),
    ("company (en)", "globex sys"),
    ("number, 4 digits", "5678"),
    ("number, 7 digits", "1381234"),
    ("number, formatted", "138 0013 8000"),
    ("email part", "@mail-17."),
    ("no match", "zzqqxxyy"),
]


def _chinese_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))


def _latin_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _company(rng: random.Random) -> str:
    if rng.random() < 0.5:
        i = rng.randrange(0, len(CITY), 2)
        return f"{CITY[i : i + 2]}{rng.choice(TRADE)}有限公司{rng.randint(1, 999)}"
    return f"{rng.choice(CO_EN)} {rng.choice(CO_SUFFIX)} {rng.randint(1, 999)}"


def _mobile(rng: random.Random) -> tuple[str, str]:
    digits = f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"
    raw = rng.choice([digits, f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}", f"0086-{digits}"])
    return raw, f"+86{digits}"


def synthetic_rows(n: int, seed: int = 20261123) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    now = utcnow()
    out: dict[str, list[dict[str, Any]]] = {"customers": [], "contacts": [], "phones": []}
    out["emails"] = []
    contact_id = phone_id = email_id = 0
    for cid in range(1, n + 1):
        person = rng.random() < 0.6
        zh = rng.random() < 0.5
        name = (_chinese_name(rng) if zh else _latin_name(rng)) if person else _company(rng)
        company = "" if person and rng.random() < 0.5 else _company(rng)
        owner = None if rng.random() < 0.2 else f"agent{rng.randint(1, 40)}"
        out["customers"].append(
            {
                "id": cid,
                "kind": "person" if person else "company",
                "name": name,
                "name_key": name_key(name),
                "company": company,
                "company_key": name_key(company),
                "tier": "",
                "tags": "",
                "notes": "",
                "owner": owner,
                "owned_since": None,
                "last_contact_at": None,
                "created_at": now,
                "updated_at": now,
            }
        )
        for _ in range(1 if rng.random() < 0.7 else 2):
            contact_id += 1
            cname = name if person else (_chinese_name(rng) if zh else _latin_name(rng))
            out["contacts"].append(
                {
                    "id": contact_id,
                    "customer_id": cid,
                    "name": cname,
                    "name_key": name_key(cname),
                    "title": "",
                    "birthday": None,
                    "birthday_md": None,
                    "tags": "",
                    "notes": "",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for _ in range(rng.choice((1, 1, 2, 3))):
                phone_id += 1
                raw, e164 = _mobile(rng)
                out["phones"].append(
                    {
                        "id": phone_id,
                        "contact_id": contact_id,
                        "customer_id": cid,
                        "raw": raw,
                        "e164": e164,
                        "label": "",
                    }
                )
            if rng.random() < 0.6:
                email_id += 1
                addr = f"user{contact_id}@mail-{rng.randint(1, 500)}.example.com"
                out["emails"].append(
                    {
                        "id": email_id,
                        "contact_id": contact_id,
                        "customer_id": cid,
                        "address": addr,
                        "address_key": addr.lower(),
                    }
                )
    return out


CHUNK = 20_000


def _row(model: Any, values: dict[str, Any], now: Any) -> tuple[Any, ...]:
    """``values`` as a tuple in the table's column order, column defaults filled in."""
    out = []
    for col in model.__table__.columns:
        if col.name in values:
            out.append(values[col.name])
        elif col.default is not None and getattr(col.default, "is_scalar", False):
            out.append(col.default.arg)
        elif col.default is not None:
            out.append(now)  # utcnow
        else:
            out.append(None)
    return tuple(out)


def chunks(n: int, interactions_per_customer: float, seed: int = 20261123) -> Any:
    """The synthetic rows of :func:`synthetic_rows`, ``CHUNK`` customers at a time, as
    tuples per table (column order), plus their ``crm_search`` rows (as
    crm_bridge.search.reindex writes them) and interactions (calls and notes)."""
    rng = random.Random(seed + 1)
    now = utcnow()
    offset = {"contacts": 0, "phones": 0, "emails": 0}
    interaction_id = 0
    for first in range(0, n, CHUNK):
        count = min(CHUNK, n - first)
        rows = synthetic_rows(count, seed + first)
        base = dict(offset)
        for key in ("contacts", "phones", "emails"):
            for r in rows[key]:
                r["id"] += base[key]
                if key != "contacts":
                    r["contact_id"] += base["contacts"]
            offset[key] += len(rows[key])
        for key in ("contacts", "phones", "emails"):
            for r in rows[key]:
                r["customer_id"] += first
        for c in rows["customers"]:
            c["id"] += first
        names: dict[int, list[str]] = {}
        phones: dict[int, list[str]] = {}
        emails: dict[int, list[str]] = {}
        for c in rows["customers"]:
            names[c["id"]] = [c["name_key"], c["company_key"]]
        for ct in rows["contacts"]:
            names[ct["customer_id"]].append(ct["name_key"])
        for p in rows["phones"]:
            phones.setdefault(p["customer_id"], []).append(p["e164"])
        for e in rows["emails"]:
            emails.setdefault(e["customer_id"], []).append(e["address_key"])
        for c in rows["customers"]:
            nums = phones.get(c["id"], [])
            c["region"] = region_of(nums[0]) if nums and rng.random() < 0.02 else ""
            c["custom"] = "{}"
        search = []
        for cid, ns in names.items():
            row = ("\n".join(ns), "\n".join(phones.get(cid, [])), "\n".join(emails.get(cid, [])))
            search.append((cid, *row, search_grams(*row)))
        interactions = []
        total = int(count * interactions_per_customer)
        for _ in range(total):
            interaction_id += 1
            cid = first + rng.randint(1, count)
            call = rng.random() < 0.8
            started = now - timedelta(minutes=rng.randint(0, 60 * 24 * 365))
            interactions.append(
                _row(
                    Interaction,
                    {
                        "id": interaction_id,
                        "linkedid": f"b{interaction_id}" if call else None,
                        "customer_id": cid,
                        "contact_id": None,
                        "kind": "call" if call else "note",
                        "caller_num": "",
                        "agent": f"agent{rng.randint(1, 40)}",
                        "queue": "sales" if call else "",
                        "started_at": started,
                        "ended_at": started + timedelta(seconds=90) if call else None,
                        "wait_s": 5.0 if call else None,
                        "talk_s": 80.0 if call else None,
                        "outcome": "answered" if call else "",
                        "notes": "" if call else "note",
                        "created_at": started,
                        "updated_at": started,
                    },
                    now,
                )
            )
        yield {
            Customer: [_row(Customer, r, now) for r in rows["customers"]],
            Contact: [_row(Contact, r, now) for r in rows["contacts"]],
            Phone: [_row(Phone, r, now) for r in rows["phones"]],
            Email: [_row(Email, r, now) for r in rows["emails"]],
            CustomerSearch: search,
            Interaction: interactions,
        }


TABLES = (Customer, Contact, Phone, Email, CustomerSearch, Interaction)


async def _pg_load(url: str, n: int, per_customer: float) -> dict[str, int]:
    """COPY into the tables with their secondary indexes dropped, then rebuilt."""
    raw = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(raw)
    counts = {m.__tablename__: 0 for m in TABLES}
    try:
        names = [m.__tablename__ for m in TABLES]
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY($1::text[])"
            " AND indexname NOT LIKE 'pk_%' AND indexname NOT LIKE 'uq_%'",
            names,
        )
        for ix in indexes:
            await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
        trigrams_off = await _pg_trigrams_off(conn)
        for chunk in chunks(n, per_customer):
            for model in TABLES:
                records = chunk[model]
                columns = [c.name for c in model.__table__.columns]
                await conn.copy_records_to_table(
                    model.__tablename__, records=records, columns=columns
                )
                counts[model.__tablename__] += len(records)
        for ix in indexes:
            await conn.execute(ix["indexdef"])
        await _pg_fill_trigrams(conn, raw, n, trigrams_off)
        counts["crm_search_trigrams"] = await conn.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'crm_search_trigrams'"
        )
    finally:
        await conn.close()
    return counts


async def _pg_trigrams_off(conn: asyncpg.Connection) -> tuple[list[Any], Any]:
    """crm_search's crm_0007 triggers and crm_search_trigrams' primary key dropped (before
    the COPY); returns their definitions for :func:`_pg_fill_trigrams`."""
    triggers = await conn.fetch(
        "SELECT tgname, pg_get_triggerdef(oid) AS def FROM pg_trigger"
        " WHERE tgrelid = 'crm_search'::regclass AND tgname LIKE 'crm_search_trigrams_%'"
    )
    for t in triggers:
        await conn.execute(f'DROP TRIGGER "{t["tgname"]}" ON crm_search')
    pk = await conn.fetchrow(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE conrelid = 'crm_search_trigrams'::regclass AND contype = 'p'"
    )
    await conn.execute(f'ALTER TABLE crm_search_trigrams DROP CONSTRAINT "{pk["conname"]}"')
    return list(triggers), pk


async def _pg_fill_trigrams(
    conn: asyncpg.Connection, raw: str, n: int, off: tuple[list[Any], Any]
) -> None:
    """crm_0007's table filled as its migration fills it (one ``INSERT … SELECT`` through
    ``crm_search_trigrams_of``), in two halves at once (2 cores), then its primary key
    built, the triggers back, ``VACUUM ANALYZE`` (the visibility map: index-only scans of
    the posting lists)."""
    triggers, pk = off

    async def fill(lo: int, hi: int) -> None:
        c = await asyncpg.connect(raw)
        try:
            await c.execute("SET synchronous_commit = off")
            await c.execute(
                "INSERT INTO crm_search_trigrams (gram, customer_id)"
                " SELECT g, s.customer_id FROM crm_search AS s,"
                " LATERAL crm_search_trigrams_of(s.names, s.phones, s.emails) AS g"
                " WHERE s.customer_id > $1 AND s.customer_id <= $2",
                lo,
                hi,
            )
        finally:
            await c.close()

    await asyncio.gather(fill(0, n // 2), fill(n // 2, n))
    await conn.execute("SET maintenance_work_mem = '1GB'")
    await conn.execute(
        f'ALTER TABLE crm_search_trigrams ADD CONSTRAINT "{pk["conname"]}" {pk["def"]}'
    )
    for t in triggers:
        await conn.execute(t["def"])
    await conn.execute("VACUUM ANALYZE")


def _sqlite_load(path: str, n: int, per_customer: float) -> dict[str, int]:
    db = sqlite3.connect(path)
    counts = {m.__tablename__: 0 for m in TABLES}
    try:
        names = [m.__tablename__ for m in TABLES]
        marks = ",".join("?" * len(names))
        indexes = db.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({marks})",
            names,
        ).fetchall()
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        # the FTS5 indexes' triggers off during the load, the indexes rebuilt after it (as
        # the migrations build them for existing rows)
        triggers = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'crm_search'"
        ).fetchall()
        for name, _ in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        for chunk in chunks(n, per_customer):
            for model in TABLES:
                records = chunk[model]
                cols = [c.name for c in model.__table__.columns]
                sql = (
                    f"INSERT INTO {model.__tablename__} ({', '.join(cols)})"
                    f" VALUES ({', '.join('?' * len(cols))})"
                )
                db.executemany(sql, [tuple(_sqlite_value(v) for v in r) for r in records])
                counts[model.__tablename__] += len(records)
            db.commit()
        for _, sql in indexes:
            db.execute(sql)
        for fts in (TRIGRAMS, GRAMS):
            db.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
        for _, sql in triggers:
            db.execute(sql)
        db.execute("ANALYZE")
        db.commit()
    finally:
        db.close()
    return counts


def _sqlite_value(v: Any) -> Any:
    # what cti.store.models.UTCDateTime stores on SQLite: naive UTC text
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return v


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Timed:
    """What :func:`time_search` measured, per size: every run's time (ms), each query's
    fastest of its repeats, and the ids each query found (its last run)."""

    samples: dict[int, list[float]] = field(default_factory=dict)
    best: dict[int, list[float]] = field(default_factory=dict)
    ids: dict[int, dict[str, list[int]]] = field(default_factory=dict)


async def time_search(
    stores: dict[int, CrmStore],
    rounds: int,
    repeats: int = 1,
    scanned: dict[int, CrmStore] | None = None,
    scan_rounds: int = 0,
) -> tuple[Timed, Timed]:
    """Each round runs every query on every size in turn (10k, 1m, 10k, ...): the sizes'
    samples are taken in the same minutes, so a change in the shared machine's load
    moves them alike instead of skewing their ratio. Each query runs ``repeats`` times
    in a row: every run is a sample, and the fastest of the repeats is one more (a
    stall of the machine hits one repeat, a query that is really slow is slow in all of
    them). The baseline, the plain scan of the ``scanned`` sizes, runs every query once
    at the end of ``scan_rounds`` rounds spread over the run: its samples are taken in
    the same minutes as the search's too. Returns (search, scan)."""
    index, scan = Timed(), Timed()
    per_query: dict[tuple[str, int], dict[str, list[float]]] = {}
    scan_at = {r * rounds // scan_rounds for r in range(scan_rounds)} if scan_rounds else set()

    for r in range(rounds):
        for name, q in QUERIES:
            for n, store in stores.items():
                await _timed(index, per_query, "index", n, store, name, q, repeats)
        if r in scan_at:
            for name, q in QUERIES:
                for n, store in (scanned or {}).items():
                    await _timed(scan, per_query, "scan", n, store, name, q, 1)
    if rounds > 1:
        for (method, n), by_query in per_query.items():
            print(
                f"# {method} {label(n)}: "
                + ", ".join(
                    f"{name} {statistics.median(t):.1f}/{max(t):.1f}"
                    for name, t in by_query.items()
                )
                + f" (ms, median/slowest of the runs; load average {_load()})",
                flush=True,
            )
    return index, scan


async def _timed(
    into: Timed,
    per_query: dict[tuple[str, int], dict[str, list[float]]],
    method: Literal["index", "scan"],
    n: int,
    store: CrmStore,
    name: str,
    q: str,
    repeats: int,
) -> None:
    """``q`` searched ``repeats`` times in a row on ``store`` (size ``n``), timed."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = await store.search(q, SUP, limit=50, method=method)
        runs.append((time.perf_counter() - t0) * 1000)
    into.samples.setdefault(n, []).extend(runs)
    into.best.setdefault(n, []).append(min(runs))
    per_query.setdefault((method, n), {}).setdefault(name, []).extend(runs)
    into.ids.setdefault(n, {})[q] = [r["id"] for r in rows]


async def time_page(
    pages: dict[int, tuple[CrmStore, Interactions, Pool]], samples: int
) -> dict[int, list[float]]:
    """The customer page's requests (card with contacts, its calls and notes, its audit
    trail, its opportunities) for random customers, one after the other, the sizes in
    turn (as :func:`time_search`)."""
    rng = random.Random(7)
    out: dict[int, list[float]] = {n: [] for n in pages}
    for _ in range(samples):
        for n, (store, interactions, pool) in pages.items():
            cid = rng.randint(1, n)
            t0 = time.perf_counter()
            await store.get_customer(cid, SUP)
            await interactions.for_customer(cid, SUP, 200)
            await store.audit_log(cid, SUP)
            await pool.list_leads(SUP, None, cid)
            out[n].append((time.perf_counter() - t0) * 1000)
    return out


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@functools.cache
def cache_key(dialect: str) -> str:
    """Changes with what the ``dialect``'s databases are built from (the synthetic rows,
    its loader, the search keys, the CRM schema): a database built by another version is
    not used (nor kept: a run deletes the other versions' copies of its sizes)."""
    digest = hashlib.sha256(Path(keys.__file__).read_bytes())
    pg = (_pg_load, _pg_trigrams_off, _pg_fill_trigrams)
    loaders = pg if dialect == "postgresql" else (_sqlite_load, _sqlite_value)
    for built_by in (synthetic_rows, chunks, _row, *loaders):
        digest.update(inspect.getsource(built_by).encode())
    words = (SURNAMES, GIVEN, FIRST, LAST, CITY, TRADE, CO_EN, CO_SUFFIX, CHUNK)
    digest.update(repr(words).encode())
    # the CRM's migrations only (their text): another feature's leaves these tables be
    versions = Path(next(iter(migrations.__path__))) / "versions"
    for script in sorted(versions.glob("crm_*.py")):
        digest.update(script.read_bytes())
    return digest.hexdigest()[:10]


async def load(url: str, n: int, args: argparse.Namespace) -> None:
    dialect = make_url(url).get_backend_name()
    await asyncio.to_thread(upgrade, url, "heads")
    t0 = time.perf_counter()
    if dialect == "postgresql":
        counts = await _pg_load(url, n, args.interactions_per_customer)
    else:
        path = make_url(url).database
        assert path is not None
        counts = await asyncio.to_thread(_sqlite_load, path, n, args.interactions_per_customer)
    print(
        f"# [{dialect}] {n} customers loaded in {time.perf_counter() - t0:.0f} s: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        flush=True,
    )


async def warm(url: str) -> None:
    """Every table and index of the database read once, into the OS page cache (what a
    server in its steady state has in memory: the bench measures that, not the first
    reads of a database just loaded or restored). PostgreSQL: ``pg_prewarm(…, 'read')``
    of each relation (contrib); SQLite: its file read through."""
    t0 = time.perf_counter()
    if make_url(url).get_backend_name() == "postgresql":
        raw = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(raw)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            pages = await conn.fetchval(
                "SELECT sum(pg_prewarm(c.oid, 'read')) FROM pg_class AS c"
                " JOIN pg_namespace AS ns ON ns.oid = c.relnamespace"
                " WHERE ns.nspname = 'public' AND c.relkind IN ('r', 'i', 't', 'm')"
            )
        finally:
            await conn.close()
        size = (pages or 0) * 8192
    else:
        path = make_url(url).database
        assert path is not None
        size = await asyncio.to_thread(_read_through, Path(path))
    print(
        f"# warmed {make_url(url).database}: {size / 2**30:.1f} GiB read in"
        f" {time.perf_counter() - t0:.0f} s",
        flush=True,
    )


def _read_through(path: Path) -> int:
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            size += len(block)
    return size


async def run_sizes(urls: dict[int, str], args: argparse.Namespace) -> dict[int, dict[str, float]]:
    """Search, scan and page p99s of every size, measured in turn (see :func:`time_search`),
    on warmed databases (:func:`warm`)."""
    for url in urls.values():
        await warm(url)
    dbs = {n: Database.from_url(url) for n, url in urls.items()}
    out: dict[int, dict[str, float]] = {n: {} for n in urls}
    load_before = os.getloadavg()[0]
    try:
        stores = {n: CrmStore(db, "CN") for n, db in dbs.items()}
        await time_search(stores, 1)  # warm the caches
        scanned = {n: s for n, s in stores.items() if n >= args.scan_from}
        fast, slow = await time_search(stores, args.rounds, args.repeats, scanned, args.scan_rounds)
        for n in stores:
            out[n]["search"] = p99(fast.samples[n])
            out[n]["search best"] = p99(fast.best[n])
        for n in scanned:
            out[n]["scan"] = p99(slow.samples[n])
            differ = [q for q in fast.ids[n] if fast.ids[n][q] != slow.ids[n][q]]
            if differ:
                print(f"# {label(n)}: index and scan DIFFER for {differ}", flush=True)
        pages = {n: (s, Interactions(s), Pool(s)) for n, s in stores.items()}
        await time_page(pages, 20)  # warm
        for n, samples in (await time_page(pages, args.pages)).items():
            out[n]["page"] = p99(samples)
        print(f"# load average after the pages: {_load()}", flush=True)
        for n in out:
            out[n]["load before"] = load_before
            out[n]["load after"] = os.getloadavg()[0]
    finally:
        for db in dbs.values():
            await db.dispose()
    return out


@asynccontextmanager
async def sqlite_db(n: int, args: argparse.Namespace) -> AsyncIterator[str]:
    """The loaded SQLite database: cached under ``--cache`` (a file per size and
    :func:`cache_key`), else in a temp dir."""
    if not args.cache:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            await load(url, n, args)
            yield url
        return
    path, found = await asyncio.to_thread(_sqlite_cache, Path(args.cache), n)
    if not found:
        part = path.with_suffix(".part")
        await load(f"sqlite+aiosqlite:///{part}", n, args)
        await asyncio.to_thread(part.rename, path)
    else:
        print(f"# [sqlite] {n} customers: cached {path}", flush=True)
    yield f"sqlite+aiosqlite:///{path}"


def _sqlite_cache(cache: Path, n: int) -> tuple[Path, bool]:
    """The cached file's path and whether it is there (other versions' files removed)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"sqlite-{label(n)}-{cache_key('sqlite')}.db"
    if path.exists():
        return path, True
    for old in cache.glob(f"sqlite-{label(n)}-*"):
        old.unlink()
    return path, False


@asynccontextmanager
async def postgres_db(n: int, args: argparse.Namespace) -> AsyncIterator[str]:
    """The loaded PostgreSQL database: kept between runs (``cti_bench_crm_<size>_<key>``)
    when ``--cache`` is set, else a scratch database."""
    if not args.cache:
        async with scratch_postgres() as url:
            await load(url, n, args)
            yield url
        return
    name = f"cti_bench_crm_{label(n)}_{cache_key('postgresql')}"  # quoted below: never input
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        found = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not found:
            stale = await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                f"cti_bench_crm_{label(n)}_%",
            )
            for row in stale:
                await admin.execute(f'DROP DATABASE "{row["datname"]}" WITH (FORCE)')
    finally:
        await admin.close()
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    rendered = url.render_as_string(hide_password=False)
    if not found:
        part = f"{name}_part"
        await _admin(f'CREATE DATABASE "{part}"')
        await load(url.set(database=part).render_as_string(hide_password=False), n, args)
        await _admin(f'ALTER DATABASE "{part}" RENAME TO "{name}"')
    else:
        print(f"# [postgresql] {n} customers: cached database {name}", flush=True)
    yield rendered


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


async def run_store(store_name: str, args: argparse.Namespace) -> None:
    async with AsyncExitStack() as stack:
        urls = {
            n: await stack.enter_async_context(
                sqlite_db(n, args) if store_name == "sqlite" else postgres_db(n, args)
            )
            for n in args.sizes
        }
        if args.build_only:
            return
        print(f"# [{store_name}] measuring, load average {_load()}", flush=True)
        results = await run_sizes(urls, args)
    for n, res in results.items():
        size = f"{label(n)} ({store_name})"
        print(f"search p99 {size}: {res['search']:.1f} ms", flush=True)
        print(f"search p99 best of {args.repeats} {size}: {res['search best']:.1f} ms", flush=True)
        if "scan" in res:
            print(f"scan p99 {size}: {res['scan']:.1f} ms", flush=True)
            speedup = res["scan"] / res["search"] if res["search"] else 0.0
            print(f"search speedup {size}: {speedup:.1f} x", flush=True)
        print(f"page p99 {size}: {res['page']:.1f} ms", flush=True)
    small, large = min(results), max(results)
    if small != large:
        for what in ("search", "search best", "page"):
            ratio = results[large][what] / results[small][what]
            print(
                f"{what} p99 ratio {label(large)}/{label(small)} ({store_name}): {ratio:.1f} x",
                flush=True,
            )
    for when in ("before", "after"):
        value = results[small][f"load {when}"]
        print(f"load average {when} ({store_name}): {value:.1f} tasks", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10000,1000000", help="customer counts, comma-separated")
    parser.add_argument("--interactions-per-customer", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=40, help="rounds of the search queries")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each search query in a row per round"
    )
    parser.add_argument(
        "--scan-rounds", type=int, default=4, help="rounds that end with the plain scan"
    )
    parser.add_argument(
        "--scan-from", type=int, default=1_000_000, help="time the plain scan from this size on"
    )
    parser.add_argument("--pages", type=int, default=300, help="customer pages timed")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--build-only", action="store_true", help="load (or find) the databases, measure nothing"
    )
    parser.add_argument(
        "--cache",
        default="var/bench/crm_search",
        help="keep the loaded databases between runs: SQLite files here, PostgreSQL"
        " databases cti_bench_crm_*; '' to load afresh into throw-away ones",
    )
    args = parser.parse_args()
    # now, from the source as this run loaded it (getsource reads the file when called: an
    # edit during a long run would give another key and drop the cached databases)
    cache_key("sqlite")
    cache_key("postgresql")
    args.sizes = [int(x) for x in args.sizes.split(",")]
    if args.only != "postgresql":
        await run_store("sqlite", args)
    if args.only != "sqlite":
        await run_store("postgresql", args)


if __name__ == "__main__":
    asyncio.run(main())
