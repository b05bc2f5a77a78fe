"""The daily digest: once per local day, from ``[messaging.digest] at`` (in ``[site]
timezone``), each agent gets an e-mail of its reminders for the day, and a supervisor
(a sales manager) one of its teams' agents' reminders.

Guarantees:

- **The worklist's reminders, not a copy**: items come from
  :class:`cti.services.ReminderSource` (the CRM's one reminder query, the same the
  desktop worklist shows); a follow-up due before the day is listed as overdue.
- **Once per person and local day**, across restarts and nodes: a row of
  ``msg_digests`` keyed by (login, day) is claimed by insert-or-ignore before the mail
  is sent; whoever did not insert it sends nothing. A failed send (SMTP unreachable or
  the address refused) is re-claimed by a conditional update on the next check, at most
  :data:`ATTEMPTS` times; a claim left ``sending`` for :data:`STALE` (the node died
  before recording the outcome) is re-claimed the same way, so a crash between claim and
  send loses no digest (a crash after the server took it but before the row says
  ``sent`` sends it twice: the window is one UPDATE).
- **People without an address are skipped and counted** (``without_address``); a
  digest with nothing in it is recorded ``empty`` and not mailed (``send_empty``).
- **Inert content**: the text part is plain; in the HTML alternative every value
  (customer names, titles, the person's name) is escaped and links are built from the
  configured base URL and the customer's numeric id only.
- **Time is a parameter**: :meth:`DailyDigest.run` takes ``now``; the feature's loop
  passes the wall clock, tests pass theirs.
"""

from __future__ import annotations

import html
import logging
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cti.services import Reminder, ReminderSource
from cti.store.db import Database
from cti.store.insert import insert_ignore
from cti.store.models import User, UserTeam
from messaging.claims import claimable
from messaging.config import DigestConfig
from messaging.mail import Mail, SmtpSender
from messaging.models import DigestAddress, DigestSent

__all__ = ["ATTEMPTS", "STALE", "DailyDigest", "DigestRun", "Person"]

log = logging.getLogger(__name__)

ATTEMPTS = 3  # a failed digest is tried again at most this many times in all
STALE = timedelta(minutes=10)  # a claim still "sending" after this is taken over

#: the digest's sections, in order: (key, heading)
SECTIONS = (
    ("overdue", "逾期跟进 / Overdue follow-ups"),
    ("follow_up", "今日跟进 / Follow-ups due today"),
    ("birthday", "生日 / Birthdays"),
    ("dormant", "久未联系 / Dormant customers"),
)


@dataclass(frozen=True, slots=True)
class Person:
    """Who gets a digest: ``agents`` are the agents whose reminders it lists (its own
    for an agent, its teams' for a supervisor)."""

    login: str
    name: str
    role: str
    agents: tuple[str, ...]


@dataclass
class DigestRun:
    """What one check did (``day`` None: not yet time today)."""

    day: date | None
    sent: int = 0
    empty: int = 0
    failed: int = 0
    without_address: int = 0
    already: int = 0  # done by an earlier check, a previous process or another node
    errors: list[str] = field(default_factory=list)


def _section(r: Reminder, day: date) -> str:
    if r.kind == "follow_up" and r.due is not None and r.due < day:
        return "overdue"
    return r.kind


