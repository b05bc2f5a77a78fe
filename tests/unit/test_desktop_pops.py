"""Pop assembly without sockets: facts gathered early, the card on the pop, slow lookups
bounded, updates of the same card, callbacks and outbound calls, bounded caches."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import desktop.service
from cti.bus import EventBus
from cti.events import (
    CallAnswered,
    CallbackOffered,
    CallCompleted,
    CallDialEnded,
    CallEntered,
    CallerIdChanged,
    CallHeld,
    CallOffered,
    CallQueued,
    CallRecord,
    CallResumed,
    CallRingNoAnswer,
    CallTimedOut,
    CallTransferred,
    CampaignLeadConnected,
    IvrCompleted,
    OutboundCallStarted,
    ScreenPop,
)
from cti.services import CustomerCard, CustomerDirectory
from cti.store.tokens import Principal
from desktop.config import DesktopConfig
from desktop.notifier import DesktopNotifier
from desktop.pops import FactsTable
from desktop.service import PopService

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Sent(DesktopNotifier):
    """The notifier, recording what it would deliver (and publishing on a real bus)."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.pops_sent = self.updates_sent = 0
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def pop(self, agent: str, linkedid: str, at: datetime, message: dict[str, Any]) -> None:
        self.messages.append((agent, dict(message)))
        self._bus.publish(ScreenPop(agent=agent, linkedid=linkedid, at=at, payload=message))

    def update(self, agent: str, message: dict[str, Any]) -> None:
        self.messages.append((agent, dict(message)))

    def to(self, agent: str) -> list[dict[str, Any]]:
        return [m for a, m in self.messages if a == agent]


