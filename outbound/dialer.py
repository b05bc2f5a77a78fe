"""The campaign dialer: running campaigns' calls through the real Asterisk.

Once a second, for every running campaign whose calling window is open, the pacer
(:mod:`outbound.pacing`) says how many calls to start from the campaign queue's live
state (``Services.queues``: idle unpaused members are the free agents; callers waiting
in the queue and calls ringing are in flight). Each call:

1. claims a due lead (new, or a retry whose time came), asks the dial policy
   (``purpose="campaign"``, the campaign's name: do-not-call lists included); a refusal
   is an attempt with outcome ``refused`` and the lead stops (``dnc``/``done``);
2. originates ``Local/<digits>@cti-campaign-dial/n`` (the customer through the
   ``carrier`` endpoint) with a Linkedid we choose (``cti-camp-<hex>``), continuing once
   answered in ``[cti-campaign]`` at the campaign's queue (optional AMD first): an agent
   free within the grace (2 s) takes it, else the customer hears the message and the call
   is dropped (abandoned).

Outcomes come from the platform's call events (never AMI): the dial leg's
``CallDialEnded`` (ANSWER, BUSY, NOANSWER, CONGESTION, CHANUNAVAIL...), ``CallAnswered``
(an agent took it), ``CallTimedOut`` (dropped), and the first channel's
``CallLegEnded`` (over). Every attempt is a row of ``outbound_attempts``; the lead's next
state follows the campaign's retry rules (:func:`outbound.rules.after_call`); the call
itself is recorded by the platform's call recorder like any other call.

In a cluster (a ``gate``: :class:`cti.cluster.locks.NamedLocks`, and this node's
``server``) each campaign is paced **per Asterisk server**: the driver of a server paces
the campaign (callbacks, recycling, new calls) on its own server's queue members (the
agents whose phones are located there) while its AMI link is up and it holds the lock
``campaign:<id>:<server>``, asked every tick. Every attempt records the server it was
placed on, every lead the server whose pacer moved it to ``dialing``; leads are claimed
in one statement (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so two servers' pacers never
claim one lead. An agent who is a queue member on several servers (a device that is no
provisioned phone) is counted free by the first of them by name only (the servers' live
states, ``ServerLiveState``), so the campaign's lines are not doubled. The abandon cap is
the campaign's: predictive pacers read the window of every server from the store.

When a server's driver dies (or is cut off, or its AMI link goes), the node that takes
the server over gets the lock at its next tick and adopts that server's calls (leads left
``dialing`` with an attempt placed there and no outcome): they count in flight while they
can ring, and are finished by their call events or, once their call row exists, from that
row, the retry rules applying as for any call: a customer is never rung twice for one
attempt. Leads that server claimed and never dialled are due again at once. When no node
drives the server any more, another driver takes the lock to settle its calls from the
store (never dialling on it) and lets it go once they are settled. A single node adopts
its own calls so at start (a restarted daemon: its Asterisk carried on with them).
An adopted call keeps what it is: an agent-first call (preview, personal callback: the
agent's phone rings, then the customer) is originated with ``CTI_CAMPAIGN_FIRST`` (the
lead's status before it) and ``CTI_CAMPAIGN_AGENT``, read back from its first channel
(``Getvar``) when it is adopted unconnected, so the customer's answer after the takeover
connects it to its agent (``answered``), and an agent who never answers puts the lead
back (``not_dialled``), instead of being taken for a queue call nobody took.
Campaigns started, paused or stopped through another node's API reach every node's dialer
from the store (read every ``SYNC_S``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.cluster.live import ServerBoard
from cti.events import (
    CallAnswered,
    CallDialEnded,
    CallLegEnded,
    CallQueued,
    CallTimedOut,
    CampaignLeadConnected,
    DomainEvent,
    ServerLiveState,
)
from cti.services import Services
from cti.tasks import BackgroundTasks
from outbound.pacing import Pacer, PacingConfig
from outbound.rules import CallingWindow, after_call
from outbound.schemas import CampaignIn
from outbound.store import OutboundStore

__all__ = [
    "CALL_EVENTS",
    "CAMPAIGN_PREFIX",
    "DIAL_CONTEXT",
    "CampaignDialer",
    "DialError",
    "lead_connected",
]

log = logging.getLogger(__name__)

CAMPAIGN_PREFIX = "cti-camp-"
DIAL_CONTEXT = "cti-campaign-dial"
CONNECT_CONTEXT = "cti-campaign"
CALL_EVENTS: tuple[type[DomainEvent], ...] = (
    CallDialEnded, CallAnswered, CallTimedOut, CallLegEnded, CallQueued,
)  # fmt: skip
GRACE_S = 2
#: in a cluster, the campaigns' states are read from the store this often
SYNC_S = 2.0
#: a call with no event this long after its ring time is given up (Originate failed)
LOST_AFTER_S = 30
#: a call taken over after it was answered, with no call row this long after it
#: started, is given up (its server is driven by no node)
ADOPTED_ANSWERED_GIVE_UP_S = 3600

#: channel variables an agent-first call (the agent's phone rings, then the customer) is
#: originated with, read back when another node takes the call over (:meth:`adopt`)
FIRST_VAR = "CTI_CAMPAIGN_FIRST"
AGENT_VAR = "CTI_CAMPAIGN_AGENT"
AGENT_FIRST_STATUSES = ("preview", "callback")
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

_BUSY = ("ringing", "on_call", "on_hold", "wrapup")
_DIAL_STATUS = {
    "BUSY": "busy", "NOANSWER": "no_answer", "CANCEL": "no_answer",
    "CONGESTION": "congestion", "CHANUNAVAIL": "failed",
}  # fmt: skip


class PacingGate(Protocol):
    """Work one node of a cluster holds at a time (cti.cluster.locks.NamedLocks)."""

    async def hold(self, name: str) -> bool: ...

    async def release(self, name: str) -> None: ...


class DialError(Exception):
    """A call could not be placed (message for the person who asked)."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class LiveCall:
    linkedid: str
    campaign_id: int
    lead: dict[str, Any]
    attempt_id: int
    started_at: datetime
    answered_at: datetime | None = None
    queued: bool = False
    connected_at: datetime | None = None
    agent: str = ""
    outcome: str = ""
    #: the agent's phone rings first, then the customer (preview, personal callbacks)
    agent_first: bool = False
    #: the lead's status before this call (an agent-first call the agent did not answer
    #: puts it back)
    previous_status: str = ""
    campaign: str = ""
    #: placed by another pacer, taken over by this node (after a takeover)
    adopted: bool = False
    #: the server it was placed on (a cluster)
    server: str = ""


