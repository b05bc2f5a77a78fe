"""The daemon's HTTP side: app factory, token auth, health, metrics, the calls API.

Features add their own routes through ``Application.router`` in their wiring; everything
under ``/api/`` requires a bearer token (``Authorization: Bearer …``) checked here once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cti.calls.recorder import list_calls
from cti.store.db import Database
from cti.store.tokens import Principal, verify_token
from cti.web.pages import STATIC_ROOT, add_pages, add_vendor
from cti.web.ws import WsHub

log = logging.getLogger(__name__)

ROLES_ORDER = {"agent": 0, "supervisor": 1, "admin": 2}


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
PRINCIPAL = web.RequestKey("principal", Principal)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return json_error(401, "missing bearer token")
    principal = await verify_token(request.app[DEPS].db, token.strip())
    if principal is None:
        return json_error(401, "invalid or revoked token")
    request[PRINCIPAL] = principal
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            return json_error(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal error")


def require_role(request: web.Request, role: str) -> Principal:
    principal: Principal = request[PRINCIPAL]
    if ROLES_ORDER.get(principal.role, -1) < ROLES_ORDER[role]:
        raise web.HTTPForbidden(reason=f"needs role {role}")
    return principal


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(reason=f"{name} must be between {lo} and {hi}")
    return value


async def healthz(request: web.Request) -> web.Response:
    health = request.app[DEPS].live.health()
    return web.json_response(health, status=200 if health.get("ok") else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DEPS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_calls_route(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    limit = _int_param(request, "limit", 100, 1, 1000)
    before_id = request.query.get("before_id")
    since_raw = request.query.get("since")
    since = None
    if since_raw:
        try:
            since = datetime.fromisoformat(since_raw)
        except ValueError:
            raise web.HTTPBadRequest(reason="since must be an ISO 8601 date-time") from None
    rows = await list_calls(
        request.app[DEPS].db,
        limit=limit,
        since=since,
        before_id=int(before_id) if before_id and before_id.isdigit() else None,
    )
    return web.json_response(
        {"calls": rows, "live": request.app[DEPS].live.live_calls() if not before_id else []}
    )


async def whoami(request: web.Request) -> web.Response:
    """Who the token speaks for: pages call this after sign-in."""
    principal: Principal = request[PRINCIPAL]
    return web.json_response({"name": principal.name, "role": principal.role})


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