class Directory:
    """A customer directory with one known number; ``gate`` holds lookups back."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.asked: list[str] = []

    async def lookup_number(self, e164: str) -> CustomerCard | None:
        self.asked.append(e164)
        await self.gate.wait()
        if e164 != "+8613800138000":
            return None
        return CustomerCard(
            customer_id=7, name="张伟", company="ACME", tier="vip", owner_agent="a1",
            tags=("key",), notes="prefers mornings", birthday=date(1980, 5, 1),
        )  # fmt: skip

    async def recent_interactions(
        self, customer_id: int, limit: int = 5
    ) -> list[dict[str, object]]:
        row: dict[str, object] = {
            "id": 1, "linkedid": "old", "disposition": "resolved", "notes": "x" * 1000,
            "agent": "a2", "started_at": "2026-11-01T10:00:00+00:00", "extra": "hidden",
        }  # fmt: skip
        return [row]


def make(
    directory: CustomerDirectory | None, **cfg: Any
) -> tuple[PopService, Sent, list[ScreenPop]]:
    bus = EventBus()
    sent = Sent(bus)
    published: list[ScreenPop] = []
    bus.subscribe(ScreenPop, published.append)
    svc = PopService(DesktopConfig(**cfg), sent, lambda: directory, region="CN")
    svc.attach(bus)
    return svc, sent, published


def bus_of(svc: PopService) -> EventBus:
    notifier = svc.notifier
    assert isinstance(notifier, Sent)
    return notifier._bus


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_card_looked_up_early_is_on_the_pop() -> None:
    directory = Directory()
    svc, sent, published = make(directory)
    bus = bus_of(svc)
    bus.publish(CallEntered("L1", T0, "13800138000", "Zhang", "4008001234"))
    facts = svc.facts.get("L1")
    assert facts is not None and facts.lookup_state == "pending"  # started at entry
    await settle()
    assert directory.asked == ["+8613800138000"]
    bus.publish(
        IvrCompleted(
            "L1", T0 + timedelta(seconds=5), "4008001234", "+8613800138000", "Local/x",
            ("main", "billing"), "queue", "support", "choice", (("account", "12345"),),
        )
    )  # fmt: skip
    bus.publish(CallQueued("L1", T0 + timedelta(seconds=6), "support", 1))
    await settle()
    bus.publish(
        CallOffered("L1", T0 + timedelta(seconds=9), "support", "Local/1@x", "a1", "13800138000")
    )
    pops = sent.to("a1")
    assert len(pops) == 1, "the pop goes out synchronously when the card is ready"
    pop = pops[0]
    assert pop["type"] == "pop" and pop["kind"] == "queue" and pop["state"] == "ringing"
    assert pop["caller"] == {
        "raw": "13800138000", "e164": "+8613800138000", "name": "Zhang",
        "region": {"zh": "北京市", "en": "Beijing"},  # 号码归属地 (cti.phone.region)
    }  # fmt: skip
    assert pop["customer"]["name"] == "张伟" and pop["customer"]["tier"] == "vip"
    assert pop["customer"]["birthday"] == "1980-05-01" and pop["customer"]["tags"] == ["key"]
    assert pop["customer"]["owner"] == "a1" and pop["customer_pending"] is False
    assert pop["history"][0]["disposition"] == "resolved"
    assert len(pop["history"][0]["notes"]) == 280 and "extra" not in pop["history"][0]
    assert pop["ivr"] == {"path": ["main", "billing"], "collected": {"account": "12345"}}
    assert pop["queue"] == "support" and pop["wait_s"] == 3.0
    assert [p.agent for p in published] == ["a1"] and published[0].payload == pop
    assert directory.asked == ["+8613800138000"]  # once per call


async def test_unknown_caller_pops_without_card() -> None:
    svc, sent, _ = make(Directory())
    bus = bus_of(svc)
    bus.publish(CallEntered("L2", T0, "010 6552 9988", "", "4008001234"))
    await settle()
    bus.publish(CallOffered("L2", T0, "support", "Local/1@x", "a1", "01065529988"))
    pop = sent.to("a1")[0]
    assert pop["customer"] is None and pop["history"] == []
    assert pop["caller"]["e164"] == "+861065529988"


async def test_a_caller_id_known_late_starts_the_lookup_before_the_ring() -> None:
    directory = Directory()
    svc, sent, _ = make(directory)
    bus = bus_of(svc)
    bus.publish(CallEntered("L4", T0, "", "", "4008001234"))  # originated: no caller ID yet
    await settle()
    assert directory.asked == []
    bus.publish(CallerIdChanged("L4", T0 + timedelta(seconds=1), "13800138000", "Zhang"))
    await settle()
    assert directory.asked == ["+8613800138000"]
    bus.publish(CallOffered("L4", T0 + timedelta(seconds=4), "support", "Local/1@x", "a1", ""))
    pop = sent.to("a1")[0]
    assert pop["customer"]["name"] == "张伟" and pop["caller"]["name"] == "Zhang"


async def test_a_queue_timeout_ends_the_ringing_card() -> None:
    svc, sent, _ = make(None)
    bus = bus_of(svc)
    bus.publish(CallOffered("L5", T0, "support", "Local/1@x", "a1", "13800138000"))
    bus.publish(CallTimedOut("L5", T0 + timedelta(seconds=30), "support", 30.0, "timeout"))
    assert [(m["state"], m.get("reason")) for m in sent.to("a1")] == [
        ("ringing", None), ("ended", "timeout"),
    ]  # fmt: skip


async def test_no_directory_still_pops() -> None:
    svc, sent, _ = make(None)
    bus_of(svc).publish(CallOffered("L3", T0, "support", "Local/1@x", "a1", "13800138000"))
    assert sent.to("a1")[0]["customer"] is None


async def test_slow_lookup_does_not_hold_the_pop_then_updates_it() -> None:
    directory = Directory()
    directory.gate.clear()  # the CRM hangs
    svc, sent, _ = make(directory, lookup_wait_s=0.05)
    bus = bus_of(svc)
    bus.publish(CallEntered("L4", T0, "13800138000", "", "4008001234"))
    bus.publish(CallOffered("L4", T0, "support", "Local/1@x", "a1", "13800138000"))
    await asyncio.sleep(0.3)
    pops = sent.to("a1")
    assert len(pops) == 1 and pops[0]["customer"] is None and pops[0]["customer_pending"]
    directory.gate.set()
    await settle()
    update = sent.to("a1")[1]
    assert update["type"] == "call.update" and update["linkedid"] == "L4"
    assert update["customer"]["name"] == "张伟" and update["customer_pending"] is False
    assert update["state"] == "ringing"
    # the snapshot carries the card too
    snap = await svc.snapshot(Principal(1, "a1", "agent"))
    assert snap[0]["customer"]["name"] == "张伟"


async def test_a_lookup_slower_than_its_timeout_keeps_looking_up_then_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #19: past lookup_timeout_s the pop still says "looking up" (never "not a
    customer" while the directory is still reading); after LATE_LOOKUP_S more it says
    there is no card."""
    monkeypatch.setattr(desktop.service, "LATE_LOOKUP_S", 0.3)
    directory = Directory()
    directory.gate.clear()
    svc, sent, _ = make(directory, lookup_wait_s=0, lookup_timeout_s=0.1)
    bus = bus_of(svc)
    bus.publish(CallOffered("L5", T0, "support", "Local/1@x", "a1", "13800138000"))
    await asyncio.sleep(0.2)
    assert (svc.lookups_done, svc.lookups_failed) == (0, 0), "still looking up"
    assert [(m["type"], m["customer_pending"]) for m in sent.to("a1")] == [("pop", True)]
    await asyncio.sleep(0.4)
    assert (svc.lookups_done, svc.lookups_late, svc.lookups_failed) == (0, 0, 1)
    assert sent.to("a1")[-1] == {
        "type": "call.update", "linkedid": "L5", "state": "ringing",
        "at": sent.to("a1")[-1]["at"], "customer": None, "history": [],
        "customer_pending": False,
    }  # fmt: skip
    await svc.stop()