@dataclass
class Run:
    """A running campaign as the dialer holds it."""

    campaign: dict[str, Any]
    settings: CampaignIn
    pacer: Pacer
    window: CallingWindow
    calls: dict[str, LiveCall] = field(default_factory=dict)
    paused: bool = False
    recycled_at: datetime | None = None

    @property
    def name(self) -> str:
        return str(self.campaign["name"])


def lead_connected(call: LiveCall) -> CampaignLeadConnected:
    """The lead card event for a call that reached its agent."""
    lead = call.lead
    return CampaignLeadConnected(
        agent=call.agent, at=call.connected_at or call.started_at, linkedid=call.linkedid,
        campaign=call.campaign, lead_id=lead["id"],
        number=lead["number"], name=lead["name"], region=lead["region"],
        customer_id=lead["customer_id"],
        fields=tuple((str(k), str(v)) for k, v in sorted(lead["data"].items())),
    )  # fmt: skip


def agent_first_marks(previous: str, agent: str) -> list[str]:
    """The Originate variables that mark an agent-first call (read back on takeover):
    the lead's status before it (``preview``/``callback``) and the agent, when the name
    is one a channel variable carries as is (agent names are; anything else is left out
    and the lead's agent is used)."""
    marks = [f"{FIRST_VAR}={previous}"] if previous in AGENT_FIRST_STATUSES else []
    if marks and _SAFE_VALUE.fullmatch(agent):
        marks.append(f"{AGENT_VAR}={agent}")
    return marks


def recorded_outcome(record: dict[str, Any], run: Run | None, agent_first: bool = False) -> str:
    """A campaign call's outcome from its call row (taken-over calls). An agent-first
    call's row has no queue agent: its first channel (the agent's, answered) dialled the
    customer, and the row is answered when the customer answered that dial (the CDR's
    answered Dial, recovered) — the agent and the customer talked."""
    answered = record["answered_at"] is not None or record["disposition"] == "answered"
    if record["agent"] or (agent_first and answered):
        return "answered"
    if agent_first:
        return "no_answer"
    if record["answered_at"] is not None or record["disposition"] in ("abandoned", "timeout"):
        # answered, no agent took it: hung up by AMD before the queue, else dropped
        if not record["queue"] and run is not None and run.settings.amd:
            return "machine"
        return "abandoned"
    return "no_answer"


def monotonic_s(at: datetime) -> float:
    return at.timestamp()


