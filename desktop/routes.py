"""REST routes of the desktop (under ``/api/v1/desktop``; the app checks the token)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from cti.store.db import Database
from cti.web.app import ROLES_ORDER, json_error, require_role
from desktop.service import PopService
from desktop.today import calls_today

__all__ = ["add_routes"]


class DesktopRoutes:
    def __init__(self, db: Database, pops: PopService, timezone: str) -> None:
        self.db = db
        self.pops = pops
        self.timezone = timezone

    async def today(self, request: web.Request) -> web.Response:
        """``GET /api/v1/desktop/calls/today[?limit=N]``: agent: own calls; supervisor: all
        (``?agent=NAME`` narrows to one agent)."""
        principal = require_role(request, "agent")
        raw = request.query.get("limit", "200")
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1000:
            return json_error(400, "limit must be between 1 and 1000")
        agent: str | None = principal.name
        if ROLES_ORDER[principal.role] >= ROLES_ORDER["supervisor"]:
            wanted = request.query.get("agent")
            if wanted is not None and len(wanted) > 128:
                return json_error(400, "agent too long")
            agent = wanted or None
        rows = await calls_today(
            self.db, now=datetime.now(UTC), timezone=self.timezone, agent=agent,
            also=self.pops.popped(agent) if agent else (), limit=int(raw),
        )  # fmt: skip
        return web.json_response({"calls": rows})

    async def pops_now(self, request: web.Request) -> web.Response:
        """``GET /api/v1/desktop/pops``: the caller's current cards (what the websocket
        snapshot gives, for clients that poll)."""
        principal = require_role(request, "agent")
        return web.json_response({"pops": self.pops.current(principal.name)})


def add_routes(app: web.Application, routes: DesktopRoutes) -> None:
    app.router.add_get("/api/v1/desktop/calls/today", routes.today)
    app.router.add_get("/api/v1/desktop/pops", routes.pops_now)
