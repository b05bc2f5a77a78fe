"""The daemon's messaging feature (``messaging = "messaging.feature:MessagingFeature"``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cti.features import FeatureContext
from cti.services import Services
from cti.tasks import BackgroundTasks
from messaging.api import add_routes
from messaging.config import MessagingConfig
from messaging.mail import SmtpSender
from messaging.rules import MissedCallSms
from messaging.service import Messenger
from messaging.sms import AliyunSms, SmsProvider

log = logging.getLogger(__name__)


class MessagingFeature:
    name = "messaging"
    sections: tuple[str, ...] = ("messaging",)

    def __init__(self) -> None:
        self.messenger: Messenger | None = None
        self.rule: MissedCallSms | None = None
        self._aliyun: AliyunSms | None = None
        self._services = Services()
        self._tasks = BackgroundTasks("messaging")

    def setup(self, ctx: FeatureContext) -> None:
        config = ctx.section("messaging", MessagingConfig)
        sms: SmsProvider | None = None
        if config.sms.provider == "aliyun":
            sms = self._aliyun = AliyunSms(config.sms.aliyun)
        self.messenger = Messenger(
            ctx.db,
            config,
            sms=sms,
            smtp=SmtpSender(config.smtp),
            recipients=ctx.services.customer_recipients,
            metrics=ctx.workers,
        )
        self.rule = MissedCallSms(
            self.messenger, config.missed_call, ctx.settings.site.default_region, ctx.workers
        )
        self.rule.attach(ctx.bus)
        self._services = ctx.services
        add_routes(ctx.app, self.messenger)

    async def start(self) -> None:
        assert self.messenger is not None and self.rule is not None
        # the CRM offers its customers in its setup, which may come after this one
        self.messenger.recipients = self._services.customer_recipients
        self.messenger.start()
        self.rule.start()
        self._tasks.spawn(self._receipts_loop(), "receipts")

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
        if self._aliyun is not None:
            await self._aliyun.close()

    def status(self) -> dict[str, Any]:
        if self.messenger is None:
            return {}
        return {
            "sms": self.messenger.sms.name if self.messenger.sms else None,
            "email": self.messenger.smtp.enabled,
        }
