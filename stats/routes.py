"""REST routes of the statistics (supervisor role), JSON or ``?format=csv``.

GET /api/v1/stats/hourly?from=YYYY-MM-DD&to=…&queue=…
GET /api/v1/stats/daily?from=…&to=…&queue=…
GET /api/v1/stats/summary?from=…&to=…&queue=…
GET /api/v1/stats/agents?from=…&to=…
GET /api/v1/stats/regions?from=…&to=…&queue=…   (by caller region, 号码归属地)
GET /api/v1/stats/staffing?day=…&queue=…
GET /api/v1/stats/wallboard                 (the current frame)
POST /api/v1/stats/rebuild {"since": ISO}   (admin)

A supervisor scoped to teams (cti.principal ``sees_queue`` / ``sees_agent``, as the ACD
routes) gets only their queues' and agents' figures: the ``"*"`` totals cover their
queues only, a ``queue=`` outside them is 403 ``out-of-scope``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from cti.web.auth import principal, require_role
from cti.web.body import json_object
from cti.web.errors import BadRequest, Forbidden
from cti.web.openapi import INT, STR, arr, doc, obj
from cti.web.params import Choice, Day, Text, date_range, parse_datetime
from stats import reports
from stats.csv_export import to_csv
from stats.service import StatsService, scoped_frame

__all__ = ["add_routes"]

_QUEUE_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")


FORMAT = Choice(name="format", choices=("json", "csv"), default="json")
QUEUE = Text(name="queue", max_len=64, pattern=_QUEUE_RE.pattern)
DAY = Day(name="day", description="default: today (site time zone)")
FROM = Day(name="from", description="first day (default: today, site time zone)")
TO = Day(name="to", description="last day (default: from; at most 366 days)")
ROWS = obj({"rows": arr(obj())}, required=["rows"])


def _respond(request: web.Request, name: str, rows: list[dict[str, Any]]) -> web.Response:
    fmt = FORMAT.value(request)
    if fmt == "csv":
        return web.Response(
            text=to_csv(rows),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return web.json_response({"rows": rows})


def add_routes(app: web.Application, svc: StatsService) -> None:
    def today() -> date:
        return datetime.now(UTC).astimezone(svc.tz).date()

    def days(request: web.Request) -> tuple[date, date]:
        return date_range(request, today(), max_days=366)

    def queue(request: web.Request, required: bool = False) -> str | None:
        q = QUEUE.read(request)
        if not q:
            if required:
                raise BadRequest("queue is required")
            return None
        if not principal(request).sees_queue(q):
            raise Forbidden("this queue is outside your teams", code="out-of-scope")
        return q

    def within(request: web.Request) -> frozenset[str] | None:
        """The queues the principal may see (None: all)."""
        return principal(request).queues

    def route(
        name: str,
        work: Callable[[web.Request], Awaitable[list[dict[str, Any]]]],
        summary: str,
        query: list[Any],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        @doc(
            summary, role="supervisor", tags=["stats"], query=[*query, FORMAT], response=ROWS,
            content_type=("application/json", "text/csv"),
        )  # fmt: skip
        async def handler(request: web.Request) -> web.Response:
            require_role(request, "supervisor")
            return _respond(request, name, await work(request))

        return handler

    async def hourly(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        return await reports.hourly(svc.db, first, last, queue(request), within(request))

    async def daily(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        return await reports.daily(svc.db, first, last, queue(request), within(request))

    async def summary(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        return await reports.summary(svc.db, first, last, queue(request), within(request))

    async def agents(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        rules = await svc.refresh_rules()
        now = datetime.now(UTC)
        start, end = reports.day_bounds(first, last, svc.tz)
        times = await svc.agent_time(start, min(end, now))
        rows = await reports.agent_report(svc.db, first, last, svc.tz, rules, times)
        who = principal(request)
        return [r for r in rows if who.sees_agent(str(r["agent"]))]

    async def regions(request: web.Request) -> list[dict[str, Any]]:
        first, last = days(request)
        rules = await svc.refresh_rules()
        region = svc.wallboard.default_region
        return await reports.region_report(
            svc.db, first, last, svc.tz, rules, region, queue(request), within(request)
        )

    async def staffing(request: web.Request) -> list[dict[str, Any]]:
        day = DAY.read(request) or today()
        q = queue(request, required=True)
        assert q is not None
        rules = await svc.refresh_rules()
        return await reports.staffing(svc.db, day, q, rules, svc.target(q))

    @doc("The wallboard's current frame", role="supervisor", tags=["stats"], response=obj())
    async def wallboard(request: web.Request) -> web.Response:
        who = require_role(request, "supervisor")
        return web.json_response(scoped_frame(await svc.frame(), who))

    @doc(
        "Rebuild the statistics from queue_log since a date-time",
        role="admin", tags=["stats"], body=obj({"since": STR}, required=["since"]),
        response=obj({"lines": INT, "buckets": INT}),
    )  # fmt: skip
    async def rebuild(request: web.Request) -> web.Response:
        require_role(request, "admin")
        body = await json_object(request)
        since = parse_datetime(str(body.get("since", "")), "since", svc.tz)
        result = await svc.rebuild(since)
        return web.json_response({"lines": result.lines, "buckets": result.entries_touched})

    r = app.router
    days_q = [FROM, TO, QUEUE]
    r.add_get("/api/v1/stats/hourly", route("hourly", hourly, "Hourly queue figures", days_q))
    r.add_get("/api/v1/stats/daily", route("daily", daily, "Daily queue figures", days_q))
    r.add_get("/api/v1/stats/summary", route("summary", summary, "Totals per queue", days_q))
    r.add_get("/api/v1/stats/regions",
              route("regions", regions, "Queue figures by caller region (号码归属地)",
                    days_q))  # fmt: skip
    r.add_get("/api/v1/stats/agents",
              route("agents", agents, "Agent figures", [FROM, TO]))  # fmt: skip
    r.add_get("/api/v1/stats/staffing",
              route("staffing", staffing, "Erlang C staffing for a day", [DAY, QUEUE]))  # fmt: skip
    r.add_get("/api/v1/stats/wallboard", wallboard)
    r.add_post("/api/v1/stats/rebuild", rebuild)
