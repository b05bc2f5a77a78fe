"""Interactions: one row per call, upserted by Linkedid when the call completes.

The bus handler only enqueues (bounded queue; a full queue drops with an error log and
a count); one worker writes. The upsert is idempotent: the same ``CallCompleted`` twice
(AMI, then CDR recovery) updates the call facts of one row and never touches what the
agent wrote (notes, disposition) nor a recording already attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from crm_bridge.models import Customer, Interaction, Phone
from crm_bridge.schemas import InteractionIn, InteractionPatch
from crm_bridge.store import Actor, CrmStore, Forbidden, NotFound, audit, interaction_dict
from cti.bus import EventBus
from cti.events import CallCompleted, CallRecord
from cti.store.models import clip_text, utcnow

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], object]


class Interactions:
    def __init__(self, store: CrmStore, *, notify: Notify | None = None) -> None:
        self.store = store
        self.notify: Notify = notify or (lambda _event, _data: None)

    async def upsert_call(self, record: CallRecord) -> dict[str, Any] | None:
        """Create or update the interaction of ``record`` (keyed by Linkedid)."""
        linkedid = record.linkedid.strip()
        if not linkedid or len(linkedid) > 64:
            log.error("interaction refused: bad linkedid %r", linkedid[:80])
            return None
        e164 = self.store.e164(record.caller_num)
        async with self.store.db.session() as session, session.begin():
            customer_id: int | None = None
            contact_id: int | None = None
            owner: str | None = None
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
                    customer_id, contact_id, owner = row
            inter = await session.scalar(
                select(Interaction).where(Interaction.linkedid == linkedid).with_for_update()
            )
            created = inter is None
            if inter is None:
                inter = Interaction(linkedid=linkedid, kind="call")
                session.add(inter)
            if inter.customer_id is None:
                inter.customer_id = customer_id
                inter.contact_id = contact_id
            inter.caller_num = e164
            inter.agent = clip_text(record.agent, 256) or inter.agent or ""
            inter.queue = clip_text(record.queue, 128) or inter.queue or ""
            inter.started_at = record.started_at
            inter.ended_at = record.ended_at
            inter.wait_s = record.wait_s if record.wait_s is not None else inter.wait_s
            inter.talk_s = record.talk_s if record.talk_s is not None else inter.talk_s
            if record.disposition not in ("", "unknown") or not inter.outcome:
                inter.outcome = clip_text(record.disposition, 32)
            if customer_id is not None and owner and record.agent and owner == record.agent:
                customer = await session.get(Customer, customer_id)
                if customer is not None and (
                    customer.last_contact_at is None or customer.last_contact_at < record.ended_at
                ):
                    customer.last_contact_at = record.ended_at
            await session.flush()
            out = interaction_dict(inter)
        out["created"] = created
        self.notify("interaction.updated", out)
        return out

    async def _get(self, session: Any, interaction_id: int, actor: Actor, write: bool) -> Any:
        inter = await session.get(Interaction, interaction_id)
        if inter is None:
            raise NotFound(f"interaction {interaction_id} not found")
        if actor.sees_all:
            return inter
        if inter.customer_id is not None:
            try:
                await self.store._customer(session, inter.customer_id, actor, write=write)
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
            customer = await self.store._customer(session, data.customer_id, actor, write=True)
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
            await self.store._customer(session, customer_id, actor, write=False)
            rows = await session.scalars(
                select(Interaction)
                .where(Interaction.customer_id == customer_id)
                .order_by(Interaction.started_at.desc(), Interaction.id.desc())
                .limit(limit)
            )
            return [interaction_dict(i) for i in rows]

    async def attach_recording(self, linkedid: str, filename: str) -> None:
        async with self.store.db.session() as session, session.begin():
            inter = await session.scalar(
                select(Interaction).where(Interaction.linkedid == linkedid[:64])
            )
            if inter is None:
                inter = Interaction(linkedid=linkedid[:64], kind="call", started_at=utcnow())
                session.add(inter)
            inter.recording = clip_text(filename, 512)

    async def set_ivr_path(self, linkedid: str, step: str) -> None:
        async with self.store.db.session() as session, session.begin():
            inter = await session.scalar(
                select(Interaction).where(Interaction.linkedid == linkedid[:64])
            )
            if inter is None:
                inter = Interaction(linkedid=linkedid[:64], kind="call", started_at=utcnow())
                session.add(inter)
            path = f"{inter.ivr_path}>{step}" if inter.ivr_path else step
            inter.ivr_path = clip_text(path, 1024)


class InteractionWriter:
    """Bus side: enqueue ``CallCompleted`` (never blocks), one worker upserts."""

    def __init__(self, interactions: Interactions, queue_size: int = 10000) -> None:
        self.interactions = interactions
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self.dropped = 0
        self.failed = 0

    def attach(self, bus: EventBus) -> None:
        self._unsubscribe.append(bus.subscribe(CallCompleted, self._on_completed))

    def _on_completed(self, event: CallCompleted) -> None:
        self.submit(("call", event.record))

    def submit(self, job: tuple[str, Any]) -> bool:
        try:
            self._queue.put_nowait(job)
            return True
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("crm interaction queue full: dropped %s job", job[0])
            return False

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="crm-interactions")

    async def _run(self) -> None:
        while True:
            kind, payload = await self._queue.get()
            try:
                if kind == "call":
                    await self.interactions.upsert_call(payload)
                elif kind == "recording":
                    await self.interactions.attach_recording(*payload)
                elif kind == "ivr":
                    await self.interactions.set_ivr_path(*payload)
            except Exception:
                self.failed += 1
                log.exception("crm interaction write failed (%s)", kind)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        await self._queue.join()

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._worker is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), 10)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None


__all__ = ["Forbidden", "InteractionWriter", "Interactions"]