async def test_a_card_found_after_the_timeout_still_follows() -> None:
    """Issue #19: a directory slower than lookup_timeout_s goes on loading; pops made
    meanwhile say "looking up", and when the card comes every pop gets it in a
    call.update (no pop stays without its card)."""
    directory = Directory()
    directory.gate.clear()
    svc, sent, _ = make(directory, lookup_wait_s=0, lookup_timeout_s=0.1)
    bus = bus_of(svc)
    bus.publish(CallOffered("L5b", T0, "support", "Local/1@x", "a1", "13800138000"))
    await asyncio.sleep(0.3)
    assert (svc.lookups_done, svc.lookups_failed) == (0, 0), "still looking up"
    bus.publish(CallRingNoAnswer("L5b", T0, "support", "Local/1@x", "a1"))
    bus.publish(CallOffered("L5b", T0, "support", "Local/2@x", "a2", "13800138000"))
    assert [m["customer_pending"] for m in sent.to("a1") + sent.to("a2") if "customer" in m] == [
        True, True,
    ]  # fmt: skip
    directory.gate.set()
    for _ in range(20):
        await settle()
    late = sent.to("a2")[-1]
    assert late["type"] == "call.update" and late["customer"]["name"] == "张伟"
    assert late["customer_pending"] is False and late["state"] == "ringing"
    assert sent.to("a1")[-1]["customer"]["name"] == "张伟"
    # one lookup, counted once: a late success is a success
    assert (svc.lookups_done, svc.lookups_late, svc.lookups_failed) == (1, 1, 0)
    assert svc.pops_completed_late == 2
    await svc.stop()


class Failing(Directory):
    """A directory whose lookups raise once the gate opens."""

    async def lookup_number(self, e164: str) -> CustomerCard | None:
        await self.gate.wait()
        raise ConnectionError("the CRM is down")


async def test_each_lookup_is_counted_once_by_its_outcome() -> None:
    """In time, late (after lookup_timeout_s, within the late wait) or failed (an error,
    before or after the timeout): one count per lookup, in exactly one of done and
    failed; late ones are also counted as late."""
    fast = Directory()
    svc, _, _ = make(fast, lookup_wait_s=0, lookup_timeout_s=5)
    bus_of(svc).publish(CallEntered("F1", T0, "13800138000", "", "4008001234"))
    bus_of(svc).publish(CallEntered("F2", T0, "13900139000", "", "4008001234"))  # no card
    for _ in range(20):
        await settle()
    assert (svc.lookups_done, svc.lookups_late, svc.lookups_failed) == (2, 0, 0)
    await svc.stop()

    failing = Failing()
    svc, _, _ = make(failing, lookup_wait_s=0, lookup_timeout_s=5)
    bus_of(svc).publish(CallEntered("E1", T0, "13800138000", "", "4008001234"))
    for _ in range(20):
        await settle()
    assert (svc.lookups_done, svc.lookups_late, svc.lookups_failed) == (0, 0, 1)
    await svc.stop()

    failing_late = Failing()
    failing_late.gate.clear()
    svc, _, _ = make(failing_late, lookup_wait_s=0, lookup_timeout_s=0.05)
    bus_of(svc).publish(CallEntered("E2", T0, "13800138000", "", "4008001234"))
    await asyncio.sleep(0.2)
    assert (svc.lookups_done, svc.lookups_failed) == (0, 0)
    failing_late.gate.set()
    for _ in range(20):
        await settle()
    assert (svc.lookups_done, svc.lookups_late, svc.lookups_failed) == (0, 0, 1)
    await svc.stop()


