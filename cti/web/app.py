"""The daemon's HTTP side: app factory, token auth, health, metrics, the calls API.

Features add their own routes through ``Application.router`` in their wiring; everything
under ``/api/`` (but sign-in and the API description) requires a credential, checked here
once: an API token (``Authorization: Bearer …``) or a browser session cookie, whose
state-changing requests must carry the CSRF token and come from the site's own origin
(:mod:`cti.web.credentials`, docs/decisions/0015).
The HTTP edge is shared: errors are :mod:`cti.web.errors` (one type, one middleware),
parameters :mod:`cti.web.params`, bodies :mod:`cti.web.body`, roles :mod:`cti.web.auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from cti.accounts.audit import AuditLog
from cti.accounts.service import Accounts
from cti.calls.recorder import list_calls
from cti.config import AuthConfig, HttpConfig
from cti.store.db import Database
from cti.web.account_routes import ORIGINS, SESSION_PATH, add_account_routes
from cti.web.auth import ACCOUNTS, AUDIT, PRINCIPAL, require_role
from cti.web.credentials import SESSION_COOKIE, Authenticator, bearer_of, csrf_ok
from cti.web.errors import Forbidden, Unauthorized, error_middleware
from cti.web.openapi import SPEC_PATH, add_openapi, arr, doc, obj
from cti.web.origins import OriginPolicy
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
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    site_name: str = "CTI"


DEPS = web.AppKey("deps", WebDeps)
METRICS_NETS = web.AppKey("metrics_nets", tuple)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: API paths that need no credential.
SIGN_IN_PATH = "/api/v1/auth/sign-in"
PUBLIC_API = frozenset({SIGN_IN_PATH, SESSION_PATH, SPEC_PATH})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin_ok(request: web.Request) -> bool:
    """A browser's Origin (or, without one, its Sec-Fetch-Site) says the request comes
    from one of the site's own pages."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return request.app[ORIGINS].allows(origin, request)
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is asking, once for every ``/api/`` request: a bearer token, else the session
    cookie (with the CSRF rule for state-changing requests), else only public routes."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    auth = request.app[DEPS].hub.auth
    public = request.path in PUBLIC_API  # reachable without (or with an ended) credential
    unsafe = request.method not in _SAFE_METHODS
    token = bearer_of(request)
    if token is not None:
        who = await auth.bearer(token) if token else None
        if who is not None:
            request[PRINCIPAL] = who
        elif not public:
            raise Unauthorized("invalid, expired or revoked token", code="bad-token")
        return await handler(request)
    if unsafe and not _origin_ok(request):
        raise Forbidden("request from a page outside this site", code="bad-origin")
    secret = request.cookies.get(SESSION_COOKIE)
    if secret is not None and request.path != SIGN_IN_PATH:
        who = await auth.session(secret)
        if who is not None:
            if unsafe and not csrf_ok(request, secret):
                raise Forbidden("missing or wrong CSRF token (X-CSRF-Token)", code="csrf")
            request[PRINCIPAL] = who
        elif not public:
            raise Unauthorized("your session ended: sign in again", code="session-ended")
        return await handler(request)
    if public:
        return await handler(request)
    raise Unauthorized("sign in or present a bearer token")


CALLS_LIMIT = Int(name="limit", default=100, lo=1, hi=1000)
CALLS_BEFORE = Int(name="before_id", lo=1, description="page: calls older than this id")
CALLS_SINCE = When(name="since")


async def healthz(request: web.Request) -> web.Response:
    health = request.app[DEPS].live.health()
    return web.json_response(health, status=200 if health.get("ok") else 503)


READY_DB_TIMEOUT_S = 2.0


async def livez(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP (an orchestrator restarts it only when not)."""
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Readiness for a load balancer: this node can take HTTP and websocket clients now:
    the database answers, the broker link is up (in a cluster: other nodes' events reach
    its desktops) and it is not shutting down. A standby node (it drives no Asterisk
    server) is ready; ``/healthz`` says whether the node's Asterisk link is up."""
    deps = request.app[DEPS]
    problems: list[str] = []
    try:
        async with asyncio.timeout(READY_DB_TIMEOUT_S), deps.db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        problems.append("database")
    health = deps.live.health()
    bus = health.get("bus")
    if isinstance(bus, dict) and bus.get("connected") is False:
        problems.append("broker")
    if health.get("draining"):
        problems.append("draining")
    body = {"ready": not problems, "problems": problems, "role": health.get("role", "single")}
    return web.json_response(body, status=503 if problems else 200)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics: from the configured networks (default loopback), or with a
    valid API token of role supervisor or admin from anywhere."""
    if not _metrics_allowed_address(request):
        token = bearer_of(request)
        who = await request.app[DEPS].hub.auth.bearer(token) if token else None
        if who is None:
            raise Unauthorized("metrics: only from allowed addresses or with a token")
        if not who.at_least("supervisor"):
            raise Forbidden("metrics: needs role supervisor")
    body = generate_latest(request.app[DEPS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _metrics_allowed_address(request: web.Request) -> bool:
    try:
        addr = ipaddress.ip_address((request.remote or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in request.app[METRICS_NETS])


@doc("Finished calls (newest first) and calls in progress", role="supervisor",
     query=[CALLS_LIMIT, CALLS_SINCE, CALLS_BEFORE], tags=["calls"],
     response=obj({"calls": arr(obj()), "live": arr(obj())},
                  required=["calls", "live"]))  # fmt: skip
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


def _sweeper(hub: WsHub) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run_sweeper(), name="ws-credential-sweep")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return run


def create_app(deps: WebDeps) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=1 << 20,
    )
    app[DEPS] = deps
    configured = OriginPolicy.of(deps.http.public_urls, deps.http.allowed_origins,
                                 bind_host=deps.http.host)  # fmt: skip
    app[ORIGINS] = replace(configured, extra=configured.extra | deps.hub.origins.extra)
    app[METRICS_NETS] = tuple(ipaddress.ip_network(n, strict=False)
                              for n in deps.http.metrics_allow)  # fmt: skip
    audit_log = AuditLog(deps.db)
    accounts = Accounts(deps.db, deps.auth, audit_log, issuer=deps.site_name)
    app[AUDIT] = audit_log
    app[ACCOUNTS] = accounts
    deps.hub.auth = Authenticator(deps.db, accounts)
    deps.hub.origins = app[ORIGINS]
    accounts.ended.append(deps.hub.end_credentials)
    app.cleanup_ctx.append(_sweeper(deps.hub))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/calls", list_calls_route)
    add_account_routes(app)
    add_openapi(app)
    app.router.add_get("/ws", deps.hub.handle)
    add_pages(app, "/static/common", STATIC_ROOT / "common")
    add_pages(app, "/docs/api", STATIC_ROOT / "apidocs")
    add_vendor(app, deps.vendor_dir)
    return app