class CampaignDialer:
    def __init__(
        self, store: OutboundStore, ami: AmiClient, services: Services, *, timezone: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC), tick_s: float = 1.0,
        gate: PacingGate | None = None, server: str | None = None,
    ) -> None:  # fmt: skip
        """``gate``: in a cluster, the campaigns' locks (one pacer per campaign and
        server); ``server``: this node's server then."""
        self.store = store
        self.ami = ami
        self.services = services
        self.timezone = timezone
        self.clock = clock
        self.tick_s = tick_s
        self.runs: dict[int, Run] = {}
        self.calls: dict[str, LiveCall] = {}
        self.on_connected: list[Callable[[LiveCall], None]] = []
        self._events: asyncio.Queue[DomainEvent] = asyncio.Queue(maxsize=10000)
        self._tasks = BackgroundTasks("outbound-dialer")
        self.gate = gate
        self.server = server
        self.pacing: set[int] = set()  # with a gate: the campaigns this node paces
        #: with a gate: (campaign, server) whose calls this node settles for a server no
        #: node drives
        self.settling: set[tuple[int, str]] = set()
        #: leads an agent-first dial of this node is placing now (``dialing``, the call not
        #: yet in its run): not a previous pacer's, so :meth:`adopt` leaves them alone
        self.placing: set[int] = set()
        #: the other servers' live queues (a cluster: agents members on several servers)
        self.board = ServerBoard()
        self._synced_at: datetime | None = None

    # --- life ----------------------------------------------------------------------------
    async def start(self) -> None:
        for campaign in await self.store.campaigns():
            if campaign["status"] in ("running", "paused"):
                run = self.load(campaign)
                if self.gate is None:  # in a cluster: when this node gets the campaign
                    # the calls placed before a restart: Asterisk may still carry them
                    await self.adopt(run, self.clock())
        self._tasks.spawn(self._loop(), "pacing")
        self._tasks.spawn(self._consume(), "events")

    async def stop(self) -> None:
        await self._tasks.stop()

    def load(self, campaign: dict[str, Any]) -> Run:
        """(Re)load a campaign's settings; it dials while its status is running."""
        fields = set(CampaignIn.model_fields)
        settings = CampaignIn.model_validate({k: v for k, v in campaign.items() if k in fields})
        run = self.runs.get(campaign["id"])
        config = PacingConfig(
            mode=settings.mode, abandon_cap=settings.abandon_cap, max_ratio=settings.max_ratio,
            ring_s=float(settings.ring_s),
        )  # fmt: skip
        if run is None:
            run = Run(
                campaign, settings, Pacer(config), CallingWindow(settings.window, self.timezone)
            )
            self.runs[campaign["id"]] = run
        else:
            run.campaign, run.settings = campaign, settings
            run.pacer.config = config
            run.window = CallingWindow(settings.window, self.timezone)
        run.paused = campaign["status"] != "running"
        return run

    def unload(self, campaign_id: int) -> None:
        """Stopped: no new calls (calls in progress finish and are recorded)."""
        run = self.runs.get(campaign_id)
        if run is not None:
            run.paused = True
            if not run.calls:
                del self.runs[campaign_id]

    # --- pacing ----------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("campaign dialer tick failed")
            await asyncio.sleep(self.tick_s)

    def on_server_state(self, event: ServerLiveState) -> None:
        """Bus handler (every node's): a server's live queues."""
        self.board.put(event, self.clock())

    def counted_elsewhere(self, queue: str, now: datetime) -> set[str]:
        """Members of ``queue`` that a server before this one (by name) counts: an agent
        who is a member on several servers is paced by the first of them only."""
        if self.server is None:
            return set()
        out: set[str] = set()
        for server, state in self.board.servers(now).items():
            if server >= self.server:
                continue
            for q in state.queues:
                if q.get("name") == queue:
                    out.update(str(m.get("name") or m.get("interface") or "")
                               for m in q.get("members", []))  # fmt: skip
        return out

    def queue_state(self, queue: str) -> tuple[int, int, int]:
        """(free agents, busy agents, callers waiting) of ``queue`` now."""
        service = self.services.queues
        if service is None:
            return 0, 0, 0
        now = self.clock()
        for q in service.live_queues(now):
            if q.get("name") == queue:
                elsewhere = self.counted_elsewhere(queue, now)
                members = [
                    m
                    for m in q.get("members", [])
                    if str(m.get("name") or m.get("interface") or "") not in elsewhere
                ]
                free = sum(1 for m in members if m["state"] == "idle" and not m["paused"])
                busy = sum(1 for m in members if m["state"] in _BUSY)
                return free, busy, len(q.get("entries", []))
        return 0, 0, 0

    async def tick(self) -> None:
        now = self.clock()
        self._expire(now)
        if self.gate is not None and (
            self._synced_at is None or (now - self._synced_at).total_seconds() >= SYNC_S
        ):
            self._synced_at = now
            await self._sync()
        for run in list(self.runs.values()):
            await self.settle_adopted(run, now)
            if self.settling:
                await self._settled(run)
            if run.paused or not run.window.is_open(now):
                continue
            if not await self._may_pace(run, now):
                continue
            await self._callbacks(run, now)
            await self._recycle(run, now)
            if run.settings.mode == "preview" or not run.settings.queue:
                continue
            free, busy, _ = self.queue_state(run.settings.queue)
            # ringing, or answered and not yet with an agent (AMD, waiting in the queue)
            in_flight = sum(1 for c in run.calls.values()
                            if c.connected_at is None and self._ringing(c, run, now))  # fmt: skip
            if self.gate is not None and run.settings.mode == "predictive":
                # the cap is the campaign's: every server's calls in the window
                since = now - timedelta(seconds=run.pacer.config.window_s)
                run.pacer.share_window(*await self.store.answer_counts(run.campaign["id"],
                                                                       since))  # fmt: skip
            n = run.pacer.to_dial(monotonic_s(now), free=free, in_flight=in_flight,
                                  busy_elapsed=[0.0] * busy)  # fmt: skip
            if n <= 0:
                continue
            for lead in await self.store.claim_due(run.campaign["id"], now, n,
                                                   server=self.server or ""):  # fmt: skip
                await self._dial(run, lead, now)

    def lock_name(self, campaign_id: int, server: str | None) -> str:
        return f"campaign:{campaign_id}:{server or ''}"

    async def _sync(self) -> None:
        """In a cluster: campaigns started, paused or stopped on other nodes; the calls
        of servers no node drives any more (:meth:`_orphans`)."""
        for campaign in await self.store.campaigns():
            if campaign["status"] in ("running", "paused"):
                self.load(campaign)
            elif campaign["id"] in self.runs and not self.runs[campaign["id"]].paused:
                self.unload(campaign["id"])
        if self.ami.connected:
            for run in list(self.runs.values()):
                await self._orphans(run)

    async def _orphans(self, run: Run) -> None:
        """Calls placed on another server whose lock nobody holds (no node drives it, or
        its driver is not pacing yet): this node takes the lock and settles them from the
        store (:meth:`settle_adopted`), then lets go (:meth:`_settled`)."""
        assert self.gate is not None
        cid = run.campaign["id"]
        for server in await self.store.open_servers(cid):
            if server == (self.server or "") or (cid, server) in self.settling:
                continue
            if await self.gate.hold(self.lock_name(cid, server)):
                self.settling.add((cid, server))
                n = await self.adopt(run, self.clock(), server=server)
                log.info("campaign %s: settling %d call(s) of server %s (not paced by "
                         "any node)", run.name, n, server)  # fmt: skip

    async def _settled(self, run: Run) -> None:
        """Servers whose orphaned calls are all settled: their lock is let go."""
        assert self.gate is not None
        cid = run.campaign["id"]
        for key in [k for k in self.settling if k[0] == cid]:
            if not any(c.adopted and c.server == key[1] for c in run.calls.values()):
                self.settling.discard(key)
                await self.gate.release(self.lock_name(cid, key[1]))

    async def _may_pace(self, run: Run, now: datetime) -> bool:
        """One node: always. A cluster: while this node drives its server and holds the
        campaign's lock for it."""
        if self.gate is None:
            return True
        cid = run.campaign["id"]
        name = self.lock_name(cid, self.server)
        if not self.ami.connected:  # a standby, or its AMI link is down: it cannot dial
            if cid in self.pacing:
                self.pacing.discard(cid)
                await self.gate.release(name)
            return False
        if not await self.gate.hold(name):
            self.pacing.discard(cid)
            return False
        if cid not in self.pacing:
            self.pacing.add(cid)
            log.info("campaign %s: paced by this node on server %s", run.name, self.server)
            await self.adopt(run, now, server=self.server)
        return True

    def _ringing(self, call: LiveCall, run: Run, now: datetime) -> bool:
        """Own calls count in flight until connected; a taken-over call not answered
        rings at most ``ring_s`` (+ the grace) from its start."""
        if not call.adopted or call.answered_at is not None:
            return True
        limit = run.settings.ring_s + GRACE_S + 1
        return (now - call.started_at).total_seconds() < limit

    async def adopt(self, run: Run, now: datetime, server: str | None = None) -> int:
        """This node took the campaign over (on ``server``, in a cluster): the previous
        pacer's calls (leads left ``dialing`` with an attempt placed there and not
        finished) become this node's, finished by the call events it reads or by the
        facts (:meth:`settle_adopted`), never dialled again for the same attempt; leads
        its pacer claimed but never dialled are due again now."""
        own = {c.lead["id"] for c in run.calls.values()} | self.placing
        adopted = 0
        for lead, attempt in await self.store.open_attempts(run.campaign["id"], skip=own,
                                                            server=server):  # fmt: skip
            linkedid = str(attempt["linkedid"])
            if linkedid in self.calls:
                continue
            # an agent named before the call connected: placed agent-first for that agent
            # (OutboundStore.start_attempt), even when its channel is gone (_read_marks)
            first = bool(attempt["agent"]) and attempt["connected_at"] is None
            call = LiveCall(linkedid, run.campaign["id"], lead, int(attempt["id"]),
                            attempt["started_at"], answered_at=attempt["answered_at"],
                            connected_at=attempt["connected_at"], agent=str(attempt["agent"]),
                            campaign=run.name, adopted=True, agent_first=first,
                            server=str(attempt["server"]))  # fmt: skip
            if call.connected_at is None:
                await self._read_marks(call)
            run.calls[linkedid] = self.calls[linkedid] = call
            own.add(lead["id"])
            adopted += 1
        released = await self.store.release_dialing(run.campaign["id"], now, keep=own,
                                                    server=server)  # fmt: skip
        if adopted or released:
            log.info("campaign %s: took over %d call(s) of the previous pacer; %d lead(s) "
                     "claimed and never dialled are due again", run.name, adopted,
                     released)  # fmt: skip
        return adopted

    async def _read_marks(self, call: LiveCall) -> None:
        """What a taken-over call IS, read back from its first channel (Uniqueid ==
        Linkedid) while it is up: an agent-first call (preview, personal callback) carries
        ``CTI_CAMPAIGN_FIRST`` (the lead's status before it) and ``CTI_CAMPAIGN_AGENT``
        from its Originate; without them it is a queue call. A channel that is gone (the
        call ended while no node drove) answers nothing: the call is settled from its row."""
        if not self.ami.connected:
            return
        marks: dict[str, str] = {}
        for name in (FIRST_VAR, AGENT_VAR):
            try:
                reply = await self.ami.send_action("Getvar", {"Channel": call.linkedid,
                                                              "Variable": name})  # fmt: skip
            except (AmiActionError, NotConnected, TimeoutError):
                return
            marks[name] = reply.get("Value", "") or ""
        previous = marks[FIRST_VAR]
        if previous in AGENT_FIRST_STATUSES:
            call.agent_first, call.previous_status = True, previous
            call.agent = marks[AGENT_VAR] or call.agent or str(call.lead.get("agent") or "")
            log.info("campaign call %s taken over: agent-first (%s) for %s", call.linkedid,
                     previous, call.agent)  # fmt: skip

    async def settle_adopted(self, run: Run, now: datetime) -> None:
        """Taken-over calls that ended are finished from their call row (the platform's
        record of the call, by whichever node recorded or recovered it): agent → answered,
        answered → abandoned (or machine), else no answer; an agent-first call answered →
        answered (its agent, connected when the customer answered), else no answer; the
        retry rules apply as for any call. A call with no record yet is left (still up, or
        its server's next driver recovers it), given up as ``failed`` ``LOST_AFTER_S``
        after its ring time when never answered (as this node's own calls), else after
        ``ADOPTED_ANSWERED_GIVE_UP_S``."""
        adopted = [c for c in run.calls.values() if c.adopted]
        if not adopted:
            return
        records = await self.store.recorded_calls([c.linkedid for c in adopted])
        for call in adopted:
            record = records.get(call.linkedid)
            if record is not None:
                outcome = recorded_outcome(record, run, call.agent_first)
                if outcome == "answered" and call.connected_at is None and call.agent_first:
                    # talked while no node watched: connected when the customer answered
                    at = record["answered_at"] or record["ended_at"]
                    call.answered_at = call.connected_at = at
                    await self.store.update_attempt(call.attempt_id, answered_at=at,
                                                    connected_at=at, agent=call.agent)  # fmt: skip
                await self._finish(call, outcome, record["ended_at"])
                continue
            age = (now - call.started_at).total_seconds()
            limit = (run.settings.ring_s + LOST_AFTER_S if call.answered_at is None
                     else ADOPTED_ANSWERED_GIVE_UP_S)  # fmt: skip
            if age > limit:
                log.warning("campaign %s: call %s taken over has no record after %.0f s: "
                            "given up", run.name, call.linkedid, age)  # fmt: skip
                await self._finish(call, self._ended_outcome(call, run), now)

    def agent_member(self, agent: str) -> dict[str, Any] | None:
        """The agent's queue membership now (interface, state, paused), if logged in."""
        service = self.services.queues
        if service is None:
            return None
        found: dict[str, Any] | None = None
        for q in service.live_queues(self.clock()):
            for m in q.get("members", []):
                if m.get("name") == agent:
                    if m["state"] == "idle" and not m["paused"]:
                        return dict(m)
                    found = dict(m)
        return found

    async def _callbacks(self, run: Run, now: datetime) -> None:
        """Personal callbacks due: to their agent when free; to anyone after the rule's
        minutes (or never, with 0)."""
        for lead in await self.store.due_callbacks(run.campaign["id"], now):
            member = self.agent_member(lead["agent"]) if lead["agent"] else None
            if member is not None and member["state"] == "idle" and not member["paused"]:
                if await self.store.update_lead(lead["id"], ["callback"], status="dialing",
                                                attempts=lead["attempts"] + 1,
                                                server=self.server or ""):  # fmt: skip
                    lead = {**lead, "attempts": lead["attempts"] + 1}
                    try:
                        await self._agent_first(run, lead, lead["agent"], member["interface"],
                                                now, previous="callback")  # fmt: skip
                    except DialError as exc:
                        log.info("callback of lead %s not placed: %s", lead["id"], exc)
                continue
            after = run.settings.callback_anyone_after_min
            due = datetime.fromisoformat(lead["next_at"])
            if not lead["agent"] or (after and (now - due).total_seconds() >= after * 60):
                await self.store.update_lead(lead["id"], ["callback"], status="retry",
                                             agent="", next_at=now)  # fmt: skip

    async def _recycle(self, run: Run, now: datetime) -> None:
        """No-answers finished ``recycle_after_h`` ago are dialled again (once a minute)."""
        hours = run.settings.recycle_after_h
        if not hours or (run.recycled_at and (now - run.recycled_at).total_seconds() < 60):
            return
        run.recycled_at = now
        n = await self.store.recycle(campaign_id=run.campaign["id"],
                                     finished_before=now - timedelta(hours=hours))  # fmt: skip
        if n:
            log.info("campaign %s: %d no-answer leads recycled", run.name, n)

    async def dial_preview(self, campaign_id: int, lead: dict[str, Any], agent: str) -> LiveCall:
        """The agent dials the lead it previews: its phone rings, then the customer."""
        run = self.runs.get(campaign_id)
        if run is None or run.paused:
            raise DialError("the campaign is not running", "not-running")
        now = self.clock()
        if not run.window.is_open(now):
            raise DialError("the campaign's calling window is closed now", "window")
        member = self.agent_member(agent)
        if member is None:
            raise DialError("you are not logged in on a queue", "not-logged-in")
        if member["state"] != "idle":
            raise DialError("you are on a call", "busy")
        # an agent dials from the API while the pacer may be adopting (its first tick):
        # the lead is this node's from its claim on, not a leftover to release
        self.placing.add(lead["id"])
        try:
            if not await self.store.update_lead(lead["id"], ["preview"], status="dialing",
                                                attempts=lead["attempts"] + 1,
                                                server=self.server or ""):  # fmt: skip
                raise DialError("the lead is no longer yours to dial", "gone")
            lead = {**lead, "attempts": lead["attempts"] + 1}
            return await self._agent_first(run, lead, agent, member["interface"], now,
                                           previous="preview")  # fmt: skip
        finally:
            self.placing.discard(lead["id"])

    async def _agent_first(self, run: Run, lead: dict[str, Any], agent: str, interface: str,
                           now: datetime, *, previous: str) -> LiveCall:  # fmt: skip
        try:
            decision = await self._check(run, lead, now)
        except Exception as exc:
            # nothing was dialled: the lead goes back to where it was (the agent's preview
            # card, or a callback due again), not left ``dialing`` with no call
            await self.store.update_lead(lead["id"], ["dialing"], status=previous,
                                         attempts=lead["attempts"] - 1)  # fmt: skip
            if isinstance(exc, DialError):
                raise
            log.exception("campaign %s: the dial policy failed for lead %s", run.name,
                          lead["id"])  # fmt: skip
            raise DialError("the dial policy could not check the number", "unavailable") from None
        if decision is None:
            raise DialError("the dial policy refused the number", "dnc")
        linkedid = f"{CAMPAIGN_PREFIX}{secrets.token_hex(8)}"
        attempt = await self.store.start_attempt(lead, linkedid, now, server=self.server or "",
                                                 agent=agent)  # fmt: skip
        call = LiveCall(linkedid, run.campaign["id"], lead, attempt, now, agent=agent,
                        agent_first=True, previous_status=previous,
                        campaign=run.name, server=self.server or "")  # fmt: skip
        run.calls[linkedid] = self.calls[linkedid] = call
        s = run.settings
        variables = [f"CTI_CAMPAIGN_RING={s.ring_s}", *agent_first_marks(previous, agent)]
        if s.caller_id:
            variables.append(f"CTI_CAMPAIGN_CALLERID={s.caller_id}")
        digits = "".join(c for c in decision if c.isdigit())
        try:
            await self.ami.send_action(
                "Originate",
                {
                    "Channel": interface, "Context": DIAL_CONTEXT, "Exten": digits,
                    "Priority": "1", "Timeout": "20000", "Async": "true",
                    "CallerID": f'"{run.name}" <{digits}>', "Variable": variables,
                    "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
                },
            )  # fmt: skip
        except Exception as exc:
            await self._finish(call, "not_dialled", self.clock())
            raise DialError(f"Asterisk refused the call: {exc}", "unavailable") from None
        return call

    async def _check(self, run: Run, lead: dict[str, Any], now: datetime) -> str | None:
        """The number to dial, or None when the dial policy refused it (recorded)."""
        policy = self.services.dial_policy
        if policy is None:
            raise DialError("no dial policy is configured", "unavailable")
        decision = await policy.check(lead["number"], purpose="campaign", campaign=run.name)
        if decision.allowed:
            return decision.number or str(lead["number"])
        await self.store.start_attempt(lead, "", now, outcome="refused", server=self.server or "")
        status = "dnc" if decision.code == "dnc" else "done"
        await self.store.update_lead(lead["id"], ["dialing"], status=status,
                                     last_outcome="refused",
                                     note=decision.reason[:2000])  # fmt: skip
        return None

    async def _dial(self, run: Run, lead: dict[str, Any], now: datetime) -> None:
        try:
            number = await self._check(run, lead, now)
        except DialError:
            await self.store.update_lead(lead["id"], ["dialing"], status="retry", next_at=now,
                                         attempts=lead["attempts"] - 1)  # fmt: skip
            log.warning("campaign %s: no dial policy, nothing dialled", run.name)
            return
        if number is None:
            return
        linkedid = f"{CAMPAIGN_PREFIX}{secrets.token_hex(8)}"
        attempt = await self.store.start_attempt(lead, linkedid, now, server=self.server or "")
        call = LiveCall(
            linkedid,
            run.campaign["id"],
            lead,
            attempt,
            now,
            campaign=run.name,
            server=self.server or "",
        )
        run.calls[linkedid] = self.calls[linkedid] = call
        s = run.settings
        variables = [
            f"CTI_CAMPAIGN_RING={s.ring_s}", f"CTI_CAMPAIGN_GRACE={GRACE_S}",
            f"CTI_CAMPAIGN_AMD={'1' if s.amd else '0'}",
        ]  # fmt: skip
        if s.caller_id:
            variables.append(f"CTI_CAMPAIGN_CALLERID={s.caller_id}")
        digits = "".join(c for c in number if c.isdigit())
        try:
            await self.ami.send_action(
                "Originate",
                {
                    "Channel": f"Local/{digits}@{DIAL_CONTEXT}/n",
                    "Context": CONNECT_CONTEXT, "Exten": s.queue, "Priority": "1",
                    "Timeout": str((s.ring_s + 10) * 1000), "Async": "true",
                    "CallerID": f'"{run.name}" <{digits}>', "Variable": variables,
                    "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
                },
            )  # fmt: skip
        except Exception as exc:
            log.warning("campaign %s: originate failed: %s", run.name, exc)
            await self._finish(call, "failed", self.clock())

    def _expire(self, now: datetime) -> None:
        for call in list(self.calls.values()):
            if call.adopted:
                continue  # settle_adopted
            run = self.runs.get(call.campaign_id)
            ring = run.settings.ring_s if run else 60
            if call.answered_at is None and (now - call.started_at).total_seconds() > (
                ring + LOST_AFTER_S
            ):
                self._tasks.spawn(self._finish(call, "failed", now), "expire")

    # --- call events ---------------------------------------------------------------------
    def apply(self, event: DomainEvent) -> None:
        """Bus handler (synchronous): our calls' events, handled in order."""
        linkedid = getattr(event, "linkedid", "")
        if isinstance(linkedid, str) and linkedid in self.calls:
            try:
                self._events.put_nowait(event)
            except asyncio.QueueFull:
                log.error("campaign dialer: event queue full, %s dropped", type(event).__name__)

    async def _consume(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._handle(event)
            except Exception:
                log.exception("campaign dialer: handling %s failed", type(event).__name__)

    async def _handle(self, event: DomainEvent) -> None:
        call = self.calls.get(getattr(event, "linkedid", ""))
        if call is None:
            return
        run = self.runs.get(call.campaign_id)
        at = getattr(event, "at", self.clock())
        t = monotonic_s(at)
        if isinstance(event, CallDialEnded):
            if event.context != DIAL_CONTEXT or call.answered_at is not None:
                return
            if event.status == "ANSWER" and call.agent_first:
                call.answered_at = call.connected_at = at
                await self.store.update_attempt(call.attempt_id, answered_at=at,
                                                connected_at=at, agent=call.agent)  # fmt: skip
                self._connected(call)
            elif event.status == "ANSWER":
                call.answered_at = at
                if run is not None:
                    run.pacer.dial_ended(t, answered=True)
                await self.store.update_attempt(call.attempt_id, answered_at=at)
            else:
                if run is not None and not call.agent_first:
                    run.pacer.dial_ended(t, answered=False)
                await self._finish(call, _DIAL_STATUS.get(event.status, "failed"), at)
        elif isinstance(event, CallQueued):
            call.queued = True
        elif isinstance(event, CallDialEnded):
            return
        elif isinstance(event, CallAnswered):
            if call.connected_at is None and not call.agent_first:
                call.connected_at, call.agent = at, event.member_name
                if run is not None:
                    run.pacer.connected(t)
                await self.store.update_attempt(call.attempt_id, connected_at=at,
                                                agent=event.member_name[:128],
                                                wait_s=round(event.wait_s, 3))  # fmt: skip
                await self.store.update_lead(call.lead["id"], None,
                                             agent=event.member_name[:128])  # fmt: skip
                self._connected(call)
        elif isinstance(event, CallTimedOut):
            if call.connected_at is None and not call.outcome:
                call.outcome = "abandoned"
                if run is not None:
                    run.pacer.abandoned(t)
        elif isinstance(event, CallLegEnded) and event.uniqueid == call.linkedid:
            await self._finish(call, self._ended_outcome(call, run), at)

    def _connected(self, call: LiveCall) -> None:
        for handler in self.on_connected:
            try:
                handler(call)
            except Exception:
                log.exception("campaign dialer: a connected handler failed")

    @staticmethod
    def _ended_outcome(call: LiveCall, run: Run | None) -> str:
        if call.connected_at is not None:
            return "answered"
        if call.agent_first and call.answered_at is None and not call.outcome:
            return "not_dialled"  # the agent did not answer: the customer was never dialled
        if call.outcome:
            return call.outcome
        if call.answered_at is None:
            return "failed"
        if not call.queued and run is not None and run.settings.amd:
            return "machine"
        return "abandoned"  # answered, hung up before an agent took it

    async def _finish(self, call: LiveCall, outcome: str, at: datetime) -> None:
        if self.calls.pop(call.linkedid, None) is None:
            return
        run = self.runs.get(call.campaign_id)
        if run is not None:
            run.calls.pop(call.linkedid, None)
        talk = (at - call.connected_at).total_seconds() if call.connected_at else 0.0
        if run is not None and call.connected_at is not None:
            run.pacer.talked(monotonic_s(at), talk)
        await self.store.update_attempt(call.attempt_id, outcome=outcome, ended_at=at,
                                        talk_s=round(max(0.0, talk), 3))  # fmt: skip
        if outcome == "not_dialled":  # back to where it was, for the same agent
            later = at + timedelta(minutes=2) if call.previous_status == "callback" else None
            await self.store.update_lead(
                call.lead["id"], ["dialing"], status=call.previous_status or "retry",
                attempts=call.lead["attempts"] - 1, next_at=later or (call.lead["next_at"]
                and datetime.fromisoformat(call.lead["next_at"])),
            )  # fmt: skip
            return
        rules = run.settings.retry if run else {}
        window = run.window if run else None
        nxt = after_call(outcome, call.lead["attempts"], rules, at, window)
        # the agent's outcome, when given during the call, already moved the lead on
        await self.store.update_lead(call.lead["id"], None, last_outcome=outcome)
        await self.store.update_lead(call.lead["id"], ["dialing"], status=nxt.status,
                                     next_at=nxt.next_at)  # fmt: skip
        if run is not None and run.paused and not run.calls and run.campaign["status"] == "stopped":
            self.runs.pop(call.campaign_id, None)