async def test_updates_of_the_same_card_and_other_agents() -> None:
    svc, sent, _ = make(None)
    bus = bus_of(svc)
    bus.publish(CallOffered("L6", T0, "support", "Local/1@x", "a1", "1"))
    bus.publish(CallOffered("L6", T0, "support", "Local/2@x", "a2", "1"))
    bus.publish(CallAnswered("L6", T0, "support", "Local/2@x", "a2", 4.0))
    bus.publish(CallHeld("L6", T0, "u"))
    bus.publish(CallResumed("L6", T0, "u"))
    record = CallRecord("L6", T0, T0 + timedelta(minutes=1), talk_s=50.0, disposition="answered")
    bus.publish(CallCompleted(record))
    a1 = [m.get("state") for m in sent.to("a1")]
    a2 = [m.get("state") for m in sent.to("a2")]
    assert a1 == ["ringing", "taken"], "a1 only learns it was taken, nothing after"
    assert a2 == ["ringing", "answered", "held", "resumed", "ended"]
    assert sent.to("a2")[-1]["talk_s"] == 50.0
    # the ended card stays in a2's snapshot (notes after the call), not in a3's
    snap = await svc.snapshot(Principal(1, "a2", "agent"))
    assert [(m["linkedid"], m["state"], m["resync"]) for m in snap] == [("L6", "ended", True)]
    assert await svc.snapshot(Principal(1, "a3", "agent")) == []


async def test_ring_no_answer_and_transfer() -> None:
    svc, sent, _ = make(None)
    bus = bus_of(svc)
    bus.publish(CallOffered("L7", T0, "support", "Local/1@x", "a1", "1"))
    bus.publish(CallRingNoAnswer("L7", T0, "support", "Local/1@x", "a1"))
    bus.publish(CallOffered("L7", T0, "support", "Local/2@x", "a2", "1"))
    bus.publish(CallAnswered("L7", T0, "support", "Local/2@x", "a2", 4.0))
    bus.publish(CallTransferred("L7", T0, "blind", "8001", "cti-sim-agents"))
    assert [m["state"] for m in sent.to("a1")] == ["ringing", "missed"]
    assert sent.to("a2")[-1]["state"] == "transferred"
    assert sent.to("a2")[-1]["transfer"] == {"kind": "blind", "target": "8001"}


async def test_callback_and_outbound_pops() -> None:
    svc, sent, _ = make(Directory())
    bus = bus_of(svc)
    bus.publish(CallbackOffered("a1", T0, 42, "L8", "+8613800138000", "support"))
    offer = sent.to("a1")[-1]  # at once, without waiting for the lookup (the default)
    assert offer["kind"] == "callback" and offer["callback_id"] == 42
    assert offer["state"] == "offered" and offer["linkedid"] == "L8"
    assert offer["customer"] is None and offer["customer_pending"] is True
    await settle()
    card = sent.to("a1")[-1]
    assert card["type"] == "call.update" and card["customer"]["name"] == "张伟"
    assert card["state"] == "offered"
    bus.publish(OutboundCallStarted("a1", T0, "O9", "+8613800138000", "callback", 42))
    await settle()
    msgs = sent.to("a1")
    replaced = [m for m in msgs if m.get("state") == "replaced"]
    assert replaced and replaced[0]["linkedid"] == "L8" and replaced[0]["replaced_by"] == "O9"
    out = next(m for m in msgs if m["type"] == "pop" and m["linkedid"] == "O9")
    assert out["kind"] == "callback" and out["state"] == "dialing"
    assert out["caller"]["e164"] == "+8613800138000"
    bus.publish(CallDialEnded("O9", T0, "O9", "Local/x;1", "cti-outbound", "ANSWER"))
    assert sent.to("a1")[-1]["state"] == "answered"
    bus.publish(CallbackOffered("a1", T0, 43, "", "+8613800138000", "support"))
    assert sent.to("a1")[-1]["linkedid"] == "callback-43"
    bus.publish(OutboundCallStarted("a1", T0, "O10", "01065529988", "click_to_call"))
    c2c = sent.to("a1")[-1]
    assert c2c["kind"] == "click_to_call" and c2c["caller"]["e164"] == "+861065529988"


