"""CRM search on 100k customers: the plain scan vs the search indexes, SQLite and PostgreSQL.

Builds a fresh database per dialect (SQLite file in a temp dir; PostgreSQL scratch database
``cti_bench_<hex>`` created and dropped like tests/conftest.py does), migrates it to the
CRM schema *without* the search table (revision ``crm_0001``), loads N synthetic customers
(Chinese and Latin names, companies, 1-2 contacts, 1-3 phone numbers, emails), times each
query through :func:`crm_bridge.search.search` with ``method="scan"`` (the
baseline: substring scans of the customer, contact, phone and email tables), then migrates
to the newest revision (crm_0002: the ``crm_search`` table, filled from the loaded rows,
and its trigram indexes on PostgreSQL) and times the same queries through
``search(method="index")``. Results must be identical (checked, also against the scan on
the new schema). Prints median ms per query and the ratio scan / index.

    .venv/bin/python bench/crm_search.py [--customers 100000] [--rounds 7] [--only sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from scratch_pg import scratch_postgres  # bench/ helper
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from crm_bridge.access import Actor
from crm_bridge.keys import name_key
from crm_bridge.models import Contact, Customer, Email, Phone
from crm_bridge.store import CrmStore
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import utcnow

SUP = Actor("bench-sup", "supervisor")
AGENT = Actor("agent7", "agent")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁"
SURNAMES += "潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉宇浩凯健俊帆"
FIRST = [
    "James", "Mary", "John", "Linda", "Robert", "Susan", "Michael", "Karen", "David",
    "Nancy", "Wei", "Ming", "Anna", "Peter", "Laura", "Chen", "Olga", "Hans", "Yuki", "Omar",
]  # fmt: skip
LAST = [
    "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
    "Thomas", "Moore", "Martin", "Lee", "Walker", "Hall", "Young", "King", "Wright", "Lopez",
]  # fmt: skip
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
                "id": cid, "kind": "person" if person else "company", "name": name,
                "name_key": name_key(name), "company": company, "company_key": name_key(company),
                "tier": "", "tags": "", "notes": "", "owner": owner, "owned_since": None,
                "last_contact_at": None, "created_at": now, "updated_at": now,
            }
        )  # fmt: skip
        for _ in range(1 if rng.random() < 0.7 else 2):
            contact_id += 1
            cname = name if person else (_chinese_name(rng) if zh else _latin_name(rng))
            out["contacts"].append(
                {
                    "id": contact_id, "customer_id": cid, "name": cname,
                    "name_key": name_key(cname), "title": "", "birthday": None,
                    "birthday_md": None, "tags": "", "notes": "", "created_at": now,
                    "updated_at": now,
                }
            )  # fmt: skip
            for _ in range(rng.choice((1, 1, 2, 3))):
                phone_id += 1
                raw, e164 = _mobile(rng)
                out["phones"].append(
                    {"id": phone_id, "contact_id": contact_id, "customer_id": cid, "raw": raw,
                     "e164": e164, "label": ""}
                )  # fmt: skip
            if rng.random() < 0.6:
                email_id += 1
                addr = f"user{contact_id}@mail-{rng.randint(1, 500)}.example.com"
                out["emails"].append(
                    {"id": email_id, "contact_id": contact_id, "customer_id": cid,
                     "address": addr, "address_key": addr.lower()}
                )  # fmt: skip
    return out


async def load(db: Database, rows: dict[str, list[dict[str, Any]]]) -> None:
    tables = (("customers", Customer), ("contacts", Contact), ("phones", Phone))
    async with db.engine.begin() as conn:
        for key, model in (*tables, ("emails", Email)):
            data = rows[key]
            for i in range(0, len(data), 5000):
                await conn.execute(insert(model), data[i : i + 5000])
    if db.dialect == "postgresql":
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()


async def time_queries(
    store: CrmStore, rounds: int, method: Literal["index", "scan"]
) -> dict[str, tuple[float, list[int], list[int]]]:
    """Per query: median ms, ids seen by a supervisor, ids seen by an agent."""
    out = {}
    for label, q in QUERIES:
        times = []
        ids: list[int] = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            rows = await store.search(q, SUP, limit=50, method=method)
            times.append((time.perf_counter() - t0) * 1000)
            ids = [r["id"] for r in rows]
        agent_ids = [r["id"] for r in await store.search(q, AGENT, limit=50, method=method)]
        out[label] = (statistics.median(times), ids, agent_ids)
    return out


async def run_one(url: str, n: int, rounds: int) -> None:
    dialect = make_url(url).get_backend_name()
    t0 = time.perf_counter()
    await asyncio.to_thread(upgrade, url, "crm_0001")
    rows = synthetic_rows(n)
    db = Database.from_url(url)
    try:
        await load(db, rows)
        print(
            f"\n[{dialect}] {n} customers, {len(rows['contacts'])} contacts, "
            f"{len(rows['phones'])} phones, {len(rows['emails'])} emails "
            f"loaded in {time.perf_counter() - t0:.1f} s"
        )
        store = CrmStore(db, "CN")
        base = await time_queries(store, rounds, "scan")
        await db.dispose()
        t1 = time.perf_counter()
        await asyncio.to_thread(upgrade, url, "heads")
        print(f"  migrated to heads (search indexes built) in {time.perf_counter() - t1:.1f} s")
        db = Database.from_url(url)
        store = CrmStore(db, "CN")
        fast = await time_queries(store, rounds, "index")
        again = await time_queries(store, 1, "scan")  # the reference, on the same schema
    finally:
        await db.dispose()
    print(f"  {'query':<24} {'hits':>5} {'scan ms':>9} {'indexed ms':>11} {'ratio':>7}")
    for label, q in QUERIES:
        b_ms, b_ids, b_agent = base[label]
        f_ms, f_ids, f_agent = fast[label]
        same = "" if (b_ids, b_agent) == (f_ids, f_agent) == again[label][1:] else "  DIFFER"
        print(
            f"  {label:<24} {len(b_ids):>5} {b_ms:>9.1f} {f_ms:>11.1f} {b_ms / f_ms:>6.1f}x"
            f"{same}  ({q!r})"
        )
    total_b = sum(v[0] for v in base.values())
    total_f = sum(v[0] for v in fast.values())
    ratio = total_b / total_f
    print(f"  {'all queries':<24} {'':>5} {total_b:>9.1f} {total_f:>11.1f} {ratio:>6.1f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            await run_one(
                f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args.customers, args.rounds
            )
    if args.only != "sqlite":
        async with scratch_postgres() as url:
            await run_one(url, args.customers, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
