"""Sending: one message to a customer, a mass send to a filtered customer list, opt-outs,
and the record of every message (the customer's timeline reads it).

Guarantees (the outbox):

- **Recorded before sent.** Every message is a ``msg_messages`` row first, status
  ``queued`` (or ``opted_out`` when its address opted out: never sent, still on the
  timeline), committed before anything is sent: with the API's accept, or for a
  rule-triggered message in the same transaction as the rule's claim
  (:func:`cti.cluster.once.claim_once`), so a claimed message is never lost to a node that
  dies.
- **One sender per message.** Every node drains queued rows from the store: a row is
  claimed by a conditional UPDATE (``queued`` -> ``sending``, ``claimed_by``,
  ``claimed_at``; :mod:`messaging.claims`) right before it is sent; of two nodes (or two
  senders) only one gets it. The outcome is recorded: ``sent`` with the gateway's / SMTP
  server's id, or ``failed`` with the reason; a transient failure (the gateway or SMTP
  server unreachable) is retried ``attempts`` times with backoff first.
- **Taken over from a dead node.** A row still ``sending`` after ``sending_stale_s`` is
  claimed again by any node (checked at start and every ``outbox_poll_s``): at least
  once in that narrow window (the dead node may have handed it to the gateway just before
  dying, between the send and the UPDATE that says ``sent``). A row claimed
  :data:`CLAIMS` times without an outcome is ``failed``.
- **A campaign never delays an agent's message.** Single messages (and rule-triggered
  ones) and mass sends are drained by two loops; mass sends go out at most
  ``mass_per_second`` across every node together: each mass message claimed waits for a
  permit of the rate the nodes share in the store (:class:`messaging.throttle.SharedRate`)
  before it is sent, and each node spaces its own mass sends ``1 / mass_per_second``
  apart (no burst at a slot's start). Messages
  queued on this node are sent at once; those queued elsewhere (or left by a restart)
  within ``outbox_poll_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update

from cti.cluster.once import claim_once
from cti.principal import Principal
from cti.services import CustomerRecipients, Recipient
from cti.store.db import Database
from cti.store.models import utcnow
from cti.tasks import BackgroundTasks
from messaging.claims import claimable
from messaging.config import MessagingConfig
from messaging.mail import Mail, SmtpSender
from messaging.models import Batch, Message, OptOut, Template
from messaging.sms import SmsError, SmsProvider, SmsReceipts
from messaging.templates import fields_of, render
from messaging.throttle import SharedRate

__all__ = ["CLAIMS", "MessagingError", "Messenger"]

log = logging.getLogger(__name__)

CLAIMS = 3  # a message claimed this many times without an outcome (nodes dying) fails


class MessagingError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Outgoing:
    channel: str
    to: str
    subject: str
    body: str
    provider_template: str
    params: dict[str, str]


def address_key(channel: str, address: str) -> str:
    return address.strip().lower() if channel == "email" else address.strip()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_dict(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "customer_id": m.customer_id,
        "channel": m.channel,
        "to": m.to_address,
        "subject": m.subject,
        "body": m.body,
        "status": m.status,
        "error": m.error,
        "provider_id": m.provider_id,
        "reason": m.reason,
        "batch_id": m.batch_id,
        "linkedid": m.linkedid,
        "created_by": m.created_by,
        "created_at": iso(m.created_at),
        "sent_at": iso(m.sent_at),
    }


def template_dict(t: Template) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "channel": t.channel,
        "subject": t.subject,
        "body": t.body,
        "provider_template": t.provider_template,
    }


class Messenger:
    def __init__(
        self,
        db: Database,
        config: MessagingConfig,
        *,
        sms: SmsProvider | None,
        smtp: SmtpSender,
        recipients: CustomerRecipients | None = None,
        attempts: int = 3,
        retry_s: float = 1.0,
        node: str = "",
    ) -> None:
        self.db = db
        self.config = config
        self.sms = sms
        self.smtp = smtp
        self.recipients = recipients
        self.attempts = attempts
        self.retry_s = retry_s
        # who claims rows (a restarted process is another claimant)
        self.node = f"{node or socket.gethostname()}:{os.getpid()}:{id(self):x}"[:128]
        self.stale = timedelta(seconds=config.sending_stale_s)
        self.mass_rate = SharedRate(db, "mass", config.mass_per_second)
        self._wake = {False: asyncio.Event(), True: asyncio.Event()}  # by "mass"
        self._stopping = asyncio.Event()
        self._tasks = BackgroundTasks("messages")
        self._started = False

    def start(self) -> None:
        """Drain the outbox: single messages and mass sends, each in a loop of its own."""
        self._started = True
        self._stopping.clear()
        self._tasks.spawn(self._drain_loop(mass=False), "outbox")
        self._tasks.spawn(self._drain_loop(mass=True), "outbox-mass")

    async def flush(self) -> None:
        """Until no message is left queued (or sending by this node). Not started: drains
        them here (mass ones unthrottled)."""
        while True:
            if not self._started:
                await self.drain(mass=False)
                await self.drain(mass=True, throttle=False)
            async with self.db.session() as session:
                left = await session.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(
                        (Message.status == "queued")
                        | ((Message.status == "sending") & (Message.claimed_by == self.node))
                    )
                )
            if not left:
                return
            self._kick()
            await asyncio.sleep(0.05)

    async def stop(self, grace_s: float = 10.0) -> None:
        """The message in hand is finished (at most ``grace_s``); queued ones stay queued."""
        self._stopping.set()
        self._kick()
        self._started = False
        await self._tasks.drain(grace_s)
        await self._tasks.stop()

    def _recipients(self) -> CustomerRecipients:
        if self.recipients is None:
            raise MessagingError("customers are not available (the CRM is not loaded)", 503)
        return self.recipients

    # --- templates ---------------------------------------------------------------------

    async def templates(self) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            rows = await session.scalars(select(Template).order_by(Template.name))
            return [template_dict(t) for t in rows]

    async def template(self, session: Any, template_id: int) -> Template:
        t = await session.get(Template, template_id)
        if t is None:
            raise MessagingError(f"template {template_id} not found", 404)
        return t  # type: ignore[no-any-return]

    async def template_by_name(self, name: str) -> Template | None:
        async with self.db.session() as session:
            t: Template | None = await session.scalar(select(Template).where(Template.name == name))
            return t

    async def save_template(
        self, data: Mapping[str, Any], template_id: int | None
    ) -> dict[str, Any]:
        async with self.db.session() as session, session.begin():
            if template_id is None:
                clash = await session.scalar(
                    select(Template.id).where(Template.name == data["name"])
                )
                if clash is not None:
                    raise MessagingError(f"a template named {data['name']!r} exists", 409)
                t = Template(**data)
                session.add(t)
            else:
                t = await self.template(session, template_id)
                for k, v in data.items():
                    setattr(t, k, v)
            await session.flush()
            return template_dict(t)

    async def delete_template(self, template_id: int) -> None:
        async with self.db.session() as session, session.begin():
            t = await self.template(session, template_id)
            await session.delete(t)

    # --- opt-outs ----------------------------------------------------------------------

    async def opted_out(self, session: Any, channel: str, addresses: Sequence[str]) -> set[str]:
        keys = {address_key(channel, a) for a in addresses}
        if not keys:
            return set()
        rows = await session.scalars(
            select(OptOut.address).where(OptOut.channel == channel, OptOut.address.in_(keys))
        )
        return set(rows)

    async def add_opt_out(self, channel: str, address: str, reason: str, by: str) -> dict[str, Any]:
        key = address_key(channel, address)
        async with self.db.session() as session, session.begin():
            row = await session.scalar(
                select(OptOut).where(OptOut.channel == channel, OptOut.address == key)
            )
            if row is None:
                row = OptOut(channel=channel, address=key, reason=reason, created_by=by)
                session.add(row)
                await session.flush()
            return {
                "id": row.id,
                "channel": row.channel,
                "address": row.address,
                "reason": row.reason,
                "created_by": row.created_by,
            }

    async def remove_opt_out(self, opt_out_id: int) -> bool:
        async with self.db.session() as session, session.begin():
            result = await session.execute(delete(OptOut).where(OptOut.id == opt_out_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def opt_outs(self, limit: int) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            rows = await session.scalars(select(OptOut).order_by(OptOut.id.desc()).limit(limit))
            return [
                {
                    "id": r.id,
                    "channel": r.channel,
                    "address": r.address,
                    "reason": r.reason,
                    "created_by": r.created_by,
                    "created_at": iso(r.created_at),
                }
                for r in rows
            ]

    # --- composing ---------------------------------------------------------------------

    def _channel_ready(self, channel: str) -> None:
        if channel == "sms" and self.sms is None:
            raise MessagingError("SMS is not configured ([messaging.sms] provider)", 503)
        if channel == "email" and not self.smtp.enabled:
            raise MessagingError("e-mail is not configured ([messaging.smtp] host, sender)", 503)

    @staticmethod
    def _address(r: Recipient, channel: str, to: str | None) -> str | None:
        choices = r.phones if channel == "sms" else r.emails
        if to is not None:
            wanted = address_key(channel, to)
            return next((a for a in choices if address_key(channel, a) == wanted), None)
        return choices[0] if choices else None

    @staticmethod
    def _compose(t: Template, r: Recipient | None, extra: Mapping[str, str], to: str) -> Outgoing:
        values = {**(dict(r.fields) if r else {}), **extra}
        return Outgoing(
            t.channel,
            to,
            render(t.subject, values)[:256],
            render(t.body, values)[:4096],
            t.provider_template,
            {k: v[:256] for k, v in values.items()},
        )

    async def _record(
        self,
        session: Any,
        out: Outgoing,
        *,
        customer_id: int | None,
        template_id: int | None,
        opted_out: bool,
        by: str,
        reason: str,
        batch_id: int | None = None,
        linkedid: str = "",
    ) -> Message:
        m = Message(
            customer_id=customer_id,
            channel=out.channel,
            to_address=out.to,
            template_id=template_id,
            batch_id=batch_id,
            subject=out.subject,
            body=out.body,
            params=json.dumps(out.params, ensure_ascii=False),
            status="opted_out" if opted_out else "queued",
            created_by=by[:128],
            reason=reason,
            linkedid=linkedid,
        )
        session.add(m)
        await session.flush()
        return m

    async def send_to_customer(
        self,
        customer_id: int,
        template_id: int,
        actor: Principal,
        *,
        to: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        r = await self._recipients().recipient(customer_id, actor)
        if r is None:
            raise MessagingError(f"customer {customer_id} not found", 404)
        async with self.db.session() as session, session.begin():
            t = await self.template(session, template_id)
            self._channel_ready(t.channel)
            address = self._address(r, t.channel, to)
            if address is None:
                what = "phone number" if t.channel == "sms" else "e-mail address"
                raise MessagingError(f"the customer has no such {what}")
            out = self._compose(t, r, {"agent": actor.name, **(extra or {})}, address)
            blocked = bool(await self.opted_out(session, t.channel, [address]))
            m = await self._record(
                session,
                out,
                customer_id=r.customer_id,
                template_id=t.id,
                opted_out=blocked,
                by=actor.name,
                reason="manual",
            )
            result = message_dict(m)
        if not blocked:
            self._kick(mass=False)
        return result

    async def send_to_number(
        self,
        e164: str,
        template: Template,
        *,
        by: str,
        reason: str,
        linkedid: str = "",
        once: str = "",
    ) -> dict[str, Any] | None:
        """An SMS to a caller (the missed-call rule): the customer owning the number, if any,
        gets it on its timeline. With ``once`` (a rule's name), ``(once, linkedid)`` is
        claimed in the transaction that queues the message (:func:`claim_once`): None
        when another node or an earlier call claimed it."""
        r = await self.recipients.by_number(e164) if self.recipients is not None else None
        async with self.db.session() as session, session.begin():
            if once and not await claim_once(session, once, linkedid):
                return None
            out = self._compose(template, r, {}, e164)
            blocked = bool(await self.opted_out(session, "sms", [e164]))
            m = await self._record(
                session,
                out,
                customer_id=r.customer_id if r else None,
                template_id=template.id,
                opted_out=blocked,
                by=by,
                reason=reason,
                linkedid=linkedid,
            )
            result = message_dict(m)
        if not blocked:
            self._kick(mass=False)
        return result

    async def _audience(
        self, query: Mapping[str, str], template_id: int, actor: Principal
    ) -> tuple[Template, list[tuple[Recipient, str | None]], set[str]]:
        recips = await self._recipients().recipients(query, actor, self.config.mass_max + 1)
        if len(recips) > self.config.mass_max:
            raise MessagingError(
                f"more than {self.config.mass_max} customers: narrow the list (mass_max)"
            )
        async with self.db.session() as session:
            t = await self.template(session, template_id)
            pairs = [(r, self._address(r, t.channel, None)) for r in recips]
            blocked = await self.opted_out(session, t.channel, [a for _, a in pairs if a])
        return t, pairs, blocked

    async def preview(
        self, query: Mapping[str, str], template_id: int, actor: Principal
    ) -> dict[str, Any]:
        t, pairs, blocked = await self._audience(query, template_id, actor)
        sendable = [(r, a) for r, a in pairs if a and address_key(t.channel, a) not in blocked]
        sample = None
        if sendable:
            r, a = sendable[0]
            out = self._compose(t, r, {"agent": actor.name}, a or "")
            sample = {"to": out.to, "subject": out.subject, "body": out.body}
        return {
            "customers": len(pairs),
            "without_address": sum(1 for _, a in pairs if not a),
            "opted_out": sum(1 for _, a in pairs if a and address_key(t.channel, a) in blocked),
            "to_send": len(sendable),
            "seconds": round(len(sendable) / self.config.mass_per_second, 1),
            "sample": sample,
        }

    async def mass_send(
        self, query: Mapping[str, str], template_id: int, actor: Principal
    ) -> dict[str, Any]:
        t, pairs, blocked = await self._audience(query, template_id, actor)
        self._channel_ready(t.channel)
        ids: list[int] = []
        async with self.db.session() as session, session.begin():
            batch = Batch(
                template_id=t.id,
                channel=t.channel,
                query=json.dumps(dict(query), ensure_ascii=False),
                created_by=actor.name[:128],
            )
            session.add(batch)
            await session.flush()
            skipped = 0
            for r, address in pairs:
                if not address:
                    skipped += 1
                    continue
                out = self._compose(t, r, {"agent": actor.name}, address)
                is_blocked = address_key(t.channel, address) in blocked
                m = await self._record(
                    session,
                    out,
                    customer_id=r.customer_id,
                    template_id=t.id,
                    opted_out=is_blocked,
                    by=actor.name,
                    reason="mass",
                    batch_id=batch.id,
                )
                if not is_blocked:
                    ids.append(m.id)
            batch.total = len(ids)
            batch.skipped = skipped
            batch_id = batch.id
        if ids:
            self._kick(mass=True)
        return await self.batch(batch_id)

    async def batch(self, batch_id: int) -> dict[str, Any]:
        async with self.db.session() as session:
            b = await session.get(Batch, batch_id)
            if b is None:
                raise MessagingError(f"batch {batch_id} not found", 404)
            rows = (
                (await session.execute(select(Message.status).where(Message.batch_id == batch_id)))
                .scalars()
                .all()
            )
        counts = {s: rows.count(s) for s in ("queued", "sending", "sent", "failed", "opted_out")}
        return {
            "id": b.id,
            "channel": b.channel,
            "template_id": b.template_id,
            "total": b.total,
            "skipped": b.skipped,
            "created_by": b.created_by,
            "created_at": iso(b.created_at),
            **counts,
        }

    async def for_customer(
        self, customer_id: int, actor: Principal, limit: int
    ) -> list[dict[str, Any]]:
        if await self._recipients().recipient(customer_id, actor) is None:
            raise MessagingError(f"customer {customer_id} not found", 404)
        async with self.db.session() as session:
            rows = await session.scalars(
                select(Message)
                .where(Message.customer_id == customer_id)
                .order_by(Message.id.desc())
                .limit(limit)
            )
            return [message_dict(m) for m in rows]

    # --- delivery ----------------------------------------------------------------------

    async def _deliver(self, m: Message) -> tuple[str, str, str]:
        """(status, provider id, error) after up to ``attempts`` tries."""
        values = json.loads(m.params or "{}")
        template, params = "", {}
        if m.template_id is not None:
            async with self.db.session() as session:
                t = await session.get(Template, m.template_id)
            if t is not None:
                # the gateway gets the template's fields in their order of first use (Tencent's
                # values are positional: {1}, {2}...)
                template = t.provider_template
                params = {k: str(values.get(k, "")) for k in fields_of(t.body)}
        last = ""
        for attempt in range(self.attempts):
            try:
                if m.channel == "sms":
                    if self.sms is None:
                        return "failed", "", "SMS is not configured"
                    res = await self.sms.send(
                        m.to_address, m.body, template=template, params=params
                    )
                    return (
                        ("sent", res.provider_id, "") if res.accepted else ("failed", "", res.error)
                    )
                if not self.smtp.enabled:
                    return "failed", "", "e-mail is not configured"
                [(mid, error)] = await self.smtp.send([Mail(m.to_address, m.subject, m.body)])
                return ("sent", mid[:128], "") if mid else ("failed", "", error)
            except (SmsError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                log.warning("message %d: attempt %d failed: %s", m.id, attempt + 1, last)
                await asyncio.sleep(self.retry_s * (2**attempt))
            except Exception as exc:  # smtplib errors and the like: not worth retrying
                return "failed", "", f"{type(exc).__name__}: {exc}"[:1024]
        return "failed", "", last[:1024]

    # --- the outbox ---------------------------------------------------------------------

    def _kick(self, mass: bool | None = None) -> None:
        """Wake this node's drain loops (a message was queued here, or stop)."""
        for kind, event in self._wake.items():
            if mass is None or kind == mass:
                event.set()

    async def _drain_loop(self, *, mass: bool) -> None:
        while not self._stopping.is_set():
            try:
                await self.drain(mass=mass)
            except Exception:  # the store unreachable: next time
                log.exception("outbox: draining failed")
            event = self._wake[mass]
            try:
                await asyncio.wait_for(event.wait(), self.config.outbox_poll_s)
            except TimeoutError:
                pass
            event.clear()

    async def drain(self, *, mass: bool, throttle: bool = True, limit: int = 100) -> int:
        """Send what is claimable now (single messages, or with ``mass`` those of mass
        sends, throttled to ``mass_per_second``), oldest first; returns how many this
        caller sent. Rows taken over too often fail here."""
        now = utcnow()
        which = Message.batch_id.is_not(None) if mass else Message.batch_id.is_(None)
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(Message)
                .where(
                    which,
                    Message.status == "sending",
                    Message.claimed_at < now - self.stale,
                    Message.attempts >= CLAIMS,
                )
                .values(
                    status="failed",
                    error=f"claimed {CLAIMS} times by nodes that did not finish sending it",
                )
            )
        async with self.db.session() as session:
            ids = (
                await session.scalars(
                    select(Message.id)
                    .where(
                        which,
                        self._claimable(now),
                    )
                    .order_by(Message.id)
                    .limit(limit)
                )
            ).all()
        sent = 0
        loop = asyncio.get_running_loop()
        for message_id in ids:
            if self._stopping.is_set():
                break
            started = loop.time()
            m = await self.claim(message_id)
            if m is None:
                continue  # another sender has it
            # then the cluster's rate (claimed first, so no permit goes to a message
            # another node sends); stopping meanwhile puts the message back
            if mass and throttle and not await self.mass_rate.acquire(self._stopping):
                await self._unclaim(m.id)
                break
            await self._send(m)
            sent += 1
            if mass and throttle:  # and this node's own pace: no bursts
                pause = 1.0 / self.config.mass_per_second - (loop.time() - started)
                if pause > 0:
                    try:
                        await asyncio.wait_for(self._stopping.wait(), pause)
                    except TimeoutError:
                        pass
        return sent

    def _claimable(self, now: datetime) -> ColumnElement[bool]:
        return claimable(
            Message.status, Message.claimed_at, ready=("queued",), now=now, stale=self.stale
        )

    async def claim(self, message_id: int) -> Message | None:
        """The message, now ``sending`` by this node; None when someone else claimed it."""
        now = utcnow()
        async with self.db.session() as session, session.begin():
            result = await session.execute(
                update(Message)
                .where(
                    Message.id == message_id,
                    Message.attempts < CLAIMS,
                    self._claimable(now),
                )
                .values(
                    status="sending",
                    claimed_by=self.node,
                    claimed_at=now,
                    attempts=Message.attempts + 1,
                )
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
        async with self.db.session() as session:
            m: Message | None = await session.get(Message, message_id)
            return m

    async def _unclaim(self, message_id: int) -> None:
        """This node claimed the message and will not send it (stopping): queued again."""
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "sending",
                       Message.claimed_by == self.node)
                .values(status="queued", attempts=Message.attempts - 1)
            )  # fmt: skip

    async def _send(self, m: Message) -> None:
        status, provider_id, error = await self._deliver(m)
        async with self.db.session() as session, session.begin():
            result = await session.execute(
                update(Message)
                .where(
                    Message.id == m.id,
                    Message.status == "sending",
                    Message.claimed_by == self.node,
                )
                .values(
                    status=status,
                    provider_id=provider_id,
                    error=error[:1024],
                    sent_at=utcnow() if status == "sent" else None,
                )
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            log.warning("message %d: %s here, but another node took it over", m.id, status)

    async def poll_receipts(self, within: timedelta = timedelta(days=1)) -> int:
        """Ask the SMS gateway what became of SMS ``sent`` in the last ``within``: those it
        delivered become ``delivered``, those it could not ``failed`` (with its reason).
        Returns how many changed."""
        if self.sms is None or not isinstance(self.sms, SmsReceipts):
            return 0
        since = utcnow() - within
        async with self.db.session() as session:
            rows = (
                await session.scalars(
                    select(Message)
                    .where(
                        Message.channel == "sms",
                        Message.status == "sent",
                        Message.sent_at >= since,
                        Message.provider_id != "",
                    )
                    .order_by(Message.id)
                    .limit(500)
                )
            ).all()
        changed = 0
        for m in rows:
            assert m.sent_at is not None
            try:
                outcome = await self.sms.receipt(m.provider_id, m.to_address, m.sent_at)
            except SmsError as exc:
                log.warning("delivery receipts: %s", exc)
                return changed
            if outcome is None:
                continue
            async with self.db.session() as session, session.begin():
                row = await session.get(Message, m.id)
                if row is not None and row.status == "sent":
                    if outcome == "delivered":
                        row.status = "delivered"
                    else:
                        row.status, row.error = "failed", outcome[:1024]
                    changed += 1
        return changed
