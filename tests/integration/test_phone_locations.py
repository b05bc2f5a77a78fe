"""Where each phone is registered, kept in the store (issue #18), on SQLite and
PostgreSQL: what one node (a server's driver) writes, another node — started later, or
restarted, on a pool of its own — knows, and the ACD's "is this phone placed on my
server?" is answered from it.

- the last registration wins (a phone registered on b after a is on b; a registration
  on a older than b's changes nothing; a renewal on a does not move it back);
- a registration going away on a server the phone is not located on changes nothing; on
  its server it leaves the phone nowhere;
- a registration lapses at its expiry (its driver died and nobody saw it go), and then
  one elsewhere takes its place whatever their order;
- two nodes writing the same phone's registrations at once end with the later one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.ami.client import AmiClient
from cti.store.db import Database
from phones import store as phone_store
from phones.locations import LocationStore, PhoneLocations
from phones.provisioner import Provisioner
from phones.service import PhoneService
from phones.settings import PhonesSettings

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def service(db: Database, server: str, tmp_path: Path) -> PhoneService:
    """A node's phones service (its AMI link is never opened here)."""
    ami = AmiClient("127.0.0.1", 1, "u", "p")
    return PhoneService(db, ami, PhonesSettings(), b"k" * 32, Provisioner(ami),
                        PhoneLocations(server))  # fmt: skip


async def test_the_last_registration_wins_and_another_node_knows_it(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    a = LocationStore(db)  # server a's driver
    assert await a.registered("p1", "a", "sip:p1@10.0.0.1:5060", T0, T0 + timedelta(hours=1))
    db2 = Database.from_url(db_url)  # another node, started later (its own pool)
    try:
        b = LocationStore(db2)
        got = await b.where("p1", T0)
        assert got is not None and (got.server, got.contact) == ("a", "sip:p1@10.0.0.1:5060")

        later = T0 + timedelta(seconds=30)
        assert await b.registered("p1", "b", "sip:p1@10.0.0.2:5060", later)
        assert (await a.where("p1", later)).server == "b"  # type: ignore[union-attr]
        # a's registration older than b's, delivered late: b stays
        assert not await a.registered("p1", "a", "sip:p1@10.0.0.1:5060",
                                      T0 + timedelta(seconds=10))  # fmt: skip
        # a renewal of a's old contact does not move it back
        assert not await a.registered("p1", "a", "sip:p1@10.0.0.1:5060",
                                      T0 + timedelta(seconds=40), refresh=True)  # fmt: skip
        assert not await a.gone("p1", "a")  # gone where it is not: nothing
        assert (await b.where("p1", later)).server == "b"  # type: ignore[union-attr]

        # a node restarted on server b loads the map from the store
        fresh = PhoneLocations("b")
        fresh.load(await a.all(later))
        assert fresh.where("p1") == "b" and fresh.here("p1")

        assert await b.gone("p1", "b")
        assert await a.where("p1", later) is None
        assert await a.all(later) == []
    finally:
        await db2.dispose()


async def test_a_registration_lapses_at_its_expiry(db: Database) -> None:
    places = LocationStore(db)
    await places.registered("p2", "a", "sip:p2@x", T0, T0 + timedelta(seconds=60))
    assert (await places.where("p2", T0 + timedelta(seconds=59))) is not None
    # renewed: its expiry follows
    assert await places.registered("p2", "a", "sip:p2@x", T0 + timedelta(seconds=50),
                                   T0 + timedelta(seconds=110), refresh=True)  # fmt: skip
    assert (await places.where("p2", T0 + timedelta(seconds=100))) is not None
    gone_at = T0 + timedelta(seconds=111)
    assert await places.where("p2", gone_at) is None  # a's driver died: nobody saw it go
    assert await places.all(gone_at) == []
    # lapsed: a registration elsewhere takes its place, though stamped earlier
    assert await places.registered("p2", "b", "sip:p2@y", T0 + timedelta(seconds=5),
                                   T0 + timedelta(seconds=600))  # fmt: skip
    assert (await places.where("p2", gone_at)).server == "b"  # type: ignore[union-attr]


async def test_two_nodes_writing_at_once_end_with_the_later_registration(
    db: Database, db_url: str
) -> None:
    db2 = Database.from_url(db_url)
    try:
        nodes = (LocationStore(db), LocationStore(db2))
        for round_ in range(5):
            phone = f"p-race{round_}"
            t_a, t_b = T0 + timedelta(seconds=round_), T0 + timedelta(seconds=5 - round_)
            await asyncio.gather(
                nodes[round_ % 2].registered(phone, "a", "sip:a", t_a),
                nodes[(round_ + 1) % 2].registered(phone, "b", "sip:b", t_b),
            )
            got = await nodes[0].where(phone, T0)
            assert got is not None
            assert got.server == ("a" if t_a > t_b else "b"), (round_, got)
    finally:
        await db2.dispose()


async def test_the_acd_places_a_phone_from_the_store(db: Database, tmp_path: Path) -> None:
    await phone_store.create(db, "ag1", "sip", "desk", "cti", lambda name: "0" * 32, 5)
    (row,) = await phone_store.list_phones(db, "ag1")
    now = datetime.now(UTC)
    on_a, on_b = service(db, "a", tmp_path), service(db, "b", tmp_path)
    iface = f"PJSIP/{row.name}"
    # registered nowhere: placed on no server
    assert not await on_a.placed_here(iface) and not await on_b.placed_here(iface)
    await on_a.location_store.registered(row.name, "a", "sip:x", now)
    # b's node never received an event about it: it reads the store
    assert await on_a.placed_here(iface) and not await on_b.placed_here(iface)
    await on_b.location_store.registered(row.name, "b", "sip:y", now + timedelta(seconds=1))
    assert not await on_a.placed_here(iface) and await on_b.placed_here(iface)
    # what is no provisioned phone is placed everywhere, as before
    assert await on_a.placed_here("Local/3201@cti-sim-agents/n")
    assert await on_b.placed_here("PJSIP/not-a-phone")
