"""Interactions: one row per call, upserted by Linkedid when the call completes.

The bus handler only submits to the interaction writer's queue worker (cti.worker:
bounded, drops counted, database errors retried until the database is back). The upsert
is idempotent: the same ``CallCompleted`` twice (AMI, then CDR recovery) updates the
call facts of one row and never touches what the agent wrote (notes, disposition) nor a
recording already attached. A graceful stop drains the writer for a bounded time
(``STOP_GRACE_S``); what is left is kept in the store and written first at the next start
(cti.pending): no accepted job is lost (see :class:`InteractionWriter`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.access import Actor, customer_for
from crm_bridge.audit import audit
from crm_bridge.directory import history_written
from crm_bridge.errors import CrmError, Forbidden, NotFound
from crm_bridge.models import CallAgent, Customer, Interaction, Phone
from crm_bridge.records import interaction_dict
from crm_bridge.schemas import CallInteractionPut, InteractionIn, InteractionPatch
from crm_bridge.store import CrmStore
from cti.bus import EventBus
from cti.events import (
    CallAnswered,
    CallCompleted,
    CallHandedOver,
    CallOffered,
    CallRecord,
    IvrAbandoned,
    IvrCompleted,
    SurveyAnswered,
)
from cti.pending import PendingStore
from cti.store.db import is_data_error
from cti.store.hot_read import Rows, Statement
from cti.store.hot_write import Write, WritePlan, detached
from cti.store.models import clip_text, utcnow
from cti.worker import QueueWorker, WorkerMetrics

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], object]
R = TypeVar("R")

#: What Asterisk's Linkedid looks like ("1732345678.123"); anything else is refused.
LINKEDID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Calls whose offered agents are remembered in memory (the table is the truth).
RECENT_CALLS = 20_000
STOP_GRACE_S = 10.0  # the writer's drain at a stop; the rest is kept (cti.pending)


_CA = cast(Table, CallAgent.__table__)
_IN = cast(Table, Interaction.__table__)
_CALL_FIELDS = ("caller_num", "customer_id", "contact_id", "queue", "agent")
_PH = cast(Table, Phone.__table__)
_ANSWER_AGENT = (
    update(_CA).where(_CA.c.id == bindparam("row_id")).values(answered_at=bindparam("at"))
)
_SET_CALL = (
    update(_IN)
    .where(_IN.c.id == bindparam("new_id"))
    .values({name: bindparam(f"new_{name}") for name in _CALL_FIELDS})
)


def check_linkedid(linkedid: str) -> str:
    if not LINKEDID.fullmatch(linkedid):
        raise CrmError("linkedid must be 1-64 letters, digits, '.', '_' or '-'")
    return linkedid


async def _retry_on_conflict(attempt: Callable[[], Awaitable[R]]) -> R:
    """Run a transaction that may create a call's interaction (or call-agent row); when
    another writer created it first (unique linkedid), run it once more (it finds it)."""
    try:
        return await attempt()
    except IntegrityError:
        return await attempt()


class Interactions:
    def __init__(self, store: CrmStore, *, notify: Notify | None = None) -> None:
        self.store = store
        self.notify: Notify = notify or (lambda _event, _data: None)
        # linkedid -> agents offered / answered, filled synchronously from the bus so an
        # agent can write the moment the phone rings (before the worker stored the row)
        self._offered: OrderedDict[str, set[str]] = OrderedDict()
        self._callers: dict[str, str] = {}  # linkedid -> caller number, same calls

    # --- who may write a call ----------------------------------------------------------

    def remember_offer(self, linkedid: str, agent: str, caller_num: str = "") -> None:
        if not agent or not linkedid:
            return
        self._offered.setdefault(linkedid, set()).add(agent)
        self._offered.move_to_end(linkedid)
        if caller_num:
            self._callers[linkedid] = caller_num
        while len(self._offered) > RECENT_CALLS:
            gone, _ = self._offered.popitem(last=False)
            self._callers.pop(gone, None)

    async def record_offer(
        self,
        linkedid: str,
        agent: str,
        at: datetime,
        *,
        answered: bool,
        caller_num: str = "",
        queue: str = "",
    ) -> None:
        """Store that ``agent`` was offered (or answered) the call, and make sure the
        call has its interaction row (so it can be read and written during the call)."""
        await self.record_offers([Offer(linkedid, agent, at, answered, caller_num, queue)])

    async def record_offers(self, offers: Sequence[Offer]) -> None:
        """:meth:`record_offer` for several offers, in order, in one transaction: the
        call-agent rows and the interactions of all their calls are read with one query
        each (a burst rings and answers dozens of calls a second; one transaction per
        offer was the largest part of the daemon's loop, decision 0027)."""
        valid = [o for o in offers if LINKEDID.fullmatch(o.linkedid) and o.agent]
        if not valid:
            return
        linkedids = sorted({o.linkedid for o in valid})
        e164_of = {o.caller_num: self.store.e164(o.caller_num) for o in valid if o.caller_num}
        db = self.store.db

        async def attempt() -> None:
            # one transaction on the writer path, Core statements compiled once, no ORM
            # session: the ORM's unit of work, then a session's machinery around cached
            # Core statements, cost the loop several times what the driver needs for the
            # same rows (decision 0027, "Hot-path writers off the ORM")
            touched = await db.write(lambda: _offers_plan(valid, linkedids, e164_of))
            # the card cache's history of these customers is stale now that this
            # committed (what an ORM session's commit reports, crm_bridge.directory)
            history_written(db.engine.sync_engine, touched)

        await _retry_on_conflict(attempt)

    async def _may_write_call(
        self, session: AsyncSession, linkedid: str, inter: Interaction | None, actor: Actor
    ) -> bool:
        if actor.sees_all:
            return True
        if actor.name in self._offered.get(linkedid, ()):
            return True
        if inter is not None and inter.agent == actor.name:
            return True
        found = await session.scalar(
            select(CallAgent.id).where(
                CallAgent.linkedid == linkedid, CallAgent.agent == actor.name
            )
        )
        return found is not None

    async def _lookup_number(
        self, session: AsyncSession, e164: str
    ) -> tuple[int | None, int | None, str | None]:
        """(customer_id, contact_id, owner) of the first phone row with this number."""
        if e164:
            row = (
                await session.execute(
                    select(Phone.customer_id, Phone.contact_id, Customer.owner)
                    .join(Customer, Customer.id == Phone.customer_id)
                    .where(Phone.e164 == e164)
                    .order_by(Phone.id)
                    .limit(1)
                )
            ).first()
            if row is not None:
                return row[0], row[1], row[2]
        return None, None, None

    async def _call_row(
        self, session: AsyncSession, linkedid: str, caller_num: str, at: datetime
    ) -> Interaction:
        """The call's interaction, created if missing; linked by the caller's number when
        it is not linked yet (whoever created the row may not have known the number)."""
        inter = await session.scalar(
            select(Interaction).where(Interaction.linkedid == linkedid).with_for_update()
        )
        if inter is None:
            inter = Interaction(linkedid=linkedid, kind="call", caller_num="", started_at=at)
            session.add(inter)
        e164 = self.store.e164(caller_num) if caller_num else ""
        if e164 and not inter.caller_num:
            inter.caller_num = e164
            if inter.customer_id is None:
                inter.customer_id, inter.contact_id, _ = await self._lookup_number(session, e164)
        await session.flush()
        return inter

    # --- the agent's side of a call (contract: interactions/by-call) ---------------------

    async def get_by_call(self, linkedid: str, actor: Actor) -> dict[str, Any]:
        check_linkedid(linkedid)
        async with self.store.db.session() as session:
            inter = await session.scalar(
                select(Interaction).where(Interaction.linkedid == linkedid)
            )
            if inter is None:
                raise NotFound(f"no interaction for call {linkedid}")
            if not await self._may_write_call(session, linkedid, inter, actor):
                await self._get(session, inter.id, actor, False)  # customer visibility
            return interaction_dict(inter)

    async def put_by_call(
        self,
        linkedid: str,
        data: CallInteractionPut,
        actor: Actor,
        dispositions: Collection[str],
    ) -> dict[str, Any]:
        """Write notes / disposition / the customer link of a call, during or after it.
        The CallCompleted upsert later never overwrites these (see :meth:`upsert_call`)."""
        check_linkedid(linkedid)
        if data.disposition and data.disposition not in dispositions:
            raise CrmError(
                f"unknown disposition {data.disposition[:64]!r}",
                dispositions=sorted(dispositions),
            )

        async def attempt() -> tuple[dict[str, Any], bool]:
            async with self.store.db.session() as session, session.begin():
                inter = await session.scalar(
                    select(Interaction).where(Interaction.linkedid == linkedid).with_for_update()
                )
                if not await self._may_write_call(session, linkedid, inter, actor):
                    # not the agent's call: as if it did not exist
                    raise NotFound(f"no interaction for call {linkedid}")
                if inter is None:
                    caller = self._callers.get(linkedid, "")
                    inter = await self._call_row(session, linkedid, caller, utcnow())
                if not inter.agent and actor.role == "agent":
                    inter.agent = actor.name
                changes: dict[str, Any] = {}
                if data.customer_id is not None and data.customer_id != inter.customer_id:
                    customer = await customer_for(session, data.customer_id, actor, write=False)
                    changes["customer_id"] = [inter.customer_id, customer.id]
                    inter.customer_id = customer.id
                    inter.contact_id = await session.scalar(
                        select(Phone.contact_id)
                        .where(Phone.customer_id == customer.id, Phone.e164 == inter.caller_num)
                        .order_by(Phone.id)
                        .limit(1)
                    )
                for field in ("notes", "disposition"):
                    new = getattr(data, field)
                    if new is not None and new != getattr(inter, field):
                        changes[field] = [getattr(inter, field), new]
                        setattr(inter, field, new)
                if changes and inter.customer_id is not None:
                    audit(
                        session, actor, "update", "interaction", inter.id, inter.customer_id,
                        changes,
                    )  # fmt: skip
                    customer_row = await session.get(Customer, inter.customer_id)
                    if customer_row is not None and customer_row.owner == actor.name:
                        customer_row.last_contact_at = utcnow()
                await session.flush()
                return interaction_dict(inter), bool(changes)

        out, changed = await _retry_on_conflict(attempt)
        if changed:
            self.notify("interaction.updated", out)
        return out

    # --- the call side ------------------------------------------------------------------

    async def upsert_call(self, record: CallRecord) -> dict[str, Any] | None:
        """Create or update the interaction of ``record`` (keyed by Linkedid)."""
        linkedid = record.linkedid.strip()
        if not linkedid or len(linkedid) > 64:
            log.error("interaction refused: bad linkedid %r", linkedid[:80])
            return None
        out = await _retry_on_conflict(lambda: self._upsert_call_once(record, linkedid))
        self.notify("interaction.updated", out)
        return out

    async def _upsert_call_once(self, record: CallRecord, linkedid: str) -> dict[str, Any]:
        """One transaction on the writer (:meth:`Database.write`, no ORM session: the
        call's end is the hot path too, decision 0027) that writes what the ORM's unit of
        work wrote: the interaction inserted (a None of a column with a default gives the
        default) or its changed columns updated (none changed: no UPDATE), and the
        owner's ``last_contact_at``; then the card cache is told what a session's commit
        told it (the history of the interaction's customer; every card when a customer
        changed)."""
        db = self.store.db
        e164 = self.store.e164(record.caller_num)
        row, created, cards = await db.write(lambda: _upsert_plan(record, linkedid, e164))
        inter = detached(Interaction, _IN_COLUMNS, row)
        touched = {inter.customer_id} if inter.customer_id is not None else set()
        history_written(db.engine.sync_engine, touched, cards=cards)
        out = interaction_dict(inter)
        out["created"] = created
        return out

    async def _get(self, session: Any, interaction_id: int, actor: Actor, write: bool) -> Any:
        inter = await session.get(Interaction, interaction_id)
        if inter is None:
            raise NotFound(f"interaction {interaction_id} not found")
        if actor.sees_all:
            return inter
        if inter.customer_id is not None:
            try:
                await customer_for(session, inter.customer_id, actor, write=write)
            except NotFound:
                raise NotFound(f"interaction {interaction_id} not found") from None
            return inter
        if inter.agent != actor.name:  # an unknown caller's call: the agent who took it
            raise NotFound(f"interaction {interaction_id} not found")
        return inter

    async def get(self, interaction_id: int, actor: Actor) -> dict[str, Any]:
        async with self.store.db.session() as session:
            return interaction_dict(await self._get(session, interaction_id, actor, False))

    async def update(
        self, interaction_id: int, patch: InteractionPatch, actor: Actor
    ) -> dict[str, Any]:
        async with self.store.db.session() as session, session.begin():
            inter = await self._get(session, interaction_id, actor, True)
            changes: dict[str, Any] = {}
            for field in ("notes", "disposition"):
                new = getattr(patch, field)
                if new is not None and new != getattr(inter, field):
                    changes[field] = [getattr(inter, field), new]
                    setattr(inter, field, new)
            if changes and inter.customer_id is not None:
                audit(session, actor, "update", "interaction", inter.id, inter.customer_id, changes)
                customer = await session.get(Customer, inter.customer_id)
                if customer is not None and customer.owner == actor.name:
                    customer.last_contact_at = utcnow()
            await session.flush()
            out = interaction_dict(inter)
        if changes:
            self.notify("interaction.updated", out)
        return out

    async def create(self, data: InteractionIn, actor: Actor) -> dict[str, Any]:
        async with self.store.db.session() as session, session.begin():
            customer = await customer_for(session, data.customer_id, actor, write=True)
            inter = Interaction(
                customer_id=customer.id,
                contact_id=data.contact_id,
                kind=data.kind,
                agent=actor.name,
                notes=data.notes,
                disposition=data.disposition,
                started_at=utcnow(),
            )
            session.add(inter)
            if customer.owner == actor.name:
                customer.last_contact_at = utcnow()
            await session.flush()
            audit(
                session,
                actor,
                "create",
                "interaction",
                inter.id,
                customer.id,
                data.model_dump(mode="json"),
            )
            out = interaction_dict(inter)
        self.notify("interaction.updated", out)
        return out

    async def for_customer(
        self, customer_id: int, actor: Actor, limit: int = 50
    ) -> list[dict[str, Any]]:
        async with self.store.db.session() as session:
            await customer_for(session, customer_id, actor, write=False)
            rows = await session.scalars(
                select(Interaction)
                .where(Interaction.customer_id == customer_id)
                .order_by(Interaction.started_at.desc(), Interaction.id.desc())
                .limit(limit)
            )
            return [interaction_dict(i) for i in rows]

    async def attach_recording(self, linkedid: str, ref: str) -> None:
        """The call's recording reference on its interaction (created if missing), one
        transaction on the writer, no ORM session (:meth:`Database.write`)."""
        db, started, value = self.store.db, utcnow(), clip_text(ref, 512)
        customer_id = await db.write(
            lambda: _call_field_plan(linkedid[:64], "", started, "recording", value)
        )
        if customer_id is not None:
            history_written(db.engine.sync_engine, {customer_id})

    async def set_ivr_path(
        self, linkedid: str, path: tuple[str, ...], caller_num: str, at: datetime
    ) -> None:
        """The menus the caller went through (IvrCompleted / IvrAbandoned), ``a>b>c``."""
        if not LINKEDID.fullmatch(linkedid):
            return

        await self._set_call_field(
            linkedid, caller_num, at, "ivr_path", clip_text(">".join(path), 1024)
        )

    async def set_survey_score(self, linkedid: str, score: int, at: datetime) -> None:
        """The caller's satisfaction score 1-5 (SurveyAnswered, quality feature)."""
        if not LINKEDID.fullmatch(linkedid) or not 1 <= int(score) <= 5:
            return

        await self._set_call_field(linkedid, "", at, "survey_score", int(score))

    async def _set_call_field(
        self, linkedid: str, caller_num: str, at: datetime, field: str, value: Any
    ) -> None:
        """Set one column of the call's interaction, created if missing and linked by the
        caller's number when it is not yet (what :meth:`_call_row` does for a session),
        in one transaction on the writer, no ORM session (:meth:`Database.write`: the IVR
        path is written as the call reaches its queue, decision 0027); then the card
        cache drops the history of the interaction's customer."""
        db = self.store.db
        e164 = self.store.e164(caller_num) if caller_num else ""

        async def attempt() -> None:
            customer_id = await db.write(lambda: _call_field_plan(linkedid, e164, at, field, value))
            if customer_id is not None:
                history_written(db.engine.sync_engine, {customer_id})

        await _retry_on_conflict(attempt)


#: Jobs the writer takes at once: consecutive offers among them share one transaction.
BATCH = 8


class Offer(NamedTuple):
    """An agent offered (or answering) a call: :meth:`Interactions.record_offers`."""

    linkedid: str
    agent: str
    at: datetime
    answered: bool
    caller_num: str = ""
    queue: str = ""


@dataclass(frozen=True, slots=True)
class Job:
    """One write for the interaction writer: ``kind`` is call | offer | ivr | recording."""

    kind: str
    linkedid: str
    args: tuple[Any, ...]


def _in(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """The values of an ``IN`` of ``len(values)`` bound parameters (:func:`_listed`)."""
    return {f"{name}{i}": v for i, v in enumerate(values)}


def _listed(column: Any, name: str, n: int) -> Any:
    """``column IN (:name0, ... :name{n-1})``: one cached statement per list length."""
    return column.in_([bindparam(f"{name}{i}") for i in range(n)])


@functools.lru_cache(maxsize=64)
def _agents_of(n: int) -> Statement:
    return Statement(
        select(_CA.c.id, _CA.c.linkedid, _CA.c.agent, _CA.c.answered_at).where(
            _listed(_CA.c.linkedid, "id", n)
        )
    )


_CALL_COLUMNS = ("id", "linkedid", "caller_num", "customer_id", "contact_id", "queue", "agent",
                 "started_at")  # fmt: skip


@functools.lru_cache(maxsize=64)
def _calls_of(n: int) -> Statement:
    return Statement(
        select(*(_IN.c[name] for name in _CALL_COLUMNS))
        .where(_listed(_IN.c.linkedid, "id", n))
        .order_by(_IN.c.linkedid)
        .with_for_update()
    )


@functools.lru_cache(maxsize=64)
def _numbers_of(n: int) -> Statement:
    return Statement(
        select(_PH.c.e164, _PH.c.customer_id, _PH.c.contact_id)
        .where(_listed(_PH.c.e164, "n", n))
        .order_by(_PH.c.id)
    )


_ADD_AGENTS = Write(insert(_CA), ("linkedid", "agent", "offered_at", "answered_at"))
_ANSWER_AGENTS = Write(_ANSWER_AGENT, ("row_id", "at"))
_ADD_CALLS = Write(insert(_IN), _CALL_COLUMNS[1:])
_SET_CALLS = Write(_SET_CALL, tuple(f"new_{k}" for k in ("id", *_CALL_FIELDS)))


def _offers_plan(
    valid: Sequence[Offer], linkedids: Sequence[str], e164_of: dict[str, str]
) -> WritePlan[set[int]]:
    """:meth:`Interactions.record_offers`' transaction (:meth:`Database.write`): the
    call-agent rows, the interactions and the callers' phone rows of all the calls read
    with one query each, then the new and changed rows written with one executemany
    each. Returns the customers whose interactions it changed."""
    ids = _in("id", linkedids)
    agents: dict[tuple[str, str], list[Any]] = {
        (linkedid, agent): [row_id, answered_at]
        for row_id, linkedid, agent, answered_at in (yield _agents_of(len(linkedids))(**ids))
    }
    calls: dict[str, dict[str, Any]] = {
        row[1]: dict(zip(_CALL_COLUMNS, row, strict=True))
        for row in (yield _calls_of(len(linkedids))(**ids))
    }
    wanted = sorted(
        {
            e164_of[o.caller_num]
            for o in valid
            if o.caller_num and not (o.linkedid in calls and calls[o.linkedid]["caller_num"])
        }
        - {""}
    )
    numbers: dict[str, tuple[int, int | None]] = {}
    if wanted:
        for e164, customer_id, contact_id in (yield _numbers_of(len(wanted))(**_in("n", wanted))):
            numbers.setdefault(e164, (customer_id, contact_id))
    new_agents: list[dict[str, Any]] = []
    answered: dict[int, datetime] = {}
    new_calls: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    reset: list[dict[str, Any]] = []  # set, if to the same agent
    for o in valid:
        agent = clip_text(o.agent, 128)
        row = agents.get((o.linkedid, agent))
        if row is None:
            new_agents.append(
                {"linkedid": o.linkedid, "agent": agent, "offered_at": o.at, "answered_at": None}
            )
            row = agents[(o.linkedid, agent)] = [new_agents[-1], None]
        if o.answered and row[1] is None:
            row[1] = o.at
            if isinstance(row[0], dict):
                row[0]["answered_at"] = o.at
            else:
                answered[row[0]] = o.at
        inter = calls.get(o.linkedid)
        if inter is None:
            inter = calls[o.linkedid] = {
                "id": None, "linkedid": o.linkedid, "caller_num": "", "customer_id": None,
                "contact_id": None, "queue": "", "agent": "", "started_at": o.at,
            }  # fmt: skip
            new_calls.append(inter)
        before = dict(inter)
        e164 = e164_of[o.caller_num] if o.caller_num else ""
        if e164 and not inter["caller_num"]:
            inter["caller_num"] = e164
            if inter["customer_id"] is None and e164 in numbers:
                inter["customer_id"], inter["contact_id"] = numbers[e164]
        if not inter["queue"] and o.queue:
            inter["queue"] = clip_text(o.queue, 128)
        if o.answered:
            inter["agent"] = agent
        if inter["id"] is not None and inter != before:
            changed[o.linkedid] = inter
        if o.answered:
            reset.append(inter)
    if new_agents:
        yield _ADD_AGENTS.many(new_agents)
    if answered:
        yield _ANSWER_AGENTS.many([{"row_id": k, "at": v} for k, v in answered.items()])
    if new_calls:
        yield _ADD_CALLS.many([{k: v for k, v in c.items() if k != "id"} for c in new_calls])
    if changed:
        yield _SET_CALLS.many(
            [{f"new_{k}": c[k] for k in ("id", *_CALL_FIELDS)} for c in changed.values()]
        )
    return {
        c["customer_id"]
        for c in (*new_calls, *changed.values(), *reset)
        if c["customer_id"] is not None
    }


_CU = cast(Table, Customer.__table__)
_IN_COLUMNS = tuple(c.key for c in _IN.columns)
_HAS_DEFAULT = frozenset(c.key for c in _IN.columns if c.default is not None)
_NUMBER_OWNER = Statement(
    select(_PH.c.customer_id, _PH.c.contact_id, _CU.c.owner)
    .join(_CU, _CU.c.id == _PH.c.customer_id)
    .where(_PH.c.e164 == bindparam("e164"))
    .order_by(_PH.c.id)
    .limit(1)
)
_CALL_ROW = Statement(
    select(*_IN.columns).where(_IN.c.linkedid == bindparam("lid")).with_for_update()
)
_LAST_CONTACT = Statement(select(_CU.c.last_contact_at).where(_CU.c.id == bindparam("cid")))
_SET_LAST_CONTACT = Write(
    update(_CU).where(_CU.c.id == bindparam("cid")).values(last_contact_at=bindparam("at")),
    ("cid", "at"),
)


@functools.lru_cache(maxsize=64)
def _insert_call(keys: tuple[str, ...]) -> Write:
    return Write(insert(_IN).returning(*_IN.columns), keys)


@functools.lru_cache(maxsize=64)
def _update_call(keys: tuple[str, ...]) -> Write:
    return Write(
        update(_IN)
        .where(_IN.c.id == bindparam("row_id"))
        .values({_IN.c[k]: bindparam(f"v_{k}") for k in keys})
        .returning(*_IN.columns),
        ("row_id", *(f"v_{k}" for k in keys)),
    )


def _upsert_plan(
    record: CallRecord, linkedid: str, e164: str
) -> WritePlan[tuple[tuple[Any, ...], bool, bool]]:
    """:meth:`Interactions._upsert_call_once`'s transaction: (the interaction's row,
    created, a customer changed)."""
    customer_id: int | None = None
    contact_id: int | None = None
    owner: str | None = None
    if e164:
        found = yield _NUMBER_OWNER(e164=e164)
        if found:
            customer_id, contact_id, owner = found[0]
    rows = yield _CALL_ROW(lid=linkedid)
    stored = _stored_call(rows, linkedid)
    inter = dict(stored)
    if inter["customer_id"] is None:  # never replaces a customer the agent linked
        inter["customer_id"] = customer_id
        inter["contact_id"] = contact_id
    elif customer_id is not None and customer_id != inter["customer_id"]:
        owner = None  # linked by hand to another customer: not the owner's contact
    inter["caller_num"] = e164 or inter["caller_num"]
    inter["agent"] = clip_text(record.agent, 256) or inter["agent"] or ""
    inter["queue"] = clip_text(record.queue, 128) or inter["queue"] or ""
    inter["started_at"] = record.started_at
    inter["ended_at"] = record.ended_at
    inter["wait_s"] = record.wait_s if record.wait_s is not None else inter["wait_s"]
    inter["talk_s"] = record.talk_s if record.talk_s is not None else inter["talk_s"]
    if record.disposition not in ("", "unknown") or not inter["outcome"]:
        inter["outcome"] = clip_text(record.disposition, 32)
    cards = False
    if customer_id is not None and owner and record.agent and owner == record.agent:
        last = yield _LAST_CONTACT(cid=customer_id)
        if last and (last[0][0] is None or last[0][0] < record.ended_at):
            yield _SET_LAST_CONTACT(cid=customer_id, at=record.ended_at)
            cards = True
    row = yield from _save_call(stored, inter)
    return (rows[0] if row is None else row), not rows, cards


def _stored_call(rows: Rows, linkedid: str, **fresh: Any) -> dict[str, Any]:
    """The interaction's columns as read (``rows``: :data:`_CALL_ROW`'s), or a new one's
    (no rows: ``fresh`` over the columns' None)."""
    if rows:
        return dict(zip(_IN_COLUMNS, rows[0], strict=True))
    return {k: None for k in _IN_COLUMNS} | {"linkedid": linkedid, "kind": "call", **fresh}


def _save_call(stored: dict[str, Any], inter: dict[str, Any]) -> WritePlan[tuple[Any, ...] | None]:
    """``inter`` written as the ORM's unit of work wrote it: a new row (``stored`` has no
    id) inserted, a None where the column has a default left out (the default goes in);
    else an UPDATE of the columns that changed, none when nothing did (``updated_at``
    stays). Returns the row written, or None."""
    if stored["id"] is None:
        values = {
            k: v for k, v in inter.items() if k != "id" and (v is not None or k not in _HAS_DEFAULT)
        }
        inserted: Rows = yield _insert_call(tuple(values))(**values)
        return inserted[0]
    changed = tuple(k for k in _IN_COLUMNS if inter[k] != stored[k])
    if not changed:
        return None
    updated: Rows = yield _update_call(changed)(
        row_id=inter["id"], **{f"v_{k}": inter[k] for k in changed}
    )
    return updated[0]


def _call_field_plan(
    linkedid: str, e164: str, at: datetime, field: str, value: Any
) -> WritePlan[int | None]:
    """:meth:`Interactions._set_call_field`'s transaction: the interaction (FOR UPDATE),
    the caller's phone when the row has no number yet, then one INSERT (a None where the
    column has a default gives the default, as the ORM inserts) or an UPDATE of the
    columns that changed (none: no UPDATE). Returns the interaction's customer."""
    rows = yield _CALL_ROW(lid=linkedid)
    stored = _stored_call(rows, linkedid, caller_num="", started_at=at)
    inter = dict(stored)
    if e164 and not inter["caller_num"]:
        inter["caller_num"] = e164
        if inter["customer_id"] is None:
            found = yield _NUMBER_OWNER(e164=e164)
            inter["customer_id"], inter["contact_id"] = found[0][:2] if found else (None, None)
    inter[field] = value
    yield from _save_call(stored, inter)
    customer_id: int | None = inter["customer_id"]
    return customer_id


class InteractionWriter:
    """Bus side of interactions: every event becomes a :class:`Job` on a
    :class:`~cti.worker.QueueWorker` (bounded, never blocking; drops counted). A database
    error keeps the job in hand and retries it with backoff until the database is back
    (a short outage loses no interaction); a job the database refuses for its data is
    given up after a few attempts, logged in full and counted, without blocking the rest.

    A graceful stop drains the queue for at most ``STOP_GRACE_S`` with the store open;
    the jobs left then (in hand or queued) are kept in the store (cti.pending) and
    written first at the next start, in order. Every job is idempotent (an upsert or a
    set of one field), so the job in hand at the stop, applied again, changes nothing;
    its ``interaction.updated`` webhook may be delivered twice.
    """

    def __init__(
        self,
        interactions: Interactions,
        queue_size: int = 10000,
        *,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.interactions = interactions
        self.worker: QueueWorker[Job] = QueueWorker(
            "crm-interactions", self._handle, queue_size=queue_size, batch_size=BATCH,
            retry_base_s=retry_base_s, retry_max_s=retry_max_s, permanent=is_data_error,
            describe=lambda j: f"{j.kind} of call {j.linkedid}", metrics=metrics,
            keep=PendingStore(interactions.store.db, Job),
        )  # fmt: skip
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def dropped(self) -> int:
        return self.worker.dropped

    @property
    def failed(self) -> int:
        return self.worker.failed

    def attach(self, bus: EventBus) -> None:
        self._unsubscribe += [
            bus.subscribe(CallCompleted, self._on_completed),
            bus.subscribe(CallOffered, self._on_offered),
            bus.subscribe(CallAnswered, self._on_answered),
            bus.subscribe(CallHandedOver, self._on_handed_over),
            bus.subscribe(IvrCompleted, self._on_ivr),
            bus.subscribe(IvrAbandoned, self._on_ivr),
            bus.subscribe(SurveyAnswered, self._on_survey),
        ]

    def _on_completed(self, event: CallCompleted) -> None:
        self.submit(Job("call", event.record.linkedid, (event.record,)))

    def _on_offered(self, event: CallOffered) -> None:
        self.interactions.remember_offer(event.linkedid, event.member_name, event.caller_num)
        self.submit(
            Job("offer", event.linkedid, (event.member_name, event.at, False, event.caller_num,
                                          event.queue))
        )  # fmt: skip

    def _on_answered(self, event: CallAnswered) -> None:
        self.interactions.remember_offer(event.linkedid, event.member_name)
        self.submit(
            Job("offer", event.linkedid, (event.member_name, event.at, True, "", event.queue))
        )

    def _on_handed_over(self, event: CallHandedOver) -> None:
        """Call control moved the call to another agent: the chain of agents grows (and
        the new agent may write the call's notes)."""
        if not event.to_agent or event.state == "failed":
            return
        self.interactions.remember_offer(event.linkedid, event.to_agent)
        answered = event.state == "answered"
        self.submit(Job("offer", event.linkedid, (event.to_agent, event.at, answered, "", "")))

    def _on_ivr(self, event: IvrCompleted | IvrAbandoned) -> None:
        self.submit(Job("ivr", event.linkedid, (event.path, event.caller_num, event.at)))

    def _on_survey(self, event: SurveyAnswered) -> None:
        self.submit(Job("survey", event.linkedid, (event.score, event.at)))

    def attach_recording(self, linkedid: str, ref: str) -> bool:
        return self.submit(Job("recording", linkedid, (ref,)))

    def submit(self, job: Job) -> bool:
        return self.worker.submit(job)

    async def _handle(self, jobs: Sequence[Job]) -> None:
        i = self.interactions
        offers: list[Offer] = []
        for job in jobs:
            if job.kind == "offer":  # consecutive offers: one transaction
                offers.append(Offer(job.linkedid, *job.args))
                continue
            if offers:
                await i.record_offers(offers)
                offers = []
            if job.kind == "call":
                await i.upsert_call(job.args[0])
            elif job.kind == "recording":
                await i.attach_recording(job.linkedid, *job.args)
            elif job.kind == "ivr":
                await i.set_ivr_path(job.linkedid, *job.args)
            elif job.kind == "survey":
                await i.set_survey_score(job.linkedid, *job.args)
        if offers:
            await i.record_offers(offers)

    async def start(self) -> None:
        await self.worker.resume()  # what the last stop left over, first
        self.worker.start()

    async def flush(self) -> None:
        await self.worker.flush()

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        await self.worker.close(grace_s=STOP_GRACE_S)


__all__ = ["Forbidden", "InteractionWriter", "Interactions", "Job", "Offer"]
