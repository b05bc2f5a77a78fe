"""REST routes under ``/api/v1/`` (docs/crm.md lists them).

Every handler starts with :func:`require_role` (the token check itself is the web app's
middleware); the store then applies per-customer visibility for agents. Errors are JSON
``{"error": ...}`` with a 4xx status; a duplicate is 409 with ``candidates``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from crm_bridge.config import CrmConfig
from crm_bridge.directory import StoreDirectory
from crm_bridge.importexport import (
    ImportFormatError,
    export_rows,
    import_rows,
    read_csv,
    read_xlsx,
    to_csv,
    to_xlsx,
)
from crm_bridge.interactions import Interactions
from crm_bridge.pool import Pool
from crm_bridge.schemas import (
    AssignIn,
    ContactIn,
    ContactPatch,
    CustomerIn,
    CustomerPatch,
    InteractionIn,
    InteractionPatch,
    LeadIn,
    LeadPatch,
)
from crm_bridge.store import Actor, CrmError, CrmStore
from crm_bridge.webhooks import WebhookDispatcher
from cti.web.app import json_error, require_role

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass
class CrmServices:
    config: CrmConfig
    store: CrmStore
    interactions: Interactions
    pool: Pool
    webhooks: WebhookDispatcher
    directory: StoreDirectory


CRM = web.AppKey("crm", CrmServices)


def _actor(request: web.Request, role: str = "agent") -> Actor:
    principal = require_role(request, role)
    return Actor(principal.name, principal.role)


async def _body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CrmError("the body is not valid UTF-8") from None
    except ValueError:
        raise CrmError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise CrmError("the body must be a JSON object")
    return model.model_validate(data)


def _id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise CrmError(f"{name} must be a positive integer")
    return int(raw)


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or not lo <= int(raw) <= hi:
        raise CrmError(f"{name} must be an integer between {lo} and {hi}")
    return int(raw)


def _errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CrmError as exc:
            return web.json_response({"error": exc.message, **exc.extra}, status=exc.status)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(x) for x in e["loc"]), "message": e["msg"]}
                for e in exc.errors(include_input=False, include_url=False)[:20]
            ]
            return web.json_response({"error": "invalid input", "details": details}, status=400)
        except ImportFormatError as exc:
            return json_error(400, str(exc))

    return wrapped


def _svc(request: web.Request) -> CrmServices:
    return request.app[CRM]


# --- customers ---------------------------------------------------------------------------


async def list_customers(request: web.Request) -> web.Response:
    actor = _actor(request)
    owner = request.query.get("owner")
    if owner is not None and len(owner) > 128:
        raise CrmError("owner too long")
    rows = await _svc(request).store.search(
        request.query.get("q", "")[:256],
        actor,
        limit=_int(request, "limit", 50, 1, 500),
        offset=_int(request, "offset", 0, 0, 10_000_000),
        owner=owner,
    )
    return web.json_response({"customers": rows})


async def create_customer(request: web.Request) -> web.Response:
    actor = _actor(request)
    data = await _body(request, CustomerIn)
    return web.json_response(await _svc(request).store.create_customer(data, actor), status=201)


async def get_customer(request: web.Request) -> web.Response:
    actor = _actor(request)
    return web.json_response(await _svc(request).store.get_customer(_id(request), actor))


async def patch_customer(request: web.Request) -> web.Response:
    actor = _actor(request)
    patch = await _body(request, CustomerPatch)
    return web.json_response(await _svc(request).store.update_customer(_id(request), patch, actor))


async def delete_customer(request: web.Request) -> web.Response:
    actor = _actor(request, "supervisor")
    await _svc(request).store.delete_customer(_id(request), actor)
    return web.json_response({"deleted": True})


async def customer_audit(request: web.Request) -> web.Response:
    actor = _actor(request)
    return web.json_response({"audit": await _svc(request).store.audit_log(_id(request), actor)})


async def customer_interactions(request: web.Request) -> web.Response:
    actor = _actor(request)
    rows = await _svc(request).interactions.for_customer(
        _id(request), actor, _int(request, "limit", 50, 1, 500)
    )
    return web.json_response({"interactions": rows})


async def add_contact(request: web.Request) -> web.Response:
    actor = _actor(request)
    data = await _body(request, ContactIn)
    force = request.query.get("force") in ("1", "true")
    out = await _svc(request).store.add_contact(_id(request), data, actor, force=force)
    return web.json_response(out, status=201)


async def get_contact(request: web.Request) -> web.Response:
    actor = _actor(request)
    return web.json_response(await _svc(request).store.get_contact(_id(request), actor))


async def patch_contact(request: web.Request) -> web.Response:
    actor = _actor(request)
    patch = await _body(request, ContactPatch)
    return web.json_response(await _svc(request).store.update_contact(_id(request), patch, actor))


async def lookup(request: web.Request) -> web.Response:
    _actor(request)
    number = request.query.get("number", "")
    card = await _svc(request).directory.lookup_number(number[:48])
    if card is None:
        return json_error(404, "no customer with this number")
    data = {k: getattr(card, k) for k in card.__slots__}
    data["tags"] = list(card.tags)
    data["birthday"] = card.birthday.isoformat() if card.birthday else None
    return web.json_response(data)


# --- interactions ------------------------------------------------------------------------


async def create_interaction(request: web.Request) -> web.Response:
    actor = _actor(request)
    data = await _body(request, InteractionIn)
    return web.json_response(await _svc(request).interactions.create(data, actor), status=201)


async def get_interaction(request: web.Request) -> web.Response:
    actor = _actor(request)
    return web.json_response(await _svc(request).interactions.get(_id(request), actor))


async def patch_interaction(request: web.Request) -> web.Response:
    actor = _actor(request)
    patch = await _body(request, InteractionPatch)
    return web.json_response(await _svc(request).interactions.update(_id(request), patch, actor))


# --- pool and care lists -----------------------------------------------------------------


async def pool_list(request: web.Request) -> web.Response:
    actor = _actor(request)
    rows = await _svc(request).store.search(
        request.query.get("q", "")[:256],
        actor,
        owner="",
        limit=_int(request, "limit", 50, 1, 500),
        offset=_int(request, "offset", 0, 0, 10_000_000),
    )
    return web.json_response({"customers": rows})


async def pool_claim(request: web.Request) -> web.Response:
    actor = _actor(request)
    return web.json_response(await _svc(request).pool.claim(_id(request), actor))


async def reassign(request: web.Request) -> web.Response:
    actor = _actor(request, "supervisor")
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise CrmError("the body is not valid JSON") from None
    if isinstance(data, dict) and data.get("owner") is None:
        owner = None
    else:
        owner = AssignIn.model_validate(data).owner
    return web.json_response(await _svc(request).pool.reassign(_id(request), owner, actor))


async def pool_return_now(request: web.Request) -> web.Response:
    _actor(request, "supervisor")
    svc = _svc(request)
    moved = await svc.pool.return_dormant(svc.config.pool_after_days)
    return web.json_response({"returned": moved})


async def care_birthdays(request: web.Request) -> web.Response:
    actor = _actor(request)
    raw = request.query.get("date")
    try:
        day = date.fromisoformat(raw) if raw else date.today()
    except ValueError:
        raise CrmError("date must be YYYY-MM-DD") from None
    return web.json_response({"contacts": await _svc(request).pool.birthdays(day, actor)})


async def care_dormant(request: web.Request) -> web.Response:
    actor = _actor(request)
    svc = _svc(request)
    days = _int(request, "days", svc.config.dormant_days, 1, 3650)
    return web.json_response({"customers": await svc.pool.dormant(days, actor)})


# --- leads -------------------------------------------------------------------------------


async def list_leads(request: web.Request) -> web.Response:
    actor = _actor(request)
    status = request.query.get("status")
    return web.json_response({"leads": await _svc(request).pool.list_leads(actor, status)})


async def create_lead(request: web.Request) -> web.Response:
    actor = _actor(request)
    data = await _body(request, LeadIn)
    return web.json_response(await _svc(request).pool.create_lead(data, actor), status=201)


async def get_lead(request: web.Request) -> web.Response:
    actor = _actor(request)
    return web.json_response(await _svc(request).pool.get_lead(_id(request), actor))


async def patch_lead(request: web.Request) -> web.Response:
    actor = _actor(request)
    patch = await _body(request, LeadPatch)
    return web.json_response(await _svc(request).pool.update_lead(_id(request), patch, actor))


async def assign_lead(request: web.Request) -> web.Response:
    actor = _actor(request, "supervisor")
    data = await _body(request, AssignIn)
    return web.json_response(await _svc(request).pool.assign_lead(_id(request), data.owner, actor))


# --- import / export ---------------------------------------------------------------------


async def import_customers(request: web.Request) -> web.Response:
    actor = _actor(request, "supervisor")
    data = await request.read()
    fmt = request.query.get("format") or ("xlsx" if request.content_type == XLSX else "csv")
    if fmt not in ("csv", "xlsx"):
        raise CrmError("format must be csv or xlsx")
    rows = read_xlsx(data) if fmt == "xlsx" else read_csv(data)
    report = await import_rows(_svc(request).store, rows, actor)
    return web.json_response(report, status=422 if report["errors"] else 200)


async def export_customers(request: web.Request) -> web.Response:
    actor = _actor(request)
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "xlsx"):
        raise CrmError("format must be csv or xlsx")
    rows = await export_rows(_svc(request).store, actor)
    if fmt == "xlsx":
        body, ctype = to_xlsx(rows), XLSX
    else:
        body, ctype = to_csv(rows), "text/csv; charset=utf-8"
    return web.Response(
        body=body,
        headers={
            "Content-Type": ctype,
            "Content-Disposition": f'attachment; filename="customers.{fmt}"',
        },
    )


# --- webhooks (admin) --------------------------------------------------------------------


async def webhooks_status(request: web.Request) -> web.Response:
    _actor(request, "admin")
    return web.json_response(_svc(request).webhooks.status())


async def dead_letters(request: web.Request) -> web.Response:
    _actor(request, "admin")
    limit = _int(request, "limit", 100, 1, 1000)
    return web.json_response({"dead_letters": await _svc(request).webhooks.dead_letters(limit)})


async def retry_dead_letter(request: web.Request) -> web.Response:
    _actor(request, "admin")
    if not await _svc(request).webhooks.retry_dead_letter(_id(request)):
        return json_error(404, "no such dead letter (or its target is no longer configured)")
    return web.json_response({"queued": True})


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v1/customers", list_customers),
    ("POST", "/api/v1/customers", create_customer),
    ("GET", "/api/v1/customers/export", export_customers),
    ("POST", "/api/v1/customers/import", import_customers),
    ("GET", "/api/v1/customers/{id}", get_customer),
    ("PATCH", "/api/v1/customers/{id}", patch_customer),
    ("DELETE", "/api/v1/customers/{id}", delete_customer),
    ("GET", "/api/v1/customers/{id}/audit", customer_audit),
    ("GET", "/api/v1/customers/{id}/interactions", customer_interactions),
    ("POST", "/api/v1/customers/{id}/contacts", add_contact),
    ("POST", "/api/v1/customers/{id}/reassign", reassign),
    ("GET", "/api/v1/contacts/{id}", get_contact),
    ("PATCH", "/api/v1/contacts/{id}", patch_contact),
    ("GET", "/api/v1/search", list_customers),
    ("GET", "/api/v1/lookup", lookup),
    ("POST", "/api/v1/interactions", create_interaction),
    ("GET", "/api/v1/interactions/{id}", get_interaction),
    ("PATCH", "/api/v1/interactions/{id}", patch_interaction),
    ("GET", "/api/v1/pool", pool_list),
    ("POST", "/api/v1/pool/return", pool_return_now),
    ("POST", "/api/v1/pool/{id}/claim", pool_claim),
    ("GET", "/api/v1/care/birthdays", care_birthdays),
    ("GET", "/api/v1/care/dormant", care_dormant),
    ("GET", "/api/v1/leads", list_leads),
    ("POST", "/api/v1/leads", create_lead),
    ("GET", "/api/v1/leads/{id}", get_lead),
    ("PATCH", "/api/v1/leads/{id}", patch_lead),
    ("POST", "/api/v1/leads/{id}/assign", assign_lead),
    ("GET", "/api/v1/webhooks", webhooks_status),
    ("GET", "/api/v1/webhooks/dead-letters", dead_letters),
    ("POST", "/api/v1/webhooks/dead-letters/{id}/retry", retry_dead_letter),
]


def add_routes(app: web.Application, services: CrmServices) -> None:
    app[CRM] = services
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _errors(handler))
