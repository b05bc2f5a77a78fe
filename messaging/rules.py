"""The missed-call rule: a caller whose call was abandoned in a queue
(``CallCompleted`` with disposition ``abandoned``) or reached the IVR while closed
(``IvrCompleted`` with reason ``closed`` / ``holiday``) gets the ``missed_call`` SMS
template within a minute ("we missed your call, we will call you back").

The bus handlers only enqueue (a bounded :class:`cti.worker.QueueWorker`); the worker
normalises the number, skips a number that got this SMS within
``per_number_cooldown_s`` (looked up in ``msg_messages``, so it holds across restarts and
nodes) and sends through :class:`messaging.service.Messenger` (opt-outs honoured, the
message on the customer's timeline when the number is a customer's). Once per call in
a cluster: the call's Linkedid is claimed (:func:`cti.cluster.once.claim_once`) in the
transaction that queues the message in the store's outbox, so two nodes handling the
same call cannot both send, and a claimed message is sent even when the node that
claimed it dies before sending (another node drains it: :mod:`messaging.service`). The
step from the event to the claim is in memory (this worker's queue, milliseconds); a
graceful stop drains it for at most ``STOP_GRACE_S`` and keeps the rest in the store
(cti.pending), handled first at the next start (:meth:`MissedCallSms.resume`). Handling a
call twice sends nothing twice (the claim, and the call's message already there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from cti.bus import EventBus
from cti.events import CallCompleted, IvrCompleted
from cti.pending import PendingStore
from cti.phone import normalize
from cti.store.models import utcnow
from cti.worker import QueueWorker, WorkerMetrics
from messaging.config import MissedCallRule
from messaging.models import Message
from messaging.service import Messenger

__all__ = ["MissedCallSms"]

log = logging.getLogger(__name__)
STOP_GRACE_S = 10.0  # a stop's drain; the rest is kept for the next start (cti.pending)


@dataclass(frozen=True, slots=True)
class Missed:
    linkedid: str
    caller: str
    why: str  # abandoned | after_hours


class MissedCallSms:
    def __init__(
        self,
        messenger: Messenger,
        rule: MissedCallRule,
        region: str,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.messenger = messenger
        self.rule = rule
        self.region = region
        self.worker: QueueWorker[Missed] = QueueWorker(
            "missed-call-sms", self._handle, queue_size=1000, metrics=metrics,
            keep=PendingStore(messenger.db, Missed),
        )  # fmt: skip

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(CallCompleted, self._on_completed)
        bus.subscribe(IvrCompleted, self._on_ivr)

    def _on_completed(self, event: CallCompleted) -> None:
        r = event.record
        if not (self.rule.enabled and self.rule.on_abandoned and r.disposition == "abandoned"):
            return
        if (r.wait_s or 0.0) < self.rule.min_wait_s:
            return
        self.worker.submit(Missed(r.linkedid, r.caller_num, "abandoned"))

    def _on_ivr(self, event: IvrCompleted) -> None:
        if self.rule.enabled and self.rule.on_after_hours and event.reason in ("closed", "holiday"):
            self.worker.submit(Missed(event.linkedid, event.caller_num, "after_hours"))

    async def _handle(self, items: Sequence[Missed]) -> None:
        for item in items:
            await self._one(item)

    async def _one(self, item: Missed) -> None:
        number = normalize(item.caller, self.region)
        if not number:
            return  # anonymous or not a number: nobody to text
        template = await self.messenger.template_by_name(self.rule.template)
        if template is None or template.channel != "sms":
            log.warning("missed-call SMS: no SMS template named %r", self.rule.template)
            return
        since = utcnow() - timedelta(seconds=self.rule.per_number_cooldown_s)
        async with self.messenger.db.session() as session:
            recent = await session.scalar(
                select(Message.id)
                .where(
                    Message.to_address == number,
                    Message.reason == "missed_call",
                    Message.created_at >= since,
                )
                .limit(1)
            )
            repeat = await session.scalar(
                select(Message.id).where(Message.linkedid == item.linkedid).limit(1)
            )
        if recent is not None or repeat is not None:
            return
        # two nodes handling the same call: the first to claim it queues the SMS
        await self.messenger.send_to_number(
            number,
            template,
            by="system",
            reason="missed_call",
            linkedid=item.linkedid,
            once="missed_call",
        )

    async def resume(self) -> None:
        """Take back what the last stop kept (before :meth:`start`)."""
        await self.worker.resume()

    def start(self) -> None:
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.close(grace_s=STOP_GRACE_S)
