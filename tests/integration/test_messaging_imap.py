"""Customers' e-mail replies fetched from a REAL IMAP server (dovecot, started by the test
with its own configuration: tests/acceptance/imap_server.py) and filed on their timeline,
on SQLite and PostgreSQL: by a reference to one of our sent e-mails or by the sender's
known address; once per Message-ID (a copy, a second poll, a second node); bodies as
text (HTML reduced to its text, scripts dropped), attachments never read, an oversized
message filed from its headers; unknown senders not filed; everything marked seen."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from crm_bridge.access import Actor
from crm_bridge.recipients import StoreRecipients
from crm_bridge.schemas import CustomerIn
from crm_bridge.store import CrmStore
from cti.store.db import Database
from messaging.config import ImapConfig
from messaging.feature import MessagingFeature
from messaging.imap import ImapFetcher
from messaging.models import Message
from tests.acceptance.harness import wait_for
from tests.acceptance.imap_server import ImapServer, dovecot
from tests.integration.test_crm_harness import crm_server

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def imap() -> Iterator[ImapServer]:
    with dovecot() as server:
        yield server


def mail(
    sender: str,
    message_id: str,
    subject: str,
    text: str | None = None,
    html: str | None = None,
    *,
    in_reply_to: str = "",
    attachment: bytes = b"",
) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "service@example.cn"
    m["Subject"] = subject
    m["Message-ID"] = message_id
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = f"<older@example.cn> {in_reply_to}"
    if text is not None:
        m.set_content(text)
        if html is not None:
            m.add_alternative(html, subtype="html")
    elif html is not None:
        m.set_content(html, subtype="html")
    if attachment:
        m.add_attachment(attachment, maintype="application", subtype="octet-stream",
                         filename="report.html")  # fmt: skip
    return bytes(m)


def fetcher(db: Database, imap: ImapServer, store: CrmStore) -> ImapFetcher:
    config = ImapConfig(
        host=imap.host, port=imap.port, security="none", username=imap.username,
        password=imap.password, max_bytes=200_000,
    )  # fmt: skip
    return ImapFetcher(db, config, StoreRecipients(store))


async def test_replies_filed_once_as_text(db: Database, imap: ImapServer) -> None:
    await asyncio.to_thread(imap.clear)
    store = CrmStore(db, "CN")
    sup = Actor("sup", "supervisor")
    wang = (
        await store.create_customer(CustomerIn(name="王小明", emails=["Wang@Example.cn"]), sup)
    )["id"]
    li = (await store.create_customer(CustomerIn(name="李雷", emails=["li@example.cn"]), sup))["id"]
    async with db.session() as session, session.begin():
        session.add(Message(customer_id=li, channel="email", to_address="li@example.cn",
                            body="our offer", status="sent", provider_id="<sent-1@example.cn>",
                            created_by="sup"))  # fmt: skip
    # the subject: an encoded word hiding a line break ("Re: 报价\r\nBcc: x@y.cn")
    hidden = base64.b64encode("Re: 报价\r\nBcc: x@y.cn".encode()).decode()
    first = mail("王小明 <wang@example.cn>", "<r1@mail.cn>", "PLACEHOLDER",
                 "谢谢,明天可以。", f"<script>alert(1)</script><p>谢谢</p>{EVIL}",
                 ).replace(b"PLACEHOLDER", f"=?utf-8?b?{hidden}?=".encode())  # fmt: skip
    for raw in (
        first,
        # from an address nobody knows, but answering our e-mail to 李雷
        mail("assistant@li-corp.cn", "<r2@mail.cn>", "Re: offer", "收到",
             in_reply_to="<sent-1@example.cn>"),
        mail("stranger@spam.cn", "<r3@mail.cn>", "hello", "buy now"),
        # HTML only: stored as its text
        mail("WANG@example.cn", "<r4@mail.cn>", "html",
             html=f"<style>p{{}}</style><b>bold</b>{EVIL}<script>x()</script>"),
        # larger than max_bytes: headers only
        mail("li@example.cn", "<r5@mail.cn>", "big", "see attached", attachment=b"A" * 300_000),
        first,  # the same message twice in the mailbox
        mail("li@example.cn", "<r6@mail.cn>", "small attachment", "text part",
             attachment=f"<html>{EVIL}</html>".encode()),
    ):  # fmt: skip
        await asyncio.to_thread(imap.append, raw)

    f = fetcher(db, imap, store)
    run = await f.poll()
    assert (run.fetched, run.filed, run.unmatched, run.duplicate, run.unreadable) == (7, 5, 1, 1, 0)
    assert await asyncio.to_thread(imap.unseen) == 0
    async with db.session() as session:
        rows = {m.provider_id: m for m in await session.scalars(
            select(Message).where(Message.status == "received"))}  # fmt: skip
    assert set(rows) == {
        "<r1@mail.cn>",
        "<r2@mail.cn>",
        "<r4@mail.cn>",
        "<r5@mail.cn>",
        "<r6@mail.cn>",
    }
    r1 = rows["<r1@mail.cn>"]
    assert (r1.customer_id, r1.channel, r1.reason, r1.to_address) == (
        wang,
        "email",
        "reply",
        "wang@example.cn",
    )
    assert r1.body == "谢谢,明天可以。" and r1.subject == "Re: 报价 Bcc: x@y.cn"  # one line
    assert rows["<r2@mail.cn>"].customer_id == li  # by In-Reply-To, not by sender
    r4 = rows["<r4@mail.cn>"]
    assert r4.customer_id == wang and r4.body == "bold" and "<" not in r4.body
    r5 = rows["<r5@mail.cn>"]
    assert r5.customer_id == li and r5.subject == "big" and "body was not fetched" in r5.body
    assert rows["<r6@mail.cn>"].body == "text part"  # the attachment never read

    # nothing new: nothing fetched
    assert (await f.poll()).fetched == 0
    # a copy of r2 arrives again while two nodes poll at once: filed by neither twice
    await asyncio.to_thread(imap.append, mail("x@li-corp.cn", "<r2@mail.cn>", "again", "收到"))
    await asyncio.to_thread(imap.append, mail("li@example.cn", "<r7@mail.cn>", "new", "新的"))
    a, b = await asyncio.gather(f.poll(), fetcher(db, imap, store).poll())
    assert a.filed + b.filed == 1 and a.duplicate + b.duplicate >= 1, (a, b)
    async with db.session() as session:
        ids = list(
            await session.scalars(select(Message.provider_id).where(Message.status == "received"))
        )
    assert sorted(ids) == sorted([*rows, "<r7@mail.cn>"])

    # the daemon's messaging feature polls the configured mailbox by itself; the reply is
    # on the customer's timeline (GET /api/v1/messages) as inert text
    await asyncio.to_thread(imap.append, mail("wang@example.cn", "<r8@mail.cn>", "Re: 回电",
                                              html=f"<p>下午三点</p>{EVIL}"))  # fmt: skip
    messaging = MessagingFeature()
    sections = {"messaging": {"imap": {
        "host": imap.host, "port": imap.port, "security": "none", "username": imap.username,
        "password": imap.password, "poll_s": 0.2}}}  # fmt: skip
    async with crm_server(db, sections=sections, features=[messaging]) as crm:

        async def reply() -> dict[str, object] | None:
            _, body = await crm.call("sup", "GET", f"/api/v1/messages?customer_id={wang}")
            return next((m for m in body["messages"] if m["provider_id"] == "<r8@mail.cn>"), None)

        r8 = await wait_for(reply, timeout=10, what="the reply on the timeline")
        assert (r8["status"], r8["channel"], r8["to"], r8["body"]) == (
            "received", "email", "wang@example.cn", "下午三点",
        )  # fmt: skip
