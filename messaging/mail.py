"""E-mail over SMTP (the standard library's smtplib, in a thread: one connection per
batch). Messages are text/plain UTF-8, with a text/html alternative only when the caller
built one (the daily digest, whose every value is escaped); the subject and addresses go
through the email package's header encoding, so CR/LF in a customer's value cannot add a
header."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

from messaging.config import SmtpConfig

__all__ = ["Mail", "SmtpSender"]


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str
    html: str = ""  # an HTML alternative of ``body`` (already escaped by its builder)


class SmtpSender:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    @property
    def enabled(self) -> bool:
        return bool(self.config.host and self.config.sender)

    def _message(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = mail.to
        msg["Subject"] = " ".join(mail.subject.split())  # no line breaks in a header
        msg["Message-ID"] = make_msgid(
            domain=self.config.sender.rpartition("@")[2].strip("> ") or None
        )
        msg.set_content(mail.body)
        if mail.html:
            msg.add_alternative(mail.html, subtype="html")
        return msg

    def _send_all(self, mails: list[Mail]) -> list[tuple[str, str]]:
        """(message id, "") or ("", error) per mail; raises OSError / SMTPException when
        the server cannot be reached at all (the caller retries)."""
        c = self.config
        smtp: smtplib.SMTP
        if c.security == "tls":
            smtp = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout_s, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        out: list[tuple[str, str]] = []
        with smtp:
            if c.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if c.username:
                smtp.login(c.username, c.password)
            for mail in mails:
                msg = self._message(mail)
                try:
                    refused = smtp.send_message(msg)
                except (
                    smtplib.SMTPRecipientsRefused,
                    smtplib.SMTPDataError,
                    smtplib.SMTPSenderRefused,
                    ValueError,
                ) as exc:
                    out.append(("", f"{type(exc).__name__}: {exc}"[:1024]))
                    continue
                if refused:
                    out.append(("", f"refused: {refused}"[:1024]))
                else:
                    out.append((str(msg["Message-ID"]), ""))
        return out

    async def send(self, mails: list[Mail]) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self._send_all, mails)
