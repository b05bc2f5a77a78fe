"""Customers' e-mail replies fetched from a mailbox (IMAP) and filed on their timeline.

Every ``poll_s`` the configured mailbox is searched for UNSEEN messages; each is fetched
without marking it (``BODY.PEEK``), filed, then flagged ``\\Seen`` so the next poll skips
it (the mailbox is the application's: a person reading it first makes it unseen-less).

Guarantees:

- **Whose**: a message whose ``In-Reply-To`` / ``References`` names one of our sent
  e-mails (their Message-ID is the message's ``provider_id``) goes to that message's
  customer; otherwise the ``From`` address is looked up among the customers' addresses
  (:meth:`cti.services.CustomerRecipients.by_email`). Neither: not filed, counted.
- **Once**: ``msg_received`` is keyed by the Message-ID (a SHA-256 of the bytes when
  there is none) and inserted by insert-or-ignore in the transaction that writes the
  timeline's row, so a second poll, a restart or a second node files nothing twice.
- **Inert**: the body is stored as text (the text/plain part; else the text of the HTML
  part with its tags, scripts and styles removed), at most 4096 characters; the subject
  is one line; attachments are never read; a message over ``max_bytes`` is filed from
  its headers alone (its body is not fetched). The timeline shows it as text.
- **Not blocking**: the IMAP conversation (imaplib) and the parsing run in a thread.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import hashlib
import imaplib
import logging
import re
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

from sqlalchemy import select

from cti.services import CustomerRecipients
from cti.store.db import Database
from cti.store.insert import insert_ignore
from messaging.config import ImapConfig
from messaging.models import Message, Received

__all__ = ["Fetched", "ImapFetcher", "Inbound", "PollRun", "parse", "text_of_html"]

log = logging.getLogger(__name__)

BODY_MAX = 4096
MSGID = re.compile(r"<[^<>\s]{1,250}>")


class _Text(HTMLParser):
    """The text of an HTML document: tags dropped, script/style contents dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def text_of_html(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message as the server gave it: its UID, its bytes (headers only when
    ``truncated``)."""

    uid: str
    raw: bytes
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Inbound:
    message_id: str
    sender: str  # lower-cased address
    subject: str
    body: str
    refs: tuple[str, ...]  # In-Reply-To and References ids


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a header the parser cannot decode
        return ""
    return str(value) if value is not None else ""


def parse(fetched: Fetched, max_bytes: int) -> Inbound:
    msg = email.message_from_bytes(fetched.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    ids = MSGID.findall(_header(msg, "Message-ID"))
    message_id = ids[0] if ids else f"<{hashlib.sha256(fetched.raw).hexdigest()}@no-message-id>"
    sender = email.utils.parseaddr(_header(msg, "From"))[1].strip().lower()[:320]
    refs = tuple(
        dict.fromkeys(
            MSGID.findall(_header(msg, "In-Reply-To")) + MSGID.findall(_header(msg, "References"))
        )
    )[:50]
    subject = " ".join(_header(msg, "Subject").split())[:256]
    if fetched.truncated:
        body = f"(message larger than {max_bytes} bytes: its body was not fetched)"
    else:
        body = ""
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is not None:
            try:
                content = part.get_content()
            except (LookupError, ValueError, AssertionError):  # unknown charset, bad encoding
                content = ""
            if isinstance(content, str):
                body = text_of_html(content) if part.get_content_type() == "text/html" else content
    body = body.replace("\x00", "").replace("\r\n", "\n").strip()[:BODY_MAX]
    return Inbound(message_id[:256], sender, subject.replace("\x00", ""), body, refs)


@dataclass
class PollRun:
    fetched: int = 0
    filed: int = 0
    unmatched: int = 0
    duplicate: int = 0  # filed before (another poll, node or a copy in the mailbox)
    unreadable: int = 0
    filed_ids: list[int] = field(default_factory=list)


class ImapFetcher:
    def __init__(
        self, db: Database, config: ImapConfig, recipients: CustomerRecipients | None = None
    ) -> None:
        self.db = db
        self.config = config
        self.recipients = recipients

    @property
    def enabled(self) -> bool:
        return bool(self.config.host and self.config.username)

    # --- IMAP (in a thread) ----------------------------------------------------------------

    def _connect(self) -> imaplib.IMAP4:
        c = self.config
        conn: imaplib.IMAP4
        if c.security == "tls":
            conn = imaplib.IMAP4_SSL(
                c.host, c.port, ssl_context=ssl.create_default_context(), timeout=c.timeout_s
            )
        else:
            conn = imaplib.IMAP4(c.host, c.port, timeout=c.timeout_s)
            if c.security == "starttls":
                conn.starttls(ssl.create_default_context())
        conn.login(c.username, c.password)
        status, _ = conn.select(_quoted(c.mailbox))
        if status != "OK":
            conn.logout()
            raise imaplib.IMAP4.error(f"cannot select mailbox {c.mailbox!r}")
        return conn

    def _fetch_unseen(self) -> list[Fetched]:
        conn = self._connect()
        try:
            status, data = conn.uid("SEARCH", "UNSEEN")
            if status != "OK" or not data or not data[0]:
                return []
            uids = [u.decode() for u in data[0].split()][: self.config.batch]
            sizes: dict[str, int] = {}
            status, data = conn.uid("FETCH", ",".join(uids), "(UID RFC822.SIZE)")
            for item in data:
                line = item.decode() if isinstance(item, bytes) else ""
                m = re.search(r"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)", line)
                if m:
                    uid, size = (m[1], m[2]) if m[1] else (m[4], m[3])
                    sizes[uid] = int(size)
            out: list[Fetched] = []
            for uid in uids:
                truncated = sizes.get(uid, 0) > self.config.max_bytes
                what = "(BODY.PEEK[HEADER])" if truncated else "(BODY.PEEK[])"
                status, data = conn.uid("FETCH", uid, what)
                raw = next((part[1] for part in data if isinstance(part, tuple)), None)
                if status == "OK" and isinstance(raw, bytes):
                    out.append(Fetched(uid, raw, truncated))
            return out
        finally:
            _logout(conn)

    def _mark_seen(self, uids: list[str]) -> None:
        if not uids:
            return
        conn = self._connect()
        try:
            conn.uid("STORE", ",".join(uids), "+FLAGS", "(\\Seen)")
        finally:
            _logout(conn)

    # --- filing ----------------------------------------------------------------------------

    async def _customer_of(self, inbound: Inbound) -> int | None:
        if inbound.refs:
            async with self.db.session() as session:
                cid = await session.scalar(
                    select(Message.customer_id)
                    .where(
                        Message.channel == "email",
                        Message.provider_id.in_(inbound.refs),
                        Message.customer_id.is_not(None),
                    )
                    .order_by(Message.id.desc())
                    .limit(1)
                )
            if cid is not None:
                return int(cid)
        if self.recipients is not None and inbound.sender:
            r = await self.recipients.by_email(inbound.sender)
            if r is not None:
                return r.customer_id
        return None

    async def _file(self, inbound: Inbound, customer_id: int | None) -> int | bool | None:
        """The new timeline row's id (None: recorded as unmatched), or False when this
        Message-ID was filed before."""
        async with self.db.session() as session, session.begin():
            claimed = await session.execute(
                insert_ignore(session, Received, ["message_id"]).values(
                    message_id=inbound.message_id, message_pk=None
                )
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if customer_id is None:
                return None
            row = Message(
                customer_id=customer_id,
                channel="email",
                to_address=inbound.sender,
                subject=inbound.subject,
                body=inbound.body or "(no text)",
                status="received",
                provider_id=inbound.message_id,
                reason="reply",
                created_by="imap",
            )
            session.add(row)
            await session.flush()
            received = await session.get(Received, inbound.message_id)
            assert received is not None
            received.message_pk = row.id
            return row.id

    async def poll(self) -> PollRun:
        """Fetch the unseen messages, file the customers', mark them all seen."""
        run = PollRun()
        if not self.enabled:
            return run
        fetched = await asyncio.to_thread(self._fetch_unseen)
        run.fetched = len(fetched)
        done: list[str] = []
        for item in fetched:
            try:
                inbound = await asyncio.to_thread(parse, item, self.config.max_bytes)
            except Exception:
                log.warning("inbound mail uid %s could not be parsed", item.uid, exc_info=True)
                run.unreadable += 1
                done.append(item.uid)
                continue
            outcome = await self._file(inbound, await self._customer_of(inbound))
            if outcome is False:
                run.duplicate += 1
            elif outcome is None:
                run.unmatched += 1
            else:
                assert isinstance(outcome, int)
                run.filed += 1
                run.filed_ids.append(outcome)
            done.append(item.uid)
        await asyncio.to_thread(self._mark_seen, done)
        return run


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logout(conn: Any) -> None:
    try:
        conn.logout()
    except (OSError, imaplib.IMAP4.error):
        pass
