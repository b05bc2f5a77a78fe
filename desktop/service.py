"""Screen pops: follow a call from entry to hang-up, look the caller up early, pop the card
on the ringing agent's desktop and keep it current.

Timeline of one queue call:

- CallEntered / IvrCompleted / CallQueued: the facts are gathered (:mod:`desktop.pops`)
  and the customer lookup starts right away (bounded concurrency, bounded time), so the
  card is usually ready before any phone rings.
- CallOffered (AgentCalled): the pop goes to that agent only. If the lookup is still
  running, the pop waits for it at most ``lookup_wait_s`` and then goes without the card;
  a ``call.update`` carries the card when the lookup ends.
- CallAnswered, CallHeld/CallResumed, CallTransferred, CallDialEnded (an outbound call
  answered), CallCompleted: ``call.update`` of the same card. Agents whose phone rang but
  who did not answer get ``taken`` / ``missed`` (CallRingNoAnswer).
- CallerIdChanged: a caller ID that arrives after the call was first seen starts the
  lookup. Only the platform's call events are read, never AMI (decision 0013).

Bus handlers are synchronous and never await: what needs I/O runs in this service's own
tasks. Everything per call lives in bounded maps. Only :class:`~desktop.notifier.
DesktopNotifier` publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cti.bus import EventBus
from cti.events import (
    CallAbandoned,
    CallAnswered,
    CallbackOffered,
    CallCompleted,
    CallDialEnded,
    CallEntered,
    CallerIdChanged,
    CallHandedOver,
    CallHeld,
    CallOffered,
    CallQueued,
    CallResumed,
    CallRingNoAnswer,
    CallTimedOut,
    CallTransferred,
    CampaignLeadConnected,
    IvrCompleted,
    OutboundCallStarted,
)
from cti.phone import normalize
from cti.services import CustomerDirectory
from cti.store.tokens import Principal
from desktop.config import DesktopConfig
from desktop.leads import lead_card
from desktop.notifier import DesktopNotifier
from desktop.pops import (
    CallFacts,
    FactsTable,
    Pop,
    caller_region,
    card_dict,
    history_item,
    pop_message,
)

__all__ = ["PopService"]

log = logging.getLogger(__name__)

# states after which a pop is over (kept only for the reconnect snapshot)
_FINAL = frozenset({"ended", "taken", "missed", "replaced"})
_MAX_ID = 64
SEEN_PER_AGENT = 500
#: how long after ``lookup_timeout_s`` a lookup still waits for the card (the pops say
#: "looking up" meanwhile, then get the card or "no card")
LATE_LOOKUP_S = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class PopService:
    def __init__(
        self,
        config: DesktopConfig,
        notifier: DesktopNotifier,
        directory: Callable[[], CustomerDirectory | None],
        *,
        region: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.notifier = notifier
        self._directory = directory
        self.region = region
        self._clock = clock
        self.facts = FactsTable(config.max_calls)
        self._lookups: dict[str, asyncio.Task[None]] = {}
        self._waiters: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(config.lookup_concurrency)
        # agent -> linkedid -> Pop (newest last), bounded per agent
        self._pops: dict[str, OrderedDict[str, Pop]] = {}
        # linkedid -> agents holding a pop of it (also for calls whose facts were evicted)
        self._holders: dict[str, set[str]] = {}
        # agent -> Linkedids popped on their desktop lately (today's calls list)
        self._seen: dict[str, deque[str]] = {}
        # each lookup counted once, by its outcome: done (an answer, card or none, in time
        # or late), of which late (answered after lookup_timeout_s), or failed (an error,
        # or no answer after the late wait too)
        self.lookups_done = 0
        self.lookups_late = 0
        self.lookups_failed = 0
        # pops that went out before the card and got it (or its absence) in a call.update
        self.pops_completed_late = 0

    # --- wiring ---------------------------------------------------------------------------
    def attach(self, bus: EventBus) -> None:
        # every node's call events (remote=True): in a cluster the agent's desktop may be
        # connected to this node whichever node drives the server that took the call
        bus.subscribe(CallEntered, self.on_entered, remote=True)
        bus.subscribe(CallerIdChanged, self.on_caller_id, remote=True)
        bus.subscribe(CallRingNoAnswer, self.on_ring_no_answer, remote=True)
        bus.subscribe(CallDialEnded, self.on_dial_ended, remote=True)
        bus.subscribe(IvrCompleted, self.on_ivr, remote=True)
        bus.subscribe(CallQueued, self.on_queued, remote=True)
        bus.subscribe(CallOffered, self.on_offered, remote=True)
        bus.subscribe(CallAnswered, self.on_answered, remote=True)
        bus.subscribe(CallHeld, self.on_held, remote=True)
        bus.subscribe(CallResumed, self.on_resumed, remote=True)
        bus.subscribe(CallTransferred, self.on_transferred, remote=True)
        bus.subscribe(CallHandedOver, self.on_handed_over, remote=True)
        bus.subscribe(CallAbandoned, self.on_abandoned, remote=True)
        bus.subscribe(CallTimedOut, self.on_timed_out, remote=True)
        bus.subscribe(CallCompleted, self.on_completed, remote=True)
        bus.subscribe(CallbackOffered, self.on_callback_offered, remote=True)
        bus.subscribe(OutboundCallStarted, self.on_outbound, remote=True)
        bus.subscribe(CampaignLeadConnected, self.on_lead_connected, remote=True)

    async def stop(self) -> None:
        tasks = [*self._lookups.values(), *self._waiters]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lookups.clear()
        self._waiters.clear()

    # --- facts before the ring --------------------------------------------------------------
    def _caller(self, facts: CallFacts, raw: str, name: str = "") -> None:
        if raw and not facts.caller_raw:
            facts.caller_raw = raw[:64]
            facts.caller_e164 = normalize(raw, self.region)
            facts.caller_region = caller_region(facts.caller_e164)
        if name and not facts.caller_name:
            facts.caller_name = name[:128]

    def on_entered(self, event: CallEntered) -> None:
        facts = self.facts.ensure(event.linkedid)
        self._caller(facts, event.caller_num, event.caller_name)
        facts.dnis = event.dnis[:64]
        facts.entered_at = facts.entered_at or event.at
        self._start_lookup(facts)

    def on_caller_id(self, event: CallerIdChanged) -> None:
        """A caller ID known only after the call was first seen (Local or originated
        channels): the lookup can start before the queue rings."""
        facts = self.facts.get(event.linkedid)
        if facts is None:
            return
        self._caller(facts, event.caller_num, event.caller_name)
        self._start_lookup(facts)

    def on_ivr(self, event: IvrCompleted) -> None:
        facts = self.facts.ensure(event.linkedid)
        self._caller(facts, event.caller_num)
        facts.dnis = facts.dnis or event.dnis[:64]
        facts.ivr_path = tuple(str(p)[:64] for p in event.path[:32])
        facts.ivr_collected = {str(k)[:64]: str(v)[:64] for k, v in event.collected[:32]}
        facts.customer_id_hint = event.customer_id
        self._start_lookup(facts)

    def on_queued(self, event: CallQueued) -> None:
        facts = self.facts.ensure(event.linkedid)
        self._caller(facts, event.caller_num)
        facts.queue = event.queue[:64]
        facts.queued_at = event.at
        self._start_lookup(facts)

    # --- the lookup -------------------------------------------------------------------------
    def _start_lookup(self, facts: CallFacts) -> None:
        if facts.lookup_state != "none":
            return
        directory = self._directory()
        if directory is None or not facts.caller_e164:
            if facts.caller_raw or directory is None:
                facts.lookup_state = "done"  # nothing to look up (or nobody to ask)
            return
        facts.lookup_state = "pending"
        task = asyncio.get_running_loop().create_task(
            self._lookup(facts, directory), name=f"desktop-lookup-{facts.linkedid[:32]}"
        )
        self._lookups[facts.linkedid] = task
        task.add_done_callback(functools.partial(self._lookup_ended, facts.linkedid))

    def _lookup_ended(self, linkedid: str, task: asyncio.Task[None]) -> None:
        if self._lookups.get(linkedid) is task:
            del self._lookups[linkedid]

    async def _lookup(self, facts: CallFacts, directory: CustomerDirectory) -> None:
        """The caller's card, then every pop of the call still waiting for it gets it.
        A lookup slower than ``lookup_timeout_s`` frees its concurrency slot and goes on
        waiting for the directory (which goes on loading, decision 0027) up to
        LATE_LOOKUP_S more: meanwhile the pops say "looking up" (``customer_pending``),
        never "not a customer", so an agent is not offered to create a customer the
        directory is still reading (issue #19: under load a lookup took 3-10 s)."""
        customer: dict[str, Any] | None = None
        history: list[dict[str, Any]] = []
        late = False
        try:
            try:
                async with self._sem, asyncio.timeout(self.config.lookup_timeout_s):
                    customer, history = await self._card(facts, directory)
            except TimeoutError:
                late = True
                log.warning(
                    "customer lookup slower than %g s; the card follows when it comes",
                    self.config.lookup_timeout_s, extra={"linkedid": facts.linkedid},
                )  # fmt: skip
                async with asyncio.timeout(LATE_LOOKUP_S):
                    customer, history = await self._card(facts, directory)
        except TimeoutError:
            self.lookups_failed += 1
            log.warning("customer lookup given up", extra={"linkedid": facts.linkedid})
        except Exception:
            self.lookups_failed += 1
            log.exception("customer lookup failed", extra={"linkedid": facts.linkedid})
        else:
            self.lookups_done += 1
            self.lookups_late += late
        facts.customer, facts.history, facts.lookup_state = customer, history, "done"
        # pops that went out without the card get it now (or learn there is none)
        for agent in list(self._holders.get(facts.linkedid, ())):
            pop = self._pop_of(agent, facts.linkedid)
            if pop is not None and pop.message.get("customer_pending"):
                self.pops_completed_late += 1
                self._update(
                    pop, pop.message["state"],
                    customer=customer, history=history, customer_pending=False,
                )  # fmt: skip

    async def _card(
        self, facts: CallFacts, directory: CustomerDirectory
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        card = await directory.lookup_number(facts.caller_e164)
        if card is None:
            return None, []
        history: list[dict[str, Any]] = []
        if card.customer_id and self.config.history_limit:
            rows = await directory.recent_interactions(card.customer_id, self.config.history_limit)
            history = [history_item(r) for r in rows[: self.config.history_limit]]
        return card_dict(card), history

    # --- the ring ---------------------------------------------------------------------------
    def on_offered(self, event: CallOffered) -> None:
        facts = self.facts.ensure(event.linkedid)
        self._caller(facts, event.caller_num)
        facts.queue = facts.queue or event.queue[:64]
        agent = (event.member_name or event.interface)[:128]
        if not agent:
            return
        self._ring(facts, agent, "queue", event.at, event.queue)

    def on_callback_offered(self, event: CallbackOffered) -> None:
        # a request made over the API has no original call: the card is the request's
        facts = self.facts.ensure(event.linkedid or f"callback-{event.callback_id}")
        self._caller(facts, event.number)
        facts.queue = facts.queue or event.queue[:64]
        self._ring(
            facts, event.agent[:128], "callback", event.at, event.queue, event.callback_id,
            state="offered",
        )  # fmt: skip

    def on_outbound(self, event: OutboundCallStarted) -> None:
        facts = self.facts.ensure(event.linkedid)
        self._caller(facts, event.number)
        kind = event.kind if event.kind in ("click_to_call", "callback") else "click_to_call"
        agent = event.agent[:128]
        if event.callback_id is not None:
            for pop in list(self._pops.get(agent, OrderedDict()).values()):
                if (
                    pop.message.get("callback_id") == event.callback_id
                    and pop.linkedid != event.linkedid
                    and pop.ended_at is None
                ):
                    self._update(pop, "replaced", replaced_by=event.linkedid)
        self._ring(facts, agent, kind, event.at, "", event.callback_id, state="dialing")

    def on_lead_connected(self, event: CampaignLeadConnected) -> None:
        """A campaign call reached the agent: its card carries the lead (the outbound
        feature's event; the page posts the outcome to the outbound API)."""
        agent = event.agent[:128]
        lead = lead_card(event)
        pop = self._pop_of(agent, event.linkedid)
        if pop is not None:
            state = str(pop.message.get("state", "answered"))
            self._update(pop, state if state in _FINAL else "answered", lead=lead)
            return
        facts = self.facts.ensure(event.linkedid)
        self._caller(facts, event.number, event.name)
        self._start_lookup(facts)
        self._send_pop(facts, agent, "campaign", event.at, "", None, "answered", lead=lead)

    def _ring(
        self,
        facts: CallFacts,
        agent: str,
        kind: str,
        at: datetime,
        queue: str,
        callback_id: int | None = None,
        *,
        state: str = "ringing",
    ) -> None:
        self._start_lookup(facts)
        lookup = self._lookups.get(facts.linkedid)
        if lookup is None or facts.lookup_state != "pending" or self.config.lookup_wait_s <= 0:
            self._send_pop(facts, agent, kind, at, queue, callback_id, state)
            return
        waiter = asyncio.get_running_loop().create_task(
            self._pop_after(lookup, facts, agent, kind, at, queue, callback_id, state)
        )
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)

    async def _pop_after(
        self,
        lookup: asyncio.Task[None],
        facts: CallFacts,
        agent: str,
        kind: str,
        at: datetime,
        queue: str,
        callback_id: int | None,
        state: str,
    ) -> None:
        await asyncio.wait({lookup}, timeout=self.config.lookup_wait_s)
        self._send_pop(facts, agent, kind, at, queue, callback_id, state)

    def _send_pop(
        self,
        facts: CallFacts,
        agent: str,
        kind: str,
        at: datetime,
        queue: str,
        callback_id: int | None,
        state: str,
        **extra: Any,
    ) -> None:
        message = pop_message(
            facts, agent=agent, kind=kind, at=at, queue=queue, state=state,
            callback_id=callback_id,
        )  # fmt: skip
        message.update(extra)
        pops = self._pops.setdefault(agent, OrderedDict())
        pops.pop(facts.linkedid, None)
        pops[facts.linkedid] = Pop(agent, facts.linkedid, message)
        while len(pops) > self.config.pops_per_agent:
            _, old = pops.popitem(last=False)
            self._release(agent, old.linkedid)
        self._holders.setdefault(facts.linkedid, set()).add(agent)
        facts.agents.add(agent)
        seen = self._seen.setdefault(agent, deque(maxlen=SEEN_PER_AGENT))
        if facts.linkedid not in seen:
            seen.append(facts.linkedid)
        self.notifier.pop(agent, facts.linkedid, at, message)

    # --- updates of the card ----------------------------------------------------------------
    def _pop_of(self, agent: str, linkedid: str) -> Pop | None:
        pops = self._pops.get(agent)
        return pops.get(linkedid) if pops is not None else None

    def _holding(self, linkedid: str) -> list[Pop]:
        out = []
        for agent in self._holders.get(linkedid, ()):
            pop = self._pop_of(agent, linkedid)
            if pop is not None:
                out.append(pop)
        return out

    def _release(self, agent: str, linkedid: str) -> None:
        holders = self._holders.get(linkedid)
        if holders is not None:
            holders.discard(agent)
            if not holders:
                del self._holders[linkedid]

    def _update(self, pop: Pop, state: str, **extra: Any) -> None:
        now = self._clock()
        pop.message.update(extra)
        pop.message["state"] = state
        if state in _FINAL and pop.ended_at is None:
            pop.ended_at = now
        message = {
            "type": "call.update", "linkedid": pop.linkedid, "state": state,
            "at": now.isoformat(), **extra,
        }  # fmt: skip
        self.notifier.update(pop.agent, message)

    def on_answered(self, event: CallAnswered) -> None:
        winner = (event.member_name or event.interface)[:128]
        for pop in self._holding(event.linkedid):
            if pop.agent == winner:
                self._update(pop, "answered", answered_at=event.at.isoformat())
            elif pop.ended_at is None:
                self._update(pop, "taken", by=winner)

    def _live_update(self, linkedid: str, state: str, **extra: Any) -> None:
        for pop in self._holding(linkedid):
            if pop.ended_at is None and pop.message.get("state") not in ("ringing", "offered"):
                self._update(pop, state, **extra)

    def on_held(self, event: CallHeld) -> None:
        self._live_update(event.linkedid, "held")

    def on_resumed(self, event: CallResumed) -> None:
        self._live_update(event.linkedid, "resumed")

    def on_transferred(self, event: CallTransferred) -> None:
        facts = self.facts.get(event.linkedid)
        keep = facts.handed_to if facts is not None else ""
        for pop in self._holding(event.linkedid[:_MAX_ID]):
            if (
                pop.agent != keep
                and pop.ended_at is None
                and pop.message.get("state") not in ("ringing", "offered")
            ):
                self._update(
                    pop, "transferred", transfer={"kind": event.kind, "target": event.target[:64]}
                )

    def on_handed_over(self, event: CallHandedOver) -> None:
        """Call control moved the call: the target agent's card (with the customer and
        the notes written so far) rings, then talks; a failed transfer ends it."""
        facts = self.facts.ensure(event.linkedid)
        notes = event.notes.strip()[:4000]
        entry = {"agent": event.from_agent[:128], "notes": notes}
        if notes and entry not in facts.notes_from:
            facts.notes_from = [*facts.notes_from, entry][-8:]
        agent = event.to_agent[:128]
        if not agent:
            return
        pop = self._pop_of(agent, event.linkedid)
        live = pop is not None and pop.ended_at is None
        kind = "take_over" if event.kind == "take_over" else "transfer"
        if event.state == "ringing":
            if not live:
                self._send_pop(facts, agent, kind, event.at, facts.queue, None, "ringing")
        elif event.state == "answered":
            facts.handed_to = agent
            if pop is not None and live:
                self._update(pop, "answered", answered_at=event.at.isoformat(),
                             notes_from=facts.notes_from)  # fmt: skip
            else:
                self._send_pop(facts, agent, kind, event.at, facts.queue, None, "answered")
        elif event.state == "failed" and pop is not None and live:
            self._update(pop, "missed")

    def _stop_ringing(self, linkedid: str, reason: str) -> None:
        for pop in self._holding(linkedid):
            if pop.ended_at is None and pop.message.get("state") == "ringing":
                self._update(pop, "ended", reason=reason)

    def on_abandoned(self, event: CallAbandoned) -> None:
        self._stop_ringing(event.linkedid, "abandoned")

    def on_timed_out(self, event: CallTimedOut) -> None:
        """The caller left the queue unanswered (max wait, no agents, callback key)."""
        self._stop_ringing(event.linkedid, event.reason)

    def on_completed(self, event: CallCompleted) -> None:
        rec = event.record
        for pop in self._holding(rec.linkedid):
            if pop.ended_at is None:
                self._update(
                    pop, "ended", reason=rec.disposition, talk_s=rec.talk_s,
                    ended_at=rec.ended_at.isoformat(),
                )  # fmt: skip
        # a lookup still running is left to finish (bounded by lookup_timeout_s): its card
        # is still useful for the notes written after the call
        self.facts.pop(rec.linkedid)

    def on_ring_no_answer(self, event: CallRingNoAnswer) -> None:
        pop = self._pop_of((event.member_name or event.interface)[:128], event.linkedid)
        if pop is not None and pop.ended_at is None and pop.message["state"] == "ringing":
            self._update(pop, "missed")

    def on_dial_ended(self, event: CallDialEnded) -> None:
        """An outbound call (click-to-call, callback) was answered by the customer."""
        if event.status != "ANSWER" or event.linkedid not in self._holders:
            return
        for pop in self._holding(event.linkedid):
            if pop.ended_at is None and pop.message.get("state") == "dialing":
                self._update(pop, "answered", answered_at=event.at.isoformat())

    # --- what a (re)connecting desktop gets ---------------------------------------------------
    def current(self, agent: str) -> list[dict[str, Any]]:
        """The agent's cards: calls in progress and those ended less than keep_ended_s ago."""
        cutoff = self._clock() - timedelta(seconds=self.config.keep_ended_s)
        return [
            pop.message
            for pop in self._pops.get(agent, OrderedDict()).values()
            if pop.ended_at is None or pop.ended_at >= cutoff
        ]

    def popped(self, agent: str) -> list[str]:
        """Linkedids popped on ``agent``'s desktop lately (at most SEEN_PER_AGENT)."""
        return list(self._seen.get(agent, ()))

    async def snapshot(self, principal: Principal) -> list[dict[str, Any]]:
        return [{**m, "resync": True} for m in self.current(principal.name)]

    async def dismiss(self, principal: Principal, frame: dict[str, Any]) -> dict[str, Any]:
        """Websocket command ``{"type": "pop.dismiss", "linkedid": ...}``: the agent is
        done with a card (it leaves their snapshot)."""
        linkedid = frame.get("linkedid")
        if not isinstance(linkedid, str) or not 0 < len(linkedid) <= _MAX_ID:
            raise ValueError("linkedid must be a call id")
        pops = self._pops.get(principal.name)
        if pops is None or linkedid not in pops:
            raise ValueError("no such pop")
        del pops[linkedid]
        self._release(principal.name, linkedid)
        if not pops:
            del self._pops[principal.name]
        return {"type": "pop.dismissed", "linkedid": linkedid}