async def test_dismiss_and_bounds() -> None:
    svc, _sent, _ = make(None, pops_per_agent=2, max_calls=100)
    bus = bus_of(svc)
    for i in range(3):
        bus.publish(CallOffered(f"L{i}", T0, "support", "Local/1@x", "a1", "1"))
    snap = await svc.snapshot(Principal(1, "a1", "agent"))
    assert [m["linkedid"] for m in snap] == ["L1", "L2"]  # the oldest card fell out
    reply = await svc.dismiss(
        Principal(1, "a1", "agent"), {"type": "pop.dismiss", "linkedid": "L1"}
    )
    assert reply == {"type": "pop.dismissed", "linkedid": "L1"}
    assert [m["linkedid"] for m in await svc.snapshot(Principal(1, "a1", "agent"))] == ["L2"]
    try:
        await svc.dismiss(Principal(1, "a2", "agent"), {"linkedid": "L2"})
    except ValueError:
        pass
    else:
        raise AssertionError("another agent dismissed a1's card")
    for i in range(150):
        bus.publish(CallEntered(f"M{i}", T0, "1", "", "1"))
    assert len(svc.facts) == 100 and svc.facts.evicted >= 50


def test_facts_table_evicts_oldest() -> None:
    table = FactsTable(2)
    table.ensure("a")
    table.ensure("b")
    table.ensure("c")
    assert table.get("a") is None and table.get("c") is not None and table.evicted == 1


async def test_hostile_caller_name_is_clipped_data() -> None:
    svc, sent, _ = make(None)
    bus = bus_of(svc)
    name = "<img src=x onerror=alert(1)>" * 10
    bus.publish(CallEntered("LX", T0, "13800138000", name, "1"))
    bus.publish(CallOffered("LX", T0, "support", "Local/1@x", "a1", "13800138000"))
    assert sent.to("a1")[0]["caller"]["name"] == name[:128]


async def test_campaign_lead_pops_or_joins_the_card() -> None:
    svc, sent, _ = make(Directory())
    bus = bus_of(svc)
    many = tuple((f"col{i:02d}", "v" * 300) for i in range(60))
    bus.publish(CampaignLeadConnected(
        agent="a1", at=T0, linkedid="C1", campaign="renewals", lead_id=5,
        number="+8613800138000", name="<b>Li</b>", region="北京市", fields=many,
    ))  # fmt: skip
    pop = sent.to("a1")[-1]
    assert pop["type"] == "pop" and pop["kind"] == "campaign" and pop["state"] == "answered"
    lead = pop["lead"]
    assert lead["lead_id"] == 5 and lead["campaign"] == "renewals"
    assert lead["name"] == "<b>Li</b>" and lead["region"] == "北京市"  # data, the page inerts it
    assert len(lead["fields"]) == 50 and len(lead["fields"][0][1]) == 256
    await settle()
    assert sent.to("a1")[-1]["customer"]["name"] == "张伟"  # the CRM card follows
    # a call the agent already has a card of: the lead joins it (call.update)
    bus.publish(OutboundCallStarted("a2", T0, "C2", "01065529988", "click_to_call"))
    bus.publish(CampaignLeadConnected(
        agent="a2", at=T0, linkedid="C2", campaign="renewals", lead_id=6, number="+861065529988",
    ))  # fmt: skip
    update = sent.to("a2")[-1]
    assert update["type"] == "call.update" and update["linkedid"] == "C2"
    assert update["lead"]["lead_id"] == 6 and update["state"] == "answered"
    assert [m["linkedid"] for m in sent.to("a2") if m["type"] == "pop"] == ["C2"]
