"""The daemon's messaging feature (``messaging = "messaging.feature:MessagingFeature"``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cti.features import FeatureContext
from cti.services import Services
from cti.tasks import BackgroundTasks
from messaging.api import add_digest_routes, add_routes
from messaging.config import MessagingConfig
from messaging.digest import DailyDigest
from messaging.imap import ImapFetcher
from messaging.mail import SmtpSender
from messaging.rules import MissedCallSms
from messaging.service import Messenger
from messaging.sms import AliyunSms, SmsProvider
from messaging.tencent_sms import TencentSms

log = logging.getLogger(__name__)


class MessagingFeature:
    name = "messaging"
    sections: tuple[str, ...] = ("messaging",)

    def __init__(self) -> None:
        self.messenger: Messenger | None = None
        self.rule: MissedCallSms | None = None
        self.digest: DailyDigest | None = None
        self.imap: ImapFetcher | None = None
        self._gateway: AliyunSms | TencentSms | None = None
        self._services = Services()
        self._tasks = BackgroundTasks("messaging")

    def setup(self, ctx: FeatureContext) -> None:
        config = ctx.section("messaging", MessagingConfig)
        sms: SmsProvider | None = None
        if config.sms.provider == "aliyun":
            sms = self._gateway = AliyunSms(config.sms.aliyun)
        elif config.sms.provider == "tencent":
            sms = self._gateway = TencentSms(config.sms.tencent)
        self.messenger = Messenger(
            ctx.db,
            config,
            sms=sms,
            smtp=SmtpSender(config.smtp),
            recipients=ctx.services.customer_recipients,
            node=ctx.settings.cluster.node,
        )
        self.rule = MissedCallSms(
            self.messenger, config.missed_call, ctx.settings.site.default_region, ctx.workers
        )
        self.rule.attach(ctx.bus)
        self._services = ctx.services
        http = ctx.settings.http
        base_url = config.digest.base_url or (
            http.public_urls[0] if http.public_urls else f"http://{http.host}:{http.port}"
        )
        self.digest = DailyDigest(
            ctx.db,
            config.digest,
            self.messenger.smtp,
            ZoneInfo(ctx.settings.site.timezone),
            base_url,
        )
        self.imap = ImapFetcher(ctx.db, config.imap)
        add_routes(ctx.app, self.messenger)
        add_digest_routes(ctx.app, self.digest)

    async def start(self) -> None:
        assert self.messenger is not None and self.rule is not None
        # the CRM offers its customers in its setup, which may come after this one
        self.messenger.recipients = self._services.customer_recipients
        self.messenger.start()
        await self.rule.resume()  # what the last stop left over, first
        self.rule.start()
        self._tasks.spawn(self._receipts_loop(), "receipts")
        assert self.digest is not None
        self.digest.reminders = self._services.reminders  # offered by the CRM's setup
        if self.digest.config.enabled:
            if not self.messenger.smtp.enabled:
                log.warning("daily digest enabled but e-mail is not configured ([messaging.smtp])")
            self._tasks.spawn(self._digest_loop(), "digest")
        assert self.imap is not None
        self.imap.recipients = self._services.customer_recipients
        if self.imap.enabled:
            self._tasks.spawn(self._imap_loop(), "imap")

    async def _imap_loop(self) -> None:
        assert self.imap is not None
        while True:
            try:
                run = await self.imap.poll()
                if run.fetched:
                    log.info(
                        "inbound mail: %d fetched, %d filed, %d unmatched",
                        run.fetched, run.filed, run.unmatched,
                    )  # fmt: skip
            except Exception as exc:  # the server unreachable, a refused login: next time
                log.warning("inbound mail: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.imap.config.poll_s)

    async def _digest_loop(self) -> None:
        assert self.digest is not None
        while True:
            try:
                run = await self.digest.run(datetime.now(UTC))
                if run.sent or run.failed:
                    log.info(
                        "daily digest %s: %d sent, %d failed, %d without an address",
                        run.day, run.sent, run.failed, run.without_address,
                    )  # fmt: skip
            except Exception:
                log.exception("daily digest failed")
            await asyncio.sleep(self.digest.config.check_interval_s)

    async def _receipts_loop(self) -> None:
        assert self.messenger is not None
        while True:
            await asyncio.sleep(self.messenger.config.receipt_poll_s)
            try:
                await self.messenger.poll_receipts()
            except Exception:
                log.exception("delivery receipts failed")

    async def stop(self) -> None:
        await self._tasks.stop()
        if self.rule is not None:
            await self.rule.stop()
        if self.messenger is not None:
            await self.messenger.stop()
        if self._gateway is not None:
            await self._gateway.close()

    def status(self) -> dict[str, Any]:
        if self.messenger is None:
            return {}
        return {
            "sms": self.messenger.sms.name if self.messenger.sms else None,
            "email": self.messenger.smtp.enabled,
        }
