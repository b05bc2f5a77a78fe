"""The quality feature (decision 0026): the satisfaction survey's FastAGI route, its
store and API. Registered under ``cti.features`` as ``quality``."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from cti.agi.server import AgiSession
from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from cti.bus import EventBus
from cti.events import SurveyAnswered
from cti.features import FeatureContext
from cti.services import Services
from cti.store.db import Database
from cti.tasks import BackgroundTasks
from cti.web.auth import require_role
from cti.web.openapi import arr, doc, obj
from cti.web.pages import add_pages
from cti.web.params import Day, Text, date_range
from quality import store
from quality.config import DEFAULT_TEXTS, QualityConfig
from quality.qa_api import add_qa_routes
from quality.qa_store import QaStore
from quality.survey import ROUTE, SurveyCall, run_survey

__all__ = ["QualityFeature"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

#: the queue_log event of a survey answer (data: the score)
QUEUE_LOG_EVENT = "SURVEY"
FROM = Day(name="from", description="first day (default: today, site time zone)")
TO = Day(name="to", description="last day (default: from; at most 366 days)")
AGENT = Text(name="agent", max_len=64, pattern=r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
QUEUE = Text(name="queue", max_len=64, pattern=r"[a-z0-9][a-z0-9_]{0,63}")


class QualityFeature:
    name = "quality"
    sections: tuple[str, ...] = ("quality",)

    def __init__(self) -> None:
        self.config = QualityConfig()
        self._db: Database | None = None
        self._ami: AmiClient | None = None
        self._bus: EventBus | None = None
        self._services: Services | None = None
        self._tz = ZoneInfo("UTC")
        #: linkedid -> how many times the survey question was asked (tests steer on it)
        self.asked: dict[str, int] = {}
        self._tasks = BackgroundTasks("quality")

    def setup(self, ctx: FeatureContext) -> None:
        self.config = ctx.section("quality", QualityConfig)
        self._db, self._ami, self._bus = ctx.db, ctx.ami, ctx.bus
        self._services = ctx.services
        self._tz = ZoneInfo(ctx.settings.site.timezone)
        ctx.agi.add_route(ROUTE, self._survey)
        ctx.app.router.add_get("/api/v1/quality/surveys", self._list)
        add_qa_routes(ctx.app, QaStore(ctx.db), self._tz)
        add_pages(ctx.app, "/qa", STATIC / "qa")

    async def start(self) -> None:
        speaker = self._services.prompts if self._services is not None else None
        if speaker is not None:  # played by URL: Asterisk fetches them ahead of callers
            speaker.expect("survey")
            texts = {**DEFAULT_TEXTS, **self.config.survey_texts}
            pairs = [(t, lang) for lang, x in sorted(texts.items())
                     for t in (x.question, x.invalid, x.thanks)]  # fmt: skip
            self._tasks.spawn(speaker.warm("survey", pairs), "survey-prompts")

    async def stop(self) -> None:
        await self._tasks.stop()

    # --- survey ------------------------------------------------------------------------------
    async def _survey(self, agi: AgiSession) -> None:
        speaker = self._services.prompts if self._services is not None else None
        await run_survey(
            agi, self.config, speaker, self._record, lambda: datetime.now(UTC), self._asking
        )

    def _asking(self, linkedid: str, attempt: int) -> None:
        if len(self.asked) > 1000:
            self.asked.clear()
        self.asked[linkedid] = attempt

    async def _record(self, call: SurveyCall, score: int, at: datetime) -> None:
        assert self._db is not None and self._ami is not None and self._bus is not None
        try:
            await self._ami.send_action(
                "QueueLog",
                {"Queue": call.queue, "Event": QUEUE_LOG_EVENT, "UniqueId": call.callid,
                 "Interface": call.agent, "Message": str(score)},
            )  # fmt: skip
        except (AmiActionError, NotConnected, TimeoutError) as exc:
            log.warning("survey of %s not written to queue_log: %s", call.linkedid, exc)
        await store.add_survey(
            self._db, linkedid=call.linkedid, callid=call.callid, queue=call.queue,
            agent=call.agent, language=call.language, score=score, at=at,
        )  # fmt: skip
        self._bus.publish(
            SurveyAnswered(call.linkedid, at, call.queue, call.agent, score, call.callid)
        )

    # --- API ---------------------------------------------------------------------------------
    @doc(
        "Satisfaction survey answers (one per queue call), oldest first",
        role="supervisor", tags=["quality"], query=[FROM, TO, AGENT, QUEUE],
        response=obj({"surveys": arr(obj())}),
    )  # fmt: skip
    async def _list(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        assert self._db is not None
        today = datetime.now(self._tz).date()
        first, last = date_range(request, today)
        since, until = self._bounds(first, last)
        rows = await store.list_surveys(
            self._db, since, until, agent=AGENT.read(request) or "",
            queue=QUEUE.read(request) or "",
        )  # fmt: skip
        return web.json_response({"surveys": rows})

    def _bounds(self, first: date, last: date) -> tuple[datetime, datetime]:
        start = datetime.combine(first, time(0), self._tz)
        end = datetime.combine(last + timedelta(days=1), time(0), self._tz)
        return start.astimezone(UTC), end.astimezone(UTC)

    def status(self) -> dict[str, Any]:
        return {}
