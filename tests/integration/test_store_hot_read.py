"""The hot path's reads (Database.fetch: Core statements compiled once, run on the
driver's connection, no ORM) give what the ORM read gave, on SQLite and PostgreSQL:
the same card, the same interactions with the same values (aware UTC datetimes, floats,
dates), nothing for hostile numbers, and they survive a PostgreSQL server process that
went away under a kept connection (decision 0027, "Cheaper hot reads")."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Integer, bindparam, func, select, text

from crm_bridge.access import SYSTEM
from crm_bridge.directory import StoreDirectory
from crm_bridge.keys import tags_list
from crm_bridge.models import Contact, Customer, Interaction, Phone
from crm_bridge.records import interaction_dict
from crm_bridge.schemas import CustomerIn
from crm_bridge.store import CrmStore
from cti.services import CustomerCard
from cti.store.db import PG_READERS, Database
from cti.store.hot_read import Plan, Statement

NUMBER = "+8613800138000"


async def _orm_card(db: Database, e164: str) -> CustomerCard:
    """The card as the ORM read made it before."""
    async with db.read_session() as s:
        customer, contact = (
            await s.execute(
                select(Customer, Contact)
                .join(Phone, Phone.customer_id == Customer.id)
                .join(Contact, Contact.id == Phone.contact_id)
                .where(Phone.e164 == e164)
            )
        ).one()
        return CustomerCard(
            customer_id=customer.id, name=customer.name, company=customer.company,
            tier=customer.tier, owner_agent=customer.owner or "",
            tags=tuple(tags_list(customer.tags)), notes=customer.notes,
            birthday=contact.birthday, contact_id=contact.id, contact_name=contact.name,
        )  # fmt: skip


async def test_the_card_and_history_are_what_the_orm_read_gives(db: Database) -> None:
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    created = await store.create_customer(
        CustomerIn.model_validate({
            "name": "张三", "company": "Acme", "tier": "gold", "tags": ["vip", "回访"],
            "notes": "line one\nline two", "phones": [NUMBER], "birthday": "1980-02-29",
        }),
        SYSTEM,
    )  # fmt: skip
    started = datetime(2026, 3, 1, 9, 30, 15, 250_000, tzinfo=UTC)
    async with db.session() as s:
        for i in range(7):
            s.add(
                Interaction(
                    linkedid=f"call-{i}", customer_id=created["id"], agent="a101",
                    caller_num=NUMBER, started_at=started.replace(minute=i),
                    ended_at=started.replace(minute=i, second=59) if i % 2 else None,
                    wait_s=1.5 * i, talk_s=None if i == 3 else 60.25, survey_score=i or None,
                    notes=f"note {i}", outcome="answered",
                )
            )  # fmt: skip
        await s.commit()

    card = await directory.lookup_number(NUMBER)
    assert card == await _orm_card(db, NUMBER)
    assert card is not None and card.birthday == date(1980, 2, 29)
    assert card.tags == ("vip", "回访")

    for limit in (5, 100):
        history = await directory.recent_interactions(created["id"], limit)
        async with db.read_session() as s:
            rows = await s.scalars(
                select(Interaction)
                .where(Interaction.customer_id == created["id"])
                .order_by(Interaction.started_at.desc(), Interaction.id.desc())
                .limit(limit)
            )
            assert history == [interaction_dict(i) for i in rows]
    assert [h["linkedid"] for h in history] == [f"call-{i}" for i in reversed(range(7))]
    assert history[0]["started_at"] == "2026-03-01T09:06:15.250000+00:00"


@pytest.mark.parametrize(
    "number",
    ["+86138\x00001380", "+1' OR '1'='1", "+" + "9" * 31, "+\u202e1234", "+\uff11\uff12\uff13"],
)
async def test_hostile_numbers_find_nobody_and_raise_nothing(db: Database, number: str) -> None:
    store = CrmStore(db, "CN")
    await store.create_customer(
        CustomerIn.model_validate({"name": "X", "phones": [NUMBER]}), SYSTEM
    )
    assert await StoreDirectory(store).lookup_number(number) is None


_PID = Statement(select(func.pg_backend_pid()))


def _pid() -> Plan[int]:
    rows = yield _PID()
    return int(rows[0][0])


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
async def test_kept_readers_whose_server_processes_went_away_are_replaced(
    db: Database,
) -> None:
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    numbers = [f"+86139{i:08d}" for i in range(2 * PG_READERS)]
    for i, number in enumerate(numbers):
        await store.create_customer(
            CustomerIn.model_validate({"name": f"C{i}", "phones": [number]}), SYSTEM
        )
    await db.warm()
    before = set(await asyncio.gather(*(db.fetch(_pid) for _ in range(PG_READERS))))
    # a restart or failover: every kept connection's server process goes away
    async with db.reader.connect() as other:
        for pid in before:
            await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    cards = await asyncio.gather(*(directory.lookup_number(n) for n in numbers))
    assert [c.name if c else None for c in cards] == [f"C{i}" for i in range(len(numbers))]
    after = set(await asyncio.gather(*(db.fetch(_pid) for _ in range(PG_READERS))))
    assert not after & before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_fetch_reads_on_query_only_connections(db: Database) -> None:
    """On a SQLite file the connections kept for fetch() are the query_only readers."""
    only = Statement(select(text("query_only FROM pragma_query_only")))

    def query_only() -> Plan[int]:
        rows = yield only()
        return int(rows[0][0])

    assert await db.fetch(query_only) == 1


async def test_fetch_in_memory_runs_on_the_one_engine() -> None:
    db = Database.from_url("sqlite://")
    try:
        square = Statement(select(bindparam("n", type_=Integer()) * bindparam("n")))

        def squared(n: int) -> Plan[int]:
            rows = yield square(n=n)
            return int(rows[0][0])

        reads = (db.fetch(functools.partial(squared, n)) for n in range(4))
        assert await asyncio.gather(*reads) == [0, 1, 4, 9]
    finally:
        await db.dispose()
