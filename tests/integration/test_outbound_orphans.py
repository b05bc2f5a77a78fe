"""Calls of a server no node drives any more are settled by another server's driver
(issue #18), on the real PostgreSQL with the real campaign locks (cti.cluster.locks):

- server a's pacer placed two calls and died (its lock free); b's dialer takes a's lock
  ``campaign:<id>:a``, adopts exactly those calls (never dialling on a), and while it
  settles them a's driver coming back cannot pace a;
- once the calls' rows exist (a's new driver recovered them from a's CDR) b's next tick
  finishes them by the retry rules and lets a's lock go: a's driver holds it at once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cti.ami.client import AmiClient
from cti.cluster.lease import libpq_dsn
from cti.cluster.locks import NamedLocks
from cti.services import Services
from cti.store.db import Database
from cti.store.migrate import upgrade
from outbound.dialer import CampaignDialer
from outbound.store import OutboundStore
from tests.acceptance.test_cluster import pg_url  # noqa: F401  (fixture)
from tests.integration.test_outbound_takeover import (
    T0,
    Clock,
    campaign_with_leads,
    record_call,
)

pytestmark = pytest.mark.postgres


async def test_another_driver_settles_the_calls_of_a_server_nobody_drives(
    pg_url: str,  # noqa: F811
) -> None:
    await asyncio.to_thread(upgrade, pg_url)
    db = Database.from_url(pg_url)
    dsn = libpq_dsn(pg_url)
    assert dsn is not None
    locks_b = NamedLocks(dsn, node="n2", timeout_s=2.0)
    locks_a = NamedLocks(dsn, node="n1", timeout_s=2.0)
    try:
        store = OutboundStore(db, "CN")
        cid = await campaign_with_leads(store, 4)
        placed = []  # what a's dead pacer did
        for lead in await store.claim_due(cid, T0, 2, server="a"):
            linkedid = f"cti-camp-a{lead['id']:015x}"
            await store.start_attempt(lead, linkedid, T0, server="a")
            placed.append(linkedid)
        assert await store.open_servers(cid) == {"a"}

        clock = Clock()
        clock.now = T0 + timedelta(seconds=1)
        b = CampaignDialer(store, AmiClient("127.0.0.1", 1, "u", "p"), Services(),
                           timezone="Asia/Shanghai", clock=clock, gate=locks_b,
                           server="b")  # fmt: skip
        run = b.load((await store.campaign(cid)) or {})
        await b._orphans(run)  # what b's _sync does every SYNC_S while it drives
        lock_a = b.lock_name(cid, "a")
        assert lock_a in locks_b.held and (cid, "a") in b.settling
        assert set(run.calls) == set(placed) and all(c.adopted for c in run.calls.values())
        assert not await locks_a.hold(lock_a)  # a's driver is back: not yet its turn

        clock.now = T0 + timedelta(seconds=3)
        await b.tick()  # no call rows yet: still b's to settle
        assert set(run.calls) == set(placed) and lock_a in locks_b.held

        # a's new driver recovered both calls from a's CDR: one no answer, one answered
        await record_call(db, placed[0], T0, T0 + timedelta(seconds=5))
        await record_call(db, placed[1], T0, T0 + timedelta(seconds=30), agent="a2001")
        clock.now = T0 + timedelta(seconds=40)
        await b.tick()
        assert run.calls == {} and b.settling == set() and lock_a not in locks_b.held
        assert await locks_a.hold(lock_a)  # a's driver paces a again
        outcomes = {a["linkedid"]: a["outcome"] for a in await store.attempts(cid)}
        assert outcomes == {placed[0]: "no_answer", placed[1]: "answered"}
        leads = {ld["status"] for ld in await store.leads(campaign_id=cid)}
        assert "dialing" not in leads
        assert len(await store.attempts(cid)) == 2  # b dialled nothing
    finally:
        await locks_a.close()
        await locks_b.close()
        await db.dispose()