class DailyDigest:
    def __init__(
        self,
        db: Database,
        config: DigestConfig,
        smtp: SmtpSender,
        tz: ZoneInfo,
        base_url: str,
        reminders: ReminderSource | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.smtp = smtp
        self.tz = tz
        self.base_url = base_url.rstrip("/")
        self.reminders = reminders
        hh, mm = config.at.split(":")
        self.at = time(int(hh), int(mm))

    def day_due(self, now: datetime) -> date | None:
        """The local day whose digest is due at ``now``, or None before ``at``."""
        local = now.astimezone(self.tz)
        return local.date() if local.time() >= self.at else None

    # --- who ---------------------------------------------------------------------------

    async def people(self) -> list[Person]:
        """Enabled agents linked to an ACD agent, and supervisors with agents in their
        teams (plus their own agent, if linked). Admins get none."""
        async with self.db.session() as session:
            users = (
                await session.scalars(
                    select(User)
                    .where(User.disabled_at.is_(None), User.role.in_(("agent", "supervisor")))
                    .order_by(User.login)
                )
            ).all()
            memberships = (await session.execute(select(UserTeam.user_id, UserTeam.team_id))).all()
        agent_of = {u.id: u.agent for u in users if u.role == "agent" and u.agent}
        teams_of: dict[int, set[int]] = {}
        for user_id, team_id in memberships:
            teams_of.setdefault(user_id, set()).add(team_id)
        out: list[Person] = []
        for u in users:
            if u.role == "agent":
                if u.agent:
                    out.append(Person(u.login, u.display_name or u.login, u.role, (u.agent,)))
                continue
            mine = teams_of.get(u.id, set())
            agents = {a for uid, a in agent_of.items() if teams_of.get(uid, set()) & mine}
            if u.agent:
                agents.add(u.agent)
            if agents:
                out.append(
                    Person(u.login, u.display_name or u.login, u.role, tuple(sorted(agents)))
                )
        return out

    # --- the idempotency row -----------------------------------------------------------

    async def _claim(
        self, session: AsyncSession, login: str, day: date, email: str, now: datetime
    ) -> bool:
        """True when this caller now owns (login, day): it inserted the row, or took over
        a failed one (attempts left) or a stale ``sending`` one."""
        inserted = await session.execute(
            insert_ignore(session, DigestSent, ["login", "day"]).values(
                login=login,
                day=day,
                status="sending",
                email=email,
                items=0,
                attempts=1,
                error="",
                message_id="",
                claimed_at=now,
            )
        )
        if inserted.rowcount == 1:  # type: ignore[attr-defined]
            return True
        retaken = await session.execute(
            update(DigestSent)
            .where(
                DigestSent.login == login,
                DigestSent.day == day,
                DigestSent.attempts < ATTEMPTS,
                claimable(
                    DigestSent.status,
                    DigestSent.claimed_at,
                    ready=("failed",),
                    now=now,
                    stale=STALE,
                ),
            )
            .values(status="sending", email=email, attempts=DigestSent.attempts + 1, claimed_at=now)
        )
        return bool(retaken.rowcount == 1)  # type: ignore[attr-defined]

    async def _record(
        self, login: str, day: date, status: str, *, items: int = 0, error: str = "", mid: str = ""
    ) -> None:
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(DigestSent)
                .where(DigestSent.login == login, DigestSent.day == day)
                .values(status=status, items=items, error=error[:1024], message_id=mid[:256])
            )

    # --- what --------------------------------------------------------------------------

    async def items_for(self, person: Person, day: date) -> list[Reminder]:
        if self.reminders is None:
            return []
        out: list[Reminder] = []
        for agent in person.agents:
            out.extend(await self.reminders.reminders_for(agent, day))
        return out

    def link(self, customer_id: int) -> str:
        return f"{self.base_url}/crm/customer.html?id={int(customer_id)}"

    def compose(self, person: Person, email: str, day: date, items: Sequence[Reminder]) -> Mail:
        """The mail: a text part and an HTML alternative of the same lines."""
        by_agent = person.role != "agent"
        groups: list[tuple[str, list[tuple[str, list[Reminder]]]]] = []
        agents = sorted({r.owner for r in items}) if by_agent else [""]
        for agent in agents:
            mine = [r for r in items if not by_agent or r.owner == agent]
            sections = [
                (heading, [r for r in mine if _section(r, day) == key]) for key, heading in SECTIONS
            ]
            groups.append((agent, [(h, rs) for h, rs in sections if rs]))
        title = f"{day.isoformat()} · {person.name}"
        text = [title, ""]
        page = [
            '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>',
            f"<h2>{html.escape(title)}</h2>",
        ]
        if not items:
            text.append("今天没有提醒 / Nothing to remind today.")
            page.append("<p>今天没有提醒 / Nothing to remind today.</p>")
        for agent, sections in groups:
            if by_agent:
                text += [f"== {agent} ==", ""]
                page.append(f"<h3>{html.escape(agent)}</h3>")
            for heading, rs in sections:
                text.append(f"{heading} ({len(rs)})")
                page.append(f"<h4>{html.escape(heading)} ({len(rs)})</h4><ul>")
                for r in rs:
                    detail = r.title
                    if r.kind == "follow_up" and r.due is not None:
                        detail = f"{r.title} ({r.due.isoformat()})"
                    link = self.link(r.customer_id)
                    text.append(f"  - {r.customer_name}: {detail}  {link}")
                    page.append(
                        f'<li><a href="{html.escape(link, quote=True)}">'
                        f"{html.escape(r.customer_name)}</a>: {html.escape(detail)}</li>"
                    )
                text.append("")
                page.append("</ul>")
        page.append("</body></html>")
        subject = f"{self.config.subject} {day.isoformat()}"
        return Mail(email, subject, "\n".join(text) + "\n", html="\n".join(page) + "\n")

    # --- one check ---------------------------------------------------------------------

    async def run(self, now: datetime) -> DigestRun:
        """Send the digests due at ``now`` that nobody sent yet (call it every minute)."""
        day = self.day_due(now)
        result = DigestRun(day)
        if day is None or not self.smtp.enabled:
            return result
        people = await self.people()
        async with self.db.session() as session:
            rows = await session.execute(select(DigestAddress.login, DigestAddress.email))
            addresses: dict[str, str] = {login: address for login, address in rows}
            finished = set(
                (
                    await session.scalars(
                        select(DigestSent.login).where(
                            DigestSent.day == day,
                            or_(
                                DigestSent.status.in_(("sent", "empty")),
                                DigestSent.attempts >= ATTEMPTS,
                            ),
                        )
                    )
                ).all()
            )
        outgoing: list[tuple[Person, Mail, int]] = []
        for person in people:
            email = addresses.get(person.login, "").strip()
            if not email:
                result.without_address += 1
                continue
            if person.login in finished:
                result.already += 1
                continue
            async with self.db.session() as session, session.begin():
                claimed = await self._claim(session, person.login, day, email, now)
            if not claimed:
                result.already += 1
                continue
            try:
                items = await self.items_for(person, day)
            except Exception as exc:  # the CRM failing: retried on a later check
                log.exception("digest of %s: reminders failed", person.login)
                await self._record(person.login, day, "failed", error=f"reminders: {exc}")
                result.failed += 1
                continue
            if not items and not self.config.send_empty:
                await self._record(person.login, day, "empty")
                result.empty += 1
                continue
            outgoing.append((person, self.compose(person, email, day, items), len(items)))
        if not outgoing:
            return result
        try:
            outcomes = await self.smtp.send([mail for _, mail, _ in outgoing])
        except (OSError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("daily digest: the SMTP server failed: %s", error)
            outcomes = [("", error)] * len(outgoing)
        for (person, _, count), (mid, error) in zip(outgoing, outcomes, strict=True):
            if mid:
                await self._record(person.login, day, "sent", items=count, mid=mid)
                result.sent += 1
            else:
                await self._record(person.login, day, "failed", items=count, error=error)
                result.failed += 1
                result.errors.append(f"{person.login}: {error}")
        return result

    # --- addresses (REST) --------------------------------------------------------------

    async def addresses(self) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            rows = await session.scalars(select(DigestAddress).order_by(DigestAddress.login))
            return [{"login": r.login, "email": r.email, "updated_by": r.updated_by} for r in rows]

    async def set_address(self, login: str, email: str, by: str) -> dict[str, Any]:
        async with self.db.session() as session, session.begin():
            row = await session.get(DigestAddress, login)
            if not email:
                if row is not None:
                    await session.delete(row)
                return {"login": login, "email": ""}
            if row is None:
                row = DigestAddress(login=login, email=email, updated_by=by[:128])
                session.add(row)
            else:
                row.email, row.updated_by = email, by[:128]
            return {"login": login, "email": email, "updated_by": by[:128]}

    async def days(self, day: date) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(DigestSent).where(DigestSent.day == day).order_by(DigestSent.login)
            )
            return [
                {
                    "login": r.login,
                    "status": r.status,
                    "email": r.email,
                    "items": r.items,
                    "attempts": r.attempts,
                    "error": r.error,
                }
                for r in rows
            ]
