"""REST routes of the statistics (supervisor role), JSON or ``?format=csv``.

GET /api/v1/stats/hourly?from=YYYY-MM-DD&to=…&queue=…
GET /api/v1/stats/daily?from=…&to=…&queue=…
GET /api/v1/stats/summary?from=…&to=…&queue=…
GET /api/v1/stats/agents?from=…&to=…
GET /api/v1/stats/staffing?day=…&queue=…
GET /api/v1/stats/wallboard                 (the current frame)
POST /api/v1/stats/rebuild {"since": ISO}   (admin)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from cti.web.app import require_role
from stats import reports
from stats.csv_export import to_csv
from stats.service import StatsService

__all__ = ["add_routes"]

_QUEUE_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
LiveQueues = Callable[[], list[dict[str, Any]]]


def _respond(request: web.Request, name: str, rows: list[dict[str, Any]]) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt == "csv":
        return web.Response(
            text=to_csv(rows),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if fmt != "json":
        raise web.HTTPBadRequest(reason="format must be json or csv")
    return web.json_response({"rows": rows})


def add_routes(app: web.Application, svc: StatsService, live_queues: LiveQueues) -> None:
    def today() -> date:
        return datetime.now(UTC).astimezone(svc.tz).date()

    def days(request: web.Request) -> tuple[date, date]:
        try:
            return reports.parse_days(request.query.get("from"), request.query.get("to"), today())
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=f"bad date range: {exc}") from None

    def queue(request: web.Request, required: bool = False) -> str | None:
        q = request.query.get("queue")
        if q is None or q == "":
            if required:
                raise web.HTTPBadRequest(reason="queue is required")
            return None
        if not _QUEUE_RE.fullmatch(q):
            raise web.HTTPBadRequest(reason="bad queue name")
        return q

    def route(
        name: str, work: Callable[[web.Request], Awaitable[list[dict[str, Any]]]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            require_role(request, "supervisor")
            return _respond(request, name, await work(request))

        return handler

    async def hourly(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        return await reports.hourly(svc.db, first, last, queue(request))

    async def daily(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        return await reports.daily(svc.db, first, last, queue(request))

    async def summary(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        return await reports.summary(svc.db, first, last, queue(request))

    async def agents(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        rules = await svc.refresh_rules()
        return await reports.agent_report(svc.db, first, last, svc.tz, rules, datetime.now(UTC))

    async def staffing(request: web.Request) -> list[dict[str, Any]]:
        try:
            day = date.fromisoformat(request.query["day"]) if "day" in request.query else today()
        except ValueError:
            raise web.HTTPBadRequest(reason="day must be YYYY-MM-DD") from None
        q = queue(request, required=True)
        assert q is not None
        rules = await svc.refresh_rules()
        return await reports.staffing(svc.db, day, q, rules, svc.target(q))

    async def wallboard(request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response(svc.frame(live_queues()))

    async def rebuild(request: web.Request) -> web.Response:
        require_role(request, "admin")
        try:
            body = await request.json()
            since = datetime.fromisoformat(str(body["since"]))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(reason='body must be {"since": ISO 8601}') from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=svc.tz)
        result = await svc.rebuild(since)
        return web.json_response({"lines": result.lines, "buckets": result.entries_touched})

    r = app.router
    r.add_get("/api/v1/stats/hourly", route("hourly", hourly))
    r.add_get("/api/v1/stats/daily", route("daily", daily))
    r.add_get("/api/v1/stats/summary", route("summary", summary))
    r.add_get("/api/v1/stats/agents", route("agents", agents))
    r.add_get("/api/v1/stats/staffing", route("staffing", staffing))
    r.add_get("/api/v1/stats/wallboard", wallboard)
    r.add_post("/api/v1/stats/rebuild", rebuild)
