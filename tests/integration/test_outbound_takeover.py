"""A campaign taken over by a new pacer (the old one died mid-call) never rings a customer
twice for one attempt (SQLite and PostgreSQL, no Asterisk: nothing is dialled here).

The old pacer's work is left in the store as its dialer leaves it: leads claimed
(``dialing``, one more attempt) with an attempt placed (a Linkedid, no outcome). The new
pacer adopts those calls instead of making their leads due again:

- a call still ringing (no call row) stays the new pacer's, counted in flight while it
  can ring, and is finished by the call events the new driver reads (its dial leg's
  NOANSWER here);
- a call that ended (a call row: the driver of its server recorded or recovered it) is
  finished from that row: no agent and never answered → ``no_answer``, its retry rule
  applies (due again after the rule's delay, not before); taken by an agent →
  ``answered``, done;
- a call with no record and no event is given up ``LOST_AFTER_S`` after its ring time as
  ``failed`` (its own retry rule, its own delay);
- a lead claimed but never dialled (no attempt placed) is due again at once.

A single node restarting adopts its own calls placed before the restart the same way.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cti.ami.client import AmiClient
from cti.config import DialConfig
from cti.dialpolicy import StoreDialPolicy
from cti.events import CallDialEnded
from cti.services import Services
from cti.store.db import Database
from cti.store.models import Call
from outbound.cleaning import Candidate, Cleaned
from outbound.dialer import DIAL_CONTEXT, LOST_AFTER_S, CampaignDialer, DialError
from outbound.schemas import CampaignIn
from outbound.store import OutboundStore

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
ALWAYS = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
RING_S = 5


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def old_pacer_dials(store: OutboundStore, cid: int, n: int, at: datetime) -> list[Any]:
    """What the dead pacer did: claim ``n`` leads and place a call for each."""
    placed = []
    for lead in await store.claim_due(cid, at, n):
        linkedid = f"cti-camp-{lead['id']:016x}"
        attempt = await store.start_attempt(lead, linkedid, at)
        placed.append((lead, linkedid, attempt))
    return placed


async def record_call(db: Database, linkedid: str, start: datetime, end: datetime,
                      *, agent: str = "") -> None:  # fmt: skip
    """The call row the driver of the call's server writes (or recovers from the CDR)."""
    async with db.session() as s, s.begin():
        s.add(Call(linkedid=linkedid, started_at=start, ended_at=end, queue="camp",
                   agent=agent, answered_at=start + timedelta(seconds=2) if agent else None,
                   disposition="answered" if agent else "no_answer", source="ami"))  # fmt: skip


async def campaign_with_leads(store: OutboundStore, n: int) -> int:
    retry = {"no_answer": {"delay_min": 10, "max_attempts": 3},
             "failed": {"delay_min": 30, "max_attempts": 3}}  # fmt: skip
    campaign = await store.create_campaign(CampaignIn.model_validate({
        "name": "takeover", "queue": "camp", "mode": "progressive", "ring_s": RING_S,
        "window": {"days": ALWAYS}, "retry": retry,
    }))  # fmt: skip
    cid = int(campaign["id"])
    lst = await store.create_list(cid, "l", "test")
    numbers = [f"+8613800138{i:03d}" for i in range(n)]
    await store.import_leads(lst["id"], Cleaned(rows=n, candidates=[
        Candidate(i + 2, num, f"lead {i}", {}) for i, num in enumerate(numbers)]))  # fmt: skip
    assert await store.set_status(cid, "running", ["draft"])
    return cid


