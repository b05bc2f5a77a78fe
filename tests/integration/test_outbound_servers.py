"""A campaign paced per Asterisk server (issue #18): the store's side, on SQLite and
PostgreSQL (no Asterisk: nothing is dialled here; tests/acceptance/test_cluster_outbound.py
dials on two real servers).

- two servers' pacers claiming at once (each on its own connection pool, as two nodes)
  never get the same lead, and every lead is claimed once;
- a server taken over adopts the calls placed on that server only: the other server's
  calls and the leads its pacer holds are left to it; what the dead pacer claimed and
  never dialled is due again;
- the servers with calls still open are known (the calls of a server no node drives are
  settled by another driver);
- the abandon cap is the campaign's: a pacer whose own window has room dials only
  progressively when the calls of every server fill the cap.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cti.ami.client import AmiClient
from cti.services import Services
from cti.store.db import Database
from outbound.dialer import CampaignDialer
from outbound.pacing import Pacer, PacingConfig
from outbound.store import OutboundStore
from tests.integration.test_outbound_takeover import Clock, campaign_with_leads

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


async def test_two_servers_claiming_at_once_never_share_a_lead(db: Database, db_url: str) -> None:
    store_a = OutboundStore(db, "CN")
    db_b = Database.from_url(db_url)  # the other node's pool
    try:
        store_b = OutboundStore(db_b, "CN")
        cid = await campaign_with_leads(store_a, 30)
        got: dict[str, list[int]] = {"a": [], "b": []}

        async def pacer(store: OutboundStore, server: str) -> None:
            while True:
                leads = await store.claim_due(cid, T0, 2, server=server)
                if not leads:
                    return
                got[server] += [ld["id"] for ld in leads]

        await asyncio.gather(pacer(store_a, "a"), pacer(store_b, "b"),
                             pacer(store_a, "a"), pacer(store_b, "b"))  # fmt: skip
        claimed = got["a"] + got["b"]
        assert len(claimed) == len(set(claimed)) == 30, got
        if db.dialect == "postgresql":  # (SQLite's one writer may serve one pacer first)
            assert got["a"] and got["b"], got  # both really claimed, at once
        leads = await store_a.leads(campaign_id=cid)
        assert all(ld["status"] == "dialing" and ld["attempts"] == 1 for ld in leads)
    finally:
        await db_b.dispose()


async def test_a_server_taken_over_adopts_its_own_calls_only(db: Database) -> None:
    clock = Clock()
    store = OutboundStore(db, "CN")
    cid = await campaign_with_leads(store, 6)
    placed: dict[str, list[str]] = {"a": [], "b": []}
    for server in ("a", "b"):
        for lead in await store.claim_due(cid, T0, 2, server=server):
            linkedid = f"cti-camp-{server}{lead['id']:015x}"
            await store.start_attempt(lead, linkedid, T0, server=server)
            placed[server].append(linkedid)
    (never_a,) = await store.claim_due(cid, T0, 1, server="a")  # a's pacer died here
    (held_b,) = await store.claim_due(cid, T0, 1, server="b")  # b's is dialling it now
    assert await store.open_servers(cid) == {"a", "b"}

    clock.now = T0 + timedelta(seconds=1)
    dialer = CampaignDialer(store, AmiClient("127.0.0.1", 1, "u", "p"), Services(),
                            timezone="Asia/Shanghai", clock=clock, server="a")  # fmt: skip
    run = dialer.load((await store.campaign(cid)) or {})
    assert await dialer.adopt(run, clock.now, server="a") == 2
    assert set(run.calls) == set(placed["a"])
    assert {c.server for c in run.calls.values()} == {"a"}
    by_id = {ld["id"]: ld for ld in await store.leads(campaign_id=cid)}
    assert by_id[never_a["id"]]["status"] == "retry"  # due again at once
    assert by_id[held_b["id"]]["status"] == "dialing"  # b's pacer still holds it
    attempts = await store.attempts(cid)
    assert {a["linkedid"]: a["server"] for a in attempts} == {
        **dict.fromkeys(placed["a"], "a"), **dict.fromkeys(placed["b"], "b"),
    }  # fmt: skip


async def test_the_abandon_cap_is_kept_on_every_servers_calls(db: Database) -> None:
    store = OutboundStore(db, "CN")
    cid = await campaign_with_leads(store, 40)
    # server b: 33 calls reached an agent, 1 was dropped (3 % of 34 is 1.02: no room left)
    for i, lead in enumerate(await store.claim_due(cid, T0, 34, server="b")):
        attempt = await store.start_attempt(lead, f"cti-camp-b{i:015x}", T0, server="b")
        if i == 0:
            await store.update_attempt(attempt, outcome="abandoned", ended_at=T0)
        else:
            await store.update_attempt(attempt, connected_at=T0, outcome="answered", ended_at=T0)
    connected, dropped = await store.answer_counts(cid, T0 - timedelta(hours=1))
    assert (connected, dropped) == (33, 1)

    # server a's pacer: 40 calls connected on its own (of 100 dialled), none dropped:
    # room for one
    pacer = Pacer(PacingConfig(mode="predictive", ring_s=20))
    for i in range(100):
        pacer.dial_ended(float(i) / 10, answered=i < 40)
        if i < 40:
            pacer.connected(float(i) / 10)
    now = 20.0
    assert pacer.room_for_abandon(now)
    ahead = pacer.to_dial(now, free=2, in_flight=0, busy_elapsed=[10.0] * 4)
    assert ahead > 2  # predictive: dials ahead of its 2 free agents
    pacer.share_window(connected + 40, dropped)  # the campaign: 73 connected, 1 dropped
    assert pacer.room_for_abandon(now)  # 2 <= 0.03 * 74
    pacer.share_window(connected, dropped + 1)  # 33 connected, 2 dropped on the campaign
    assert not pacer.room_for_abandon(now)
    assert pacer.to_dial(now, free=2, in_flight=0, busy_elapsed=[10.0] * 4) == 2  # progressive
