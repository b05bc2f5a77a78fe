"""REST routes of the desktop (under ``/api/v1/desktop``; the app checks the token)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from cti.store.db import Database
from cti.web.auth import require_role
from cti.web.openapi import arr, doc, obj
from cti.web.params import Int, Text
from desktop.service import PopService
from desktop.today import calls_today

__all__ = ["add_routes"]


TODAY_LIMIT = Int(name="limit", default=200, lo=1, hi=1000)
TODAY_AGENT = Text(name="agent", description="supervisors: one agent's calls")


class DesktopRoutes:
    def __init__(self, db: Database, pops: PopService, timezone: str) -> None:
        self.db = db
        self.pops = pops
        self.timezone = timezone

    @doc(
        "Today's calls (agents: their own; supervisors: all or one agent's)",
        tags=["desktop"],
        query=[TODAY_LIMIT, TODAY_AGENT],
        response=obj({"calls": arr(obj())}),
    )
    async def today(self, request: web.Request) -> web.Response:
        """``GET /api/v1/desktop/calls/today[?limit=N]``: agent: own calls; supervisor: all
        (``?agent=NAME`` narrows to one agent)."""
        principal = require_role(request, "agent")
        limit = TODAY_LIMIT.value(request)
        agent: str | None = principal.name
        if principal.at_least("supervisor"):
            agent = TODAY_AGENT.read(request) or None
        rows = await calls_today(
            self.db, now=datetime.now(UTC), timezone=self.timezone, agent=agent,
            also=self.pops.popped(agent) if agent else (), limit=limit,
        )  # fmt: skip
        return web.json_response({"calls": rows})

    @doc(
        "The caller's current screen-pop cards",
        tags=["desktop"],
        response=obj({"pops": arr(obj())}),
    )
    async def pops_now(self, request: web.Request) -> web.Response:
        """``GET /api/v1/desktop/pops``: the caller's current cards (what the websocket
        snapshot gives, for clients that poll)."""
        principal = require_role(request, "agent")
        return web.json_response({"pops": self.pops.current(principal.name)})


def add_routes(app: web.Application, routes: DesktopRoutes) -> None:
    app.router.add_get("/api/v1/desktop/calls/today", routes.today)
    app.router.add_get("/api/v1/desktop/pops", routes.pops_now)