async def test_the_new_pacer_settles_the_old_pacers_calls_and_dials_none_again(
    db: Database,
) -> None:
    clock = Clock()
    store = OutboundStore(db, "CN")
    cid = await campaign_with_leads(store, 6)

    # the old pacer placed 4 calls, claimed a 5th and died before dialling it
    (ringing, ended, talked, lost) = await old_pacer_dials(store, cid, 4, T0)
    await store.update_attempt(talked[2], answered_at=T0 + timedelta(seconds=2),
                               connected_at=T0 + timedelta(seconds=3), agent="a2001")  # fmt: skip
    (never,) = await store.claim_due(cid, T0, 1)
    await record_call(db, ended[1], T0, T0 + timedelta(seconds=RING_S))
    await record_call(db, talked[1], T0, T0 + timedelta(seconds=40), agent="a2001")

    # the new pacer takes over 1 s later (no AMI link needed to settle: nothing is dialled)
    clock.now = T0 + timedelta(seconds=1)
    dialer = CampaignDialer(store, AmiClient("127.0.0.1", 1, "u", "p"), Services(),
                            timezone="Asia/Shanghai", clock=clock)  # fmt: skip
    run = dialer.load((await store.campaign(cid)) or {})
    assert await dialer.adopt(run, clock.now) == 4
    assert set(run.calls) == {ringing[1], ended[1], talked[1], lost[1]}
    assert all(c.adopted for c in run.calls.values())
    # the lead never dialled is due again now; the others are not
    due = await store.claim_due(cid, clock.now, 10)
    assert {d["number"] for d in due} >= {never["number"]}
    assert not {d["id"] for d in due} & {ringing[0]["id"], ended[0]["id"], talked[0]["id"],
                                         lost[0]["id"]}  # fmt: skip
    for d in due:  # put them back: this test is about the adopted calls
        await store.update_lead(d["id"], ["dialing"], status="new", attempts=d["attempts"] - 1)

    # the ended calls are settled from their call rows
    await dialer.settle_adopted(run, clock.now)
    assert set(run.calls) == {ringing[1], lost[1]}
    leads = {ld["id"]: ld for ld in await store.leads(campaign_id=cid)}
    attempts = {a["linkedid"]: a for a in await store.attempts(cid)}
    assert attempts[ended[1]]["outcome"] == "no_answer"
    assert leads[ended[0]["id"]]["status"] == "retry"
    assert attempts[talked[1]]["outcome"] == "answered"
    assert attempts[talked[1]]["talk_s"] == 37.0
    assert leads[talked[0]["id"]]["status"] == "done"

    # still ringing: in flight for the pacer; its dial leg's end (an event the new driver
    # reads) finishes it
    assert dialer._ringing(run.calls[ringing[1]], run, clock.now)
    clock.now = T0 + timedelta(seconds=RING_S)
    await dialer._handle(CallDialEnded(linkedid=ringing[1], at=clock.now,
                                       uniqueid=ringing[1] + "-2", channel="Local/x",
                                       context=DIAL_CONTEXT, status="NOANSWER"))  # fmt: skip
    assert ringing[1] not in run.calls
    # no record and no event: not in flight once it rang out, given up LOST_AFTER_S later
    clock.now = T0 + timedelta(seconds=RING_S + 4)
    assert not dialer._ringing(run.calls[lost[1]], run, clock.now)
    await dialer.settle_adopted(run, clock.now)
    assert lost[1] in run.calls
    clock.now = T0 + timedelta(seconds=RING_S + LOST_AFTER_S + 1)
    await dialer.settle_adopted(run, clock.now)
    assert not run.calls and not dialer.calls

    leads = {ld["id"]: ld for ld in await store.leads(campaign_id=cid)}
    attempts = {a["linkedid"]: a for a in await store.attempts(cid)}
    assert attempts[ringing[1]]["outcome"] == "no_answer"
    assert attempts[lost[1]]["outcome"] == "failed"
    # one attempt per lead: nothing was dialled again
    assert len(attempts) == 4
    # the retry rules still apply, each after its own delay
    assert not {d["id"] for d in await store.claim_due(cid, clock.now, 10)} & {
        ringing[0]["id"], ended[0]["id"], lost[0]["id"]}  # fmt: skip
    later = await store.claim_due(cid, T0 + timedelta(minutes=11), 10)
    assert {d["id"] for d in later} >= {ringing[0]["id"], ended[0]["id"]}
    assert lost[0]["id"] not in {d["id"] for d in later}
    final = await store.claim_due(cid, T0 + timedelta(minutes=31), 10)
    assert lost[0]["id"] in {d["id"] for d in final}
    assert leads[lost[0]["id"]]["attempts"] == 1


async def test_a_restarted_single_node_adopts_its_calls_placed_before(db: Database) -> None:
    clock = Clock()
    store = OutboundStore(db, "CN")
    cid = await campaign_with_leads(store, 3)
    ringing, ended = await old_pacer_dials(store, cid, 2, T0)
    await record_call(db, ended[1], T0, T0 + timedelta(seconds=RING_S))
    clock.now = T0 + timedelta(seconds=2)
    dialer = CampaignDialer(store, AmiClient("127.0.0.1", 1, "u", "p"), Services(),
                            timezone="Asia/Shanghai", clock=clock, tick_s=0.05)  # fmt: skip
    await dialer.start()
    try:
        assert set(dialer.calls) == {ringing[1], ended[1]}

        async def settled() -> bool:  # finished from its call row, by the pacing loop
            lead = await store.lead(ended[0]["id"])
            return lead is not None and lead["status"] == "retry"

        for _ in range(100):
            if await settled():
                break
            await asyncio.sleep(0.05)
        assert await settled()
        assert ended[1] not in dialer.calls and ringing[1] in dialer.calls
    finally:
        await dialer.stop()
    leads = {ld["id"]: ld for ld in await store.leads(campaign_id=cid)}
    assert leads[ringing[0]["id"]]["status"] == "dialing"  # still its call, not due again
    assert leads[ended[0]["id"]]["status"] == "retry"
    assert len(await store.attempts(cid)) == 2


