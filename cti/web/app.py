"""The daemon's HTTP side: app factory, token auth, health, metrics, the calls API.

Features add their own routes through ``Application.router`` in their wiring; everything
under ``/api/`` requires a bearer token (``Authorization: Bearer …``) checked here once.
The HTTP edge is shared: errors are :mod:`cti.web.errors` (one type, one middleware),
parameters :mod:`cti.web.params`, bodies :mod:`cti.web.body`, roles :mod:`cti.web.auth`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cti.calls.recorder import list_calls
from cti.store.db import Database
from cti.store.tokens import verify_token
from cti.web.auth import PRINCIPAL, principal, require_role
from cti.web.errors import Unauthorized, error_middleware
from cti.web.pages import STATIC_ROOT, add_pages, add_vendor
from cti.web.params import Int, When
from cti.web.ws import WsHub

log = logging.getLogger(__name__)


class LiveCalls(Protocol):
    def live_calls(self) -> list[dict[str, object]]: ...
    def health(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class WebDeps:
    db: Database
    live: LiveCalls
    registry: CollectorRegistry
    hub: WsHub
    vendor_dir: Path | None = None  # npm browser libraries (None: the checkout's)


DEPS = web.AppKey("deps", WebDeps)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    who = await verify_token(request.app[DEPS].db, token.strip())
    if who is None:
        raise Unauthorized("invalid or revoked token")
    request[PRINCIPAL] = who
    return await handler(request)


CALLS_LIMIT = Int(name="limit", default=100, lo=1, hi=1000)
CALLS_BEFORE = Int(name="before_id", lo=1)
CALLS_SINCE = When(name="since")


async def healthz(request: web.Request) -> web.Response:
    health = request.app[DEPS].live.health()
    return web.json_response(health, status=200 if health.get("ok") else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DEPS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_calls_route(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    before_id = CALLS_BEFORE.read(request)
    rows = await list_calls(
        request.app[DEPS].db,
        limit=CALLS_LIMIT.value(request),
        since=CALLS_SINCE.read(request),
        before_id=before_id,
    )
    return web.json_response(
        {"calls": rows, "live": request.app[DEPS].live.live_calls() if before_id is None else []}
    )


async def whoami(request: web.Request) -> web.Response:
    """Who the token speaks for: pages call this after sign-in."""
    p = principal(request)
    return web.json_response({"name": p.name, "role": p.role})


def create_app(deps: WebDeps) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=1 << 20,
    )
    app[DEPS] = deps
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/calls", list_calls_route)
    app.router.add_get("/api/v1/me", whoami)
    app.router.add_get("/ws", deps.hub.handle)
    add_pages(app, "/static/common", STATIC_ROOT / "common")
    add_vendor(app, deps.vendor_dir)
    return app
