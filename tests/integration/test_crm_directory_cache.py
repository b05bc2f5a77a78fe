"""The caller's card is ready before the ring and stays right (decision 0027).

StoreDirectory answers from a cache filled by the first lookup of a number (the desktop
and the IVR ask at the call's entry), cleared when the CRM writes what a card shows, and
reads beside the writer, never behind it. On SQLite and PostgreSQL, against a real local
HTTP server as the slow external CRM.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event, insert, text

from crm_bridge.access import SYSTEM
from crm_bridge.config import ExternalLookup
from crm_bridge.directory import ExternalCrmLookup, StoreDirectory
from crm_bridge.models import Interaction
from crm_bridge.schemas import CustomerIn, CustomerPatch
from crm_bridge.store import CrmStore
from cti.store.db import Database
from tests.local_http import serving

NUMBER = "+8613800138000"
SLOW_NUMBER = "+14155550100"


class SlowCrm:
    """An external CRM that answers the first request after ``first_delay_s`` and then
    hangs (as a CRM under load does)."""

    def __init__(self) -> None:
        self.url = ""
        self.requests = 0
        self.first_delay_s = 0.3
        self.release = asyncio.Event()

    async def lookup(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests == 1:
            await asyncio.sleep(self.first_delay_s)
        else:
            await self.release.wait()
        return web.json_response({"id": "ext-1", "name": "Far Caller", "company": "Far Inc"})


@pytest.fixture
async def slow_crm() -> AsyncIterator[SlowCrm]:
    crm = SlowCrm()
    app = web.Application()
    app.router.add_get("/lookup", crm.lookup)
    async with serving(app) as base:
        crm.url = f"{base}/lookup"
        try:
            yield crm
        finally:
            crm.release.set()


async def test_a_crm_write_is_seen_by_the_next_lookup(db: Database) -> None:
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    assert await directory.lookup_number(NUMBER) is None  # not a customer: remembered
    created = await store.create_customer(
        CustomerIn.model_validate({"name": "王芳", "phones": [NUMBER]}), SYSTEM
    )
    card = await directory.lookup_number(NUMBER)
    assert card is not None and card.name == "王芳"
    assert await directory.lookup_number(NUMBER) is card  # from the cache now
    await store.update_customer(created["id"], CustomerPatch(tier="vip"), SYSTEM)
    card = await directory.lookup_number(NUMBER)
    assert card is not None and card.tier == "vip"

    # history: a new interaction of that customer shows on the next card, also when it
    # is written with a bulk statement (the interaction writer's upsert)
    assert await directory.recent_interactions(created["id"]) == []
    async with db.session() as s:
        s.add(Interaction(linkedid="c-1", customer_id=created["id"], agent="agent1"))
        await s.commit()
    assert [i["linkedid"] for i in await directory.recent_interactions(created["id"])] == ["c-1"]
    async with db.session() as s:
        await s.execute(
            insert(Interaction).values(
                linkedid="c-2", customer_id=created["id"], agent="agent1",
                started_at=datetime(2030, 1, 1, tzinfo=UTC),
            )
        )  # fmt: skip
        await s.commit()
    history = await directory.recent_interactions(created["id"])
    assert [i["linkedid"] for i in history] == ["c-2", "c-1"]


async def test_a_rolled_back_write_keeps_the_cache(db: Database) -> None:
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    await store.create_customer(
        CustomerIn.model_validate({"name": "Kept", "phones": [NUMBER]}), SYSTEM
    )
    card = await directory.lookup_number(NUMBER)
    async with db.session() as s:
        await s.execute(text("UPDATE crm_customers SET name = 'Not kept'"))
        await s.rollback()
    assert await directory.lookup_number(NUMBER) is card


async def test_lookups_are_served_from_the_cache_while_the_crm_is_slow(
    db: Database, slow_crm: SlowCrm
) -> None:
    external = ExternalCrmLookup(
        ExternalLookup.model_validate({"url": slow_crm.url, "timeout_s": 5, "cache_ttl_s": 0})
    )
    directory = StoreDirectory(CrmStore(db, "CN"), external)
    try:
        # the call's entry: many asking at once (desktop, IVR, ACD) make one request
        cards = await asyncio.wait_for(
            asyncio.gather(*(directory.lookup_number(SLOW_NUMBER) for _ in range(20))), 5
        )
        assert {c.name if c else None for c in cards} == {"Far Caller"}
        assert slow_crm.requests == 1
        # the CRM now hangs; the ring and the answer still get the card, at once
        again = await asyncio.wait_for(
            asyncio.gather(*(directory.lookup_number(SLOW_NUMBER) for _ in range(20))), 1
        )
        assert again == cards and slow_crm.requests == 1
    finally:
        await external.close()


async def test_a_lookup_that_gives_up_still_fills_the_cache(
    db: Database, slow_crm: SlowCrm
) -> None:
    external = ExternalCrmLookup(
        ExternalLookup.model_validate({"url": slow_crm.url, "timeout_s": 5, "cache_ttl_s": 0})
    )
    directory = StoreDirectory(CrmStore(db, "CN"), external)
    slow_crm.first_delay_s = 0.5
    try:
        with pytest.raises(TimeoutError):  # the asker's own bound (the desktop's)
            await asyncio.wait_for(directory.lookup_number(SLOW_NUMBER), 0.1)
        await asyncio.sleep(0.8)
        card = await asyncio.wait_for(directory.lookup_number(SLOW_NUMBER), 1)
        assert card is not None and card.name == "Far Caller" and slow_crm.requests == 1
    finally:
        await external.close()


async def test_lookups_do_not_wait_behind_a_writer(db: Database) -> None:
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    created = await store.create_customer(
        CustomerIn.model_validate({"name": "Reader", "phones": [NUMBER]}), SYSTEM
    )
    async with db.session() as writer:
        # a long write transaction holds the store (on SQLite: the one writer connection
        # and the database's write lock)
        await writer.execute(
            text("UPDATE crm_customers SET notes = 'busy' WHERE id = :id"), {"id": created["id"]}
        )
        card = await asyncio.wait_for(directory.lookup_number(NUMBER), 2)
        assert card is not None and card.name == "Reader"
        history = await asyncio.wait_for(directory.recent_interactions(created["id"]), 2)
        assert history == []
        await writer.commit()


OTHER_NUMBER = "+8613900139000"


async def test_the_entry_lookup_keeps_its_history_while_other_calls_write(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a burst another call's interaction commits while the entry's lookup reads (an
    interaction commits every few ms): the card and its history are still cached, so the
    ring reads nothing (before, any interaction commit threw away every history load in
    flight, and each pop read the history again within the desktop's 3 s bound)."""
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    mine = await store.create_customer(
        CustomerIn.model_validate({"name": "Caller", "phones": [NUMBER]}), SYSTEM
    )
    other = await store.create_customer(
        CustomerIn.model_validate({"name": "Other", "phones": [OTHER_NUMBER]}), SYSTEM
    )
    fetch = db.fetch
    ended = iter(range(100))

    async def read_while_calls_end(customer_id: int, make: Any) -> Any:
        found = await fetch(make)
        async with db.session() as s:  # a call of this customer ends meanwhile
            s.add(Interaction(linkedid=f"x-{next(ended)}", customer_id=customer_id, agent="a2"))
            await s.commit()
        return found

    monkeypatch.setattr(db, "fetch", functools.partial(read_while_calls_end, other["id"]))
    card = await directory.lookup_number(NUMBER)  # the call's entry (IVR, desktop)
    monkeypatch.setattr(db, "fetch", fetch)
    cache = directory.cache
    misses = (cache.cards.misses, cache.history.misses)
    # the ring: the pop's card and recent interactions come from memory
    assert card is not None and await directory.lookup_number(NUMBER) is card
    assert await directory.recent_interactions(mine["id"]) == []
    assert (cache.cards.misses, cache.history.misses) == misses

    # a write about the same customer while its history loads: that (older) history is
    # not cached, the next read sees the new interaction
    directory.cache.cards_changed()
    monkeypatch.setattr(db, "fetch", functools.partial(read_while_calls_end, mine["id"]))
    await directory.lookup_number(NUMBER)
    monkeypatch.setattr(db, "fetch", fetch)
    history = await directory.recent_interactions(mine["id"])
    assert [i["linkedid"] for i in history] == ["x-1"]


async def test_the_lookups_of_a_burst_open_no_database_connection(db: Database) -> None:
    """The cards of a burst are read on connections opened at start (Database.warm) and
    kept: on PostgreSQL opening one is a server process and several event-loop round
    trips, and a pool that opened overflow connections for a burst and closed them
    again made entry lookups late enough that pops rang before their card (0027)."""
    store = CrmStore(db, "CN")
    directory = StoreDirectory(store)
    numbers = [f"+86139{i:08d}" for i in range(30)]
    for i, number in enumerate(numbers):
        await store.create_customer(
            CustomerIn.model_validate({"name": f"客户{i}", "phones": [number]}), SYSTEM
        )
    await db.warm()
    opened: list[object] = []
    event.listen(db.read_engine, "connect", lambda *_: opened.append(1))
    for _ in range(2):  # two bursts: what the first used is kept for the second
        directory.cache.cards_changed()
        cards = await asyncio.gather(*(directory.lookup_number(n) for n in numbers))
        assert all(card is not None for card in cards)
    assert opened == []
