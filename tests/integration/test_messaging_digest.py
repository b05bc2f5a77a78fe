"""The daily digest (messaging.digest) on SQLite and PostgreSQL, mailed to a real SMTP
server (aiosmtpd), with the CRM's own reminder query and a clock the test sets: nothing
before the configured local time; then each agent its reminders (overdue, due today,
birthdays, dormant) with links to the customer pages, HTML escaped with a text
alternative; a supervisor its team's; people without an address counted; once per person
and day across a restart, a second node racing, a failed SMTP server (retried) and a
node that died after claiming."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from crm_bridge.access import Actor
from crm_bridge.config import CrmConfig
from crm_bridge.models import Customer
from crm_bridge.opportunities import StoreReminders
from crm_bridge.pool import Pool
from crm_bridge.schemas import CustomerIn, LeadIn
from crm_bridge.store import CrmStore
from cti.store.db import Database
from cti.store.models import Team, User, UserTeam
from messaging.config import DigestConfig, SmtpConfig
from messaging.digest import STALE, DailyDigest
from messaging.feature import MessagingFeature
from messaging.mail import SmtpSender
from messaging.models import DigestSent
from tests.acceptance.harness import free_port
from tests.integration.test_crm_harness import crm_server

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 12, 1)
EVIL = "<img src=x onerror=alert(1)>"
BASE = "https://cti.example.cn"


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(email.message_from_bytes(envelope.original_content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.mails if m["To"] == address]


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def local(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def sender(port: int) -> SmtpSender:
    return SmtpSender(
        SmtpConfig(host="127.0.0.1", port=port, security="none", sender="CTI <cti@example.cn>")
    )


def digest_on(db: Database, port: int, pool: Pool) -> DailyDigest:
    return DailyDigest(
        db,
        DigestConfig(enabled=True, at="08:00"),
        sender(port),
        SHANGHAI,
        BASE,
        StoreReminders(pool, CrmConfig().dormant_days),
    )


def parts(mail: Message) -> tuple[str, str]:
    assert mail.get_content_type() == "multipart/alternative"
    text = html = ""
    for part in mail.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
        elif part.get_content_type() == "text/html":
            html = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return text, html


async def _people(db: Database) -> None:
    async with db.session() as session, session.begin():
        for login, role, agent in (
            ("alice", "agent", "1001"),
            ("bob", "agent", "1002"),
            ("carol", "agent", "1003"),
            ("mgr", "supervisor", None),
            ("root", "admin", None),
        ):
            session.add(User(login=login, role=role, agent=agent, password_hash="x"))
        session.add(Team(name="sales", queues=[]))
        await session.flush()
        users = {u.login: u.id for u in (await session.scalars(select(User))).all()}
        team = (await session.scalars(select(Team.id))).one()
        for login in ("alice", "bob", "mgr"):
            session.add(UserTeam(user_id=users[login], team_id=team))


async def _customers(db: Database) -> tuple[Pool, dict[str, int]]:
    store = CrmStore(db, "CN")
    pool = Pool(store)
    sup = Actor("sup", "supervisor")
    ids: dict[str, int] = {}
    for key, name, owner, birthday in (
        ("evil", EVIL, "1001", date(1990, 12, 1)),  # birthday today
        ("acme", "ACME & Sons", "1001", None),
        ("sleepy", "Sleepy Ltd", "1001", None),
        ("bobs", "Bob's client", "1002", None),
        ("other", "Not mine", "1003", date(1985, 12, 2)),  # birthday tomorrow
    ):
        c = await store.create_customer(
            CustomerIn(name=name, owner=owner, birthday=birthday, force=True), sup
        )
        ids[key] = c["id"]
    await pool.create_lead(
        LeadIn(customer_id=ids["acme"], title="Quote </ul>", owner="1001", follow_up_on=DAY), sup
    )
    await pool.create_lead(
        LeadIn(
            customer_id=ids["evil"],
            title="Renewal",
            owner="1001",
            follow_up_on=DAY - timedelta(days=2),
        ),
        sup,
    )
    await pool.create_lead(
        LeadIn(customer_id=ids["bobs"], title="Bob's deal", owner="1002", follow_up_on=DAY), sup
    )
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.session() as session, session.begin():
        await session.execute(
            update(Customer).values(last_contact_at=datetime(2026, 11, 28, tzinfo=UTC))
        )
        await session.execute(
            update(Customer).where(Customer.id == ids["sleepy"]).values(last_contact_at=long_ago)
        )
    return pool, ids


async def test_daily_digest_once_per_person_and_day(db: Database, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    await _people(db)
    pool, ids = await _customers(db)
    digest = digest_on(db, port, pool)
    for login, address in (("alice", "alice@example.cn"), ("carol", "carol@example.cn"),
                           ("mgr", "mgr@example.cn")):  # fmt: skip
        await digest.set_address(login, address, "root")

    # 07:59 in Shanghai: not yet
    early = await digest.run(local(DAY, 7, 59))
    assert early.day is None and inbox.mails == []

    first = await digest.run(local(DAY, 8, 0))
    assert (first.day, first.sent, first.empty, first.without_address, first.failed) == (
        DAY,
        2,
        1,
        1,
        0,
    )  # fmt: skip  (alice + mgr sent, carol nothing to remind, bob no address)
    assert len(inbox.mails) == 2
    [mail] = inbox.to("alice@example.cn")
    text, html = parts(mail)
    # the text part: every section, raw values (plain text is inert), links per customer
    for heading in ("Overdue follow-ups (1)", "Follow-ups due today (1)", "Birthdays (1)",
                    "Dormant customers (1)"):  # fmt: skip
        assert heading in text, text
    assert f"{EVIL}: Renewal ({(DAY - timedelta(days=2)).isoformat()})" in text
    assert f"ACME & Sons: Quote </ul> ({DAY.isoformat()})" in text
    assert f"{BASE}/crm/customer.html?id={ids['sleepy']}" in text
    assert "Bob's" not in text and "Not mine" not in text  # only alice's customers
    # the HTML part: escaped, links to the customer pages
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Quote &lt;/ul&gt;" in html and "ACME &amp; Sons" in html
    assert f'<a href="{BASE}/crm/customer.html?id={ids["evil"]}">' in html
    # the manager: its team's agents (alice, bob), not carol's
    [manager] = inbox.to("mgr@example.cn")
    text, html = parts(manager)
    assert "== 1001 ==" in text and "== 1002 ==" in text and "1003" not in text
    assert "Bob's deal" in text and "Not mine" not in text

    # again, after a restart (a new process on the same database), and on a second node
    assert (await digest.run(local(DAY, 8, 1))).already == 3
    node2 = Database.from_url(db.url)
    try:
        again = await digest_on(node2, port, Pool(CrmStore(node2, "CN"))).run(local(DAY, 9, 0))
        assert (again.sent, again.already) == (0, 3)
        assert len(inbox.mails) == 2

        # the next day, two nodes at once: each person's digest exactly once
        nxt = DAY + timedelta(days=1)
        a, b = await asyncio.gather(
            digest.run(local(nxt, 8, 0)),
            digest_on(node2, port, Pool(CrmStore(node2, "CN"))).run(local(nxt, 8, 0)),
        )
        # alice and mgr (overdue follow-ups), carol (the birthday of "Not mine", 2 December)
        assert a.sent + b.sent == 3 and a.already + b.already == 3, (a, b)
        assert len(inbox.to("alice@example.cn")) == 2 and len(inbox.to("mgr@example.cn")) == 2
        assert len(inbox.to("carol@example.cn")) == 1
    finally:
        await node2.dispose()

    # the SMTP server unreachable: failed, and sent by a later check
    day3 = DAY + timedelta(days=2)
    dead = DailyDigest(db, digest.config, sender(free_port()), SHANGHAI, BASE, digest.reminders)
    down = await dead.run(local(day3, 8, 0))
    assert down.failed == 2 and down.sent == 0 and len(down.errors) == 2
    up = await digest.run(local(day3, 8, 1))
    assert up.sent == 2
    assert {r["login"]: (r["status"], r["attempts"]) for r in await digest.days(day3)} == {
        "alice": ("sent", 2), "carol": ("empty", 1), "mgr": ("sent", 2),
    }  # fmt: skip

    # a node died after claiming (row left "sending"): taken over once it is stale
    day4 = DAY + timedelta(days=3)
    async with db.session() as session, session.begin():
        session.add(DigestSent(login="alice", day=day4, status="sending",
                               email="alice@example.cn", claimed_at=local(day4, 8, 0)))  # fmt: skip
    fresh = await digest.run(local(day4, 8, 1))
    assert "alice" not in {r["login"] for r in await digest.days(day4) if r["status"] == "sent"}
    assert fresh.already >= 1
    later = await digest.run(local(day4, 8, 0) + STALE + timedelta(seconds=1))
    assert later.sent == 1 and len(inbox.to("alice@example.cn")) == 4


async def test_digest_in_the_daemon_with_its_rest_routes(
    db: Database, smtp: tuple[Inbox, int]
) -> None:
    """The messaging feature beside the CRM: the digest reads the CRM's reminders through
    the services; addresses set over REST (an admin anyone's, an agent not another's,
    refused when not an address); the day's status readable by a supervisor."""
    inbox, port = smtp
    await _people(db)
    messaging = MessagingFeature()
    sections = {
        "messaging": {
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                     "sender": "CTI <cti@example.cn>"},
            "digest": {"enabled": False, "at": "07:30", "base_url": BASE + "/"},
        },
        "site": {"timezone": "Asia/Shanghai"},
    }  # fmt: skip
    async with crm_server(db, sections=sections, features=[messaging]) as crm:
        _, ids = await _customers(db)
        path = "/api/v1/digest/addresses/alice"
        assert (await crm.call("agent1", "PUT", path, json={"email": "a@example.cn"}))[0] == 403
        for bad in ("not an address", "a@b.cn\r\nBcc: x@y.cn", "<a@b.cn>"):
            assert (await crm.call("admin", "PUT", path, json={"email": bad}))[0] == 400
        status, body = await crm.call("admin", "PUT", path, json={"email": "alice@example.cn"})
        assert status == 200 and body["email"] == "alice@example.cn"
        status, body = await crm.call("sup", "GET", "/api/v1/digest/addresses")
        assert status == 200 and [a["login"] for a in body["addresses"]] == ["alice"]
        assert (await crm.call("agent1", "GET", "/api/v1/digest/addresses"))[0] == 403

        assert messaging.digest is not None
        run = await messaging.digest.run(local(DAY, 7, 30))
        assert (run.sent, run.without_address) == (1, 3)  # bob, carol, mgr: no address
        [mail] = inbox.to("alice@example.cn")
        assert f"{BASE}/crm/customer.html?id={ids['acme']}" in parts(mail)[0]
        status, body = await crm.call("sup", "GET", f"/api/v1/digest/days?date={DAY}")
        assert status == 200 and body["digests"] == [
            {"login": "alice", "status": "sent", "email": "alice@example.cn", "items": 4,
             "attempts": 1, "error": ""},
        ]  # fmt: skip