async def test_a_lead_an_agent_is_dialling_is_not_released_by_the_pacers_first_adopt(
    db: Database,
) -> None:
    """An agent dials a preview card from the API while the pacer takes the campaign on
    (its first tick adopts): the lead, ``dialing`` for this node's own call that is not yet
    in the run, is neither released as a dead pacer's leftover nor adopted as its call.
    (Seen in a cluster test: the lead went back to ``retry`` and its call, ended while no
    node drove, was never settled.)"""
    clock = Clock()
    store = OutboundStore(db, "CN")
    cid = await campaign_with_leads(store, 1)
    seen: dict[str, Any] = {}

    class Agent101(CampaignDialer):
        def agent_member(self, agent: str) -> dict[str, Any] | None:
            return {"name": agent, "interface": "PJSIP/a101", "state": "idle", "paused": False}

    class PacerTicksMeanwhile(OutboundStore):
        async def start_attempt(self, lead: dict[str, Any], linkedid: str, at: datetime,
                                outcome: str = "", server: str = "",
                                agent: str = "") -> int:  # fmt: skip
            seen["adopted"] = await dialer.adopt(run, clock.now)
            seen["status"] = ((await store.lead(lead["id"])) or {}).get("status")
            return await super().start_attempt(lead, linkedid, at, outcome, server, agent)

    services = Services()
    services.dial_policy = StoreDialPolicy(DialConfig(), region="CN", timezone="Asia/Shanghai",
                                           db=db, services=services, clock=clock)  # fmt: skip
    dialer = Agent101(PacerTicksMeanwhile(db, "CN"), AmiClient("127.0.0.1", 1, "u", "p"),
                      services, timezone="Asia/Shanghai", clock=clock)  # fmt: skip
    run = dialer.load((await store.campaign(cid)) or {})
    card = await store.claim_preview(cid, "a101", clock.now)
    assert card is not None
    try:
        await dialer.dial_preview(cid, card, "a101")
    except DialError as exc:  # no Asterisk here: the Originate is refused
        assert exc.code == "unavailable" and "Asterisk refused" in str(exc)
    assert seen == {"adopted": 0, "status": "dialing"}
    assert not dialer.placing


async def test_a_preview_dial_whose_number_cannot_be_checked_gives_the_lead_back(
    db: Database,
) -> None:
    """An agent dials its preview card and the dial policy cannot check the number (none
    is configured; or it fails: a DNC list out of reach): nothing is dialled, the agent is
    told why, and the lead is the agent's preview card again with its attempts as they
    were, not left ``dialing`` with no call (only a pacer's takeover released those)."""
    clock = Clock()
    store = OutboundStore(db, "CN")
    cid = await campaign_with_leads(store, 1)

    class Agent101(CampaignDialer):
        def agent_member(self, agent: str) -> dict[str, Any] | None:
            return {"name": agent, "interface": "PJSIP/a101", "state": "idle", "paused": False}

    class Unreachable:
        async def check(self, number: str, **context: Any) -> Any:
            raise OSError("the DNC list is out of reach")

    services = Services()
    dialer = Agent101(store, AmiClient("127.0.0.1", 1, "u", "p"), services,
                      timezone="Asia/Shanghai", clock=clock)  # fmt: skip
    dialer.load((await store.campaign(cid)) or {})
    for policy, message in ((None, "no dial policy"), (Unreachable(), "could not check")):
        services.dial_policy = policy
        card = await store.claim_preview(cid, "a101", clock.now)
        assert card is not None and card["status"] == "preview"
        with pytest.raises(DialError) as refused:
            await dialer.dial_preview(cid, card, "a101")
        assert refused.value.code == "unavailable" and message in str(refused.value)
        lead = (await store.lead(card["id"])) or {}
        assert (lead["status"], lead["agent"], lead["attempts"]) == (
            "preview", "a101", card["attempts"],
        )  # fmt: skip
        assert await store.attempts(cid) == [] and not dialer.placing
