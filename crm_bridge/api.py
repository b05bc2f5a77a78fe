"""REST routes under ``/api/v1/`` (docs/crm.md lists them).

Every route has one shape, written once in :func:`endpoint`: check the role (the token
check itself is the web app's middleware), run the operation with a :class:`Req` (the
services, the actor, and validated access to the body, path and query), answer JSON.
The store then applies per-customer visibility for agents. Errors are JSON
``{"error": ...}`` with a 4xx status (:func:`_errors`); a duplicate is 409 with
``candidates``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from crm_bridge.access import Actor, may_see
from crm_bridge.config import CrmConfig
from crm_bridge.directory import StoreDirectory
from crm_bridge.errors import CrmError
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
    CallInteractionPut,
    ContactIn,
    ContactPatch,
    CustomerIn,
    CustomerPatch,
    InteractionIn,
    InteractionPatch,
    LeadIn,
    LeadPatch,
)
from crm_bridge.search import Filters
from crm_bridge.store import CrmStore
from crm_bridge.webhooks import WebhookDispatcher
from cti.web.auth import require_role
from cti.web.body import json_body, model_body
from cti.web.errors import ApiError, BadRequest, NotFound, Unavailable
from cti.web.openapi import BOOL, arr, doc, obj
from cti.web.params import Choice, Day, Int, Text, date_param, int_param, path_int

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


def _errors(handler: Handler) -> Handler:
    """The CRM's own errors as the one HTTP error type (:mod:`cti.web.errors`)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CrmError as exc:
            raise ApiError(exc.message, status=exc.status, extra=exc.extra) from None
        except ImportFormatError as exc:
            raise BadRequest(str(exc)) from None

    return wrapped


def _svc(request: web.Request) -> CrmServices:
    return request.app[CRM]


@dataclass(frozen=True, slots=True)
class Req:
    """What a route's operation works with."""

    request: web.Request
    svc: CrmServices
    actor: Actor

    def id(self, name: str = "id") -> int:
        return path_int(self.request, name)

    def int(self, name: str, default: int, lo: int, hi: int) -> int:
        return int_param(self.request, name, default, lo, hi)

    def query(self, name: str, default: str = "") -> str:
        return self.request.query.get(name, default)

    async def body(self, model: type[M]) -> M:
        return await model_body(self.request, model, max_bytes=1 << 20)


Operation = Callable[[Req], Awaitable[Any]]


def endpoint(role: str = "agent", *, status: int = 200) -> Callable[[Operation], Handler]:
    """The route shape: role check, the operation, its result as JSON with ``status``
    (an operation may return a ready response instead, e.g. a 404 or a file)."""

    def wrap(operation: Operation) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            principal = require_role(request, role)
            out = await operation(
                Req(request, _svc(request), Actor(principal.name, principal.role))
            )
            if isinstance(out, web.StreamResponse):
                return out
            return web.json_response(out, status=status)

        return functools.wraps(operation)(handler)

    return wrap


# --- customers ---------------------------------------------------------------------------

Q = Text(name="q", max_len=256, description="name, company, phone, e-mail, tag ...")
LIMIT_50 = Int(name="limit", default=50, lo=1, hi=500)
OFFSET = Int(name="offset", default=0, lo=0, hi=10_000_000)
BEFORE_ID = Int(
    name="before",
    default=0,
    lo=0,
    hi=2**31 - 1,
    description="only customers with a smaller id: the next page after the one ending with"
    " this id (keyset paging; cheaper than offset at any depth)",
)
OWNER = Text(name="owner", max_len=128, description='an agent; "" for the public pool')
TIER = Text(name="tier", max_len=32, description="exactly this tier")
REGION = Text(name="region", max_len=64, description="any part of the 号码归属地")
TAG_F = Text(name="tag", max_len=32, description="a whole tag")
AFTER = Day(name="contacted_after", description="last contact on or after this day")
BEFORE = Day(name="contacted_before", description="last contact before this day, or never")
FILTERS = [TIER, REGION, TAG_F, AFTER, BEFORE]
SEARCH_Q = [Q, LIMIT_50, OFFSET, BEFORE_ID, OWNER, *FILTERS]
CUSTOMERS = obj({"customers": arr(obj()), "more": BOOL}, required=["customers"])
TAG = ["crm"]


def _owner_filter(r: Req) -> str | None:
    owner = r.request.query.get("owner")
    if owner is not None and len(owner) > 128:
        raise CrmError("owner too long")
    return owner


def _day_start(d: date | None) -> datetime | None:
    return datetime(d.year, d.month, d.day, tzinfo=UTC) if d is not None else None


def list_filters(r: Req) -> Filters:
    """The customer list's filters from the query string (docs/crm.md)."""
    q = r.request.query
    return Filters(
        tier=TIER.read(r.request) if "tier" in q else None,
        region=REGION.read(r.request) or None,
        tag=TAG_F.read(r.request) or None,
        contacted_after=_day_start(AFTER.read(r.request)),
        contacted_before=_day_start(BEFORE.read(r.request)),
    )


async def _search(r: Req, owner: str | None) -> dict[str, Any]:
    limit = r.int("limit", 50, 1, 500)
    rows = await r.svc.store.search(
        r.query("q")[:256],
        r.actor,
        limit=limit + 1,
        offset=r.int("offset", 0, 0, 10_000_000),
        owner=owner,
        filters=list_filters(r),
        before=BEFORE_ID.value(r.request) or None,
    )
    return {"customers": rows[:limit], "more": len(rows) > limit}


@doc("Search customers (agents: theirs and the pool)", tags=TAG, query=SEARCH_Q, response=CUSTOMERS)
@endpoint()
async def list_customers(r: Req) -> Any:
    return await _search(r, _owner_filter(r))


@doc(
    "Create a customer (409 with candidates when it looks like a duplicate)",
    tags=TAG,
    status=201,
    errors=[409],
    body=CustomerIn,
    response=obj(),
)
@endpoint(status=201)
async def create_customer(r: Req) -> Any:
    return await r.svc.store.create_customer(await r.body(CustomerIn), r.actor)


@doc("One customer", tags=TAG, response=obj())
@endpoint()
async def get_customer(r: Req) -> Any:
    return await r.svc.store.get_customer(r.id(), r.actor)


@doc("Change a customer", tags=TAG, errors=[409], body=CustomerPatch, response=obj())
@endpoint()
async def patch_customer(r: Req) -> Any:
    patch = await r.body(CustomerPatch)
    return await r.svc.store.update_customer(r.id(), patch, r.actor)


@doc("Delete a customer", role="supervisor", tags=TAG, response=obj({"deleted": BOOL}))
@endpoint("supervisor")
async def delete_customer(r: Req) -> Any:
    await r.svc.store.delete_customer(r.id(), r.actor)
    return {"deleted": True}


@doc("Change history of a customer", tags=TAG, response=obj({"audit": arr(obj())}))
@endpoint()
async def customer_audit(r: Req) -> Any:
    return {"audit": await r.svc.store.audit_log(r.id(), r.actor)}


@doc(
    "Interactions of a customer",
    tags=TAG,
    query=[LIMIT_50],
    response=obj({"interactions": arr(obj())}),
)
@endpoint()
async def customer_interactions(r: Req) -> Any:
    rows = await r.svc.interactions.for_customer(r.id(), r.actor, r.int("limit", 50, 1, 500))
    return {"interactions": rows}


@doc(
    "Add a contact to a customer",
    tags=TAG,
    status=201,
    errors=[409],
    query=[Choice(name="force", choices=("1", "true", "0", "false"))],
    body=ContactIn,
    response=obj(),
)
@endpoint(status=201)
async def add_contact(r: Req) -> Any:
    data = await r.body(ContactIn)
    force = r.query("force") in ("1", "true")
    return await r.svc.store.add_contact(r.id(), data, r.actor, force=force)


@doc("One contact", tags=TAG, response=obj())
@endpoint()
async def get_contact(r: Req) -> Any:
    return await r.svc.store.get_contact(r.id(), r.actor)


@doc("Change a contact", tags=TAG, errors=[409], body=ContactPatch, response=obj())
@endpoint()
async def patch_contact(r: Req) -> Any:
    patch = await r.body(ContactPatch)
    return await r.svc.store.update_contact(r.id(), patch, r.actor)


@doc(
    "The customer card for a phone number",
    tags=TAG,
    query=[Text(name="number", max_len=48)],
    response=obj(),
)
@endpoint()
async def lookup(r: Req) -> Any:
    """The customer card of a number, if the actor may see that customer (an agent: its
    own and the pool's; another agent's customer is "not found", as by id)."""
    card = await r.svc.directory.lookup_number(r.query("number")[:48])
    if card is None or not may_see(r.actor, card.owner_agent):
        raise NotFound("no customer with this number")
    data = {k: getattr(card, k) for k in card.__slots__}
    data["tags"] = list(card.tags)
    data["birthday"] = card.birthday.isoformat() if card.birthday else None
    return data


# --- interactions ------------------------------------------------------------------------


@doc("Record an interaction", tags=TAG, status=201, body=InteractionIn, response=obj())
@endpoint(status=201)
async def create_interaction(r: Req) -> Any:
    return await r.svc.interactions.create(await r.body(InteractionIn), r.actor)


@doc("One interaction", tags=TAG, response=obj())
@endpoint()
async def get_interaction(r: Req) -> Any:
    return await r.svc.interactions.get(r.id(), r.actor)


@doc("Change an interaction", tags=TAG, body=InteractionPatch, response=obj())
@endpoint()
async def patch_interaction(r: Req) -> Any:
    patch = await r.body(InteractionPatch)
    return await r.svc.interactions.update(r.id(), patch, r.actor)


@doc("The interaction of a call, by Linkedid", tags=TAG, response=obj())
@endpoint()
async def get_call_interaction(r: Req) -> Any:
    """The interaction of a call by its Linkedid, during the call or after it."""
    return await r.svc.interactions.get_by_call(r.request.match_info["linkedid"], r.actor)


@doc(
    "Notes, disposition and customer of a call",
    tags=TAG,
    errors=[409],
    body=CallInteractionPut,
    response=obj(),
)
@endpoint()
async def put_call_interaction(r: Req) -> Any:
    """Notes, disposition and the customer link of a call (agents: their own calls)."""
    data = await r.body(CallInteractionPut)
    codes = [d.code for d in r.svc.config.dispositions]
    return await r.svc.interactions.put_by_call(
        r.request.match_info["linkedid"], data, r.actor, codes
    )


@doc("The configured dispositions", tags=TAG, response=obj({"dispositions": arr(obj())}))
@endpoint()
async def dispositions(r: Req) -> Any:
    return {"dispositions": [d.model_dump() for d in r.svc.config.dispositions]}


# --- pool and care lists -----------------------------------------------------------------


@doc("The public pool of customers", tags=TAG, query=SEARCH_Q, response=CUSTOMERS)
@endpoint()
async def pool_list(r: Req) -> Any:
    return await _search(r, "")


@doc("Claim a customer from the pool", tags=TAG, errors=[409], response=obj())
@endpoint()
async def pool_claim(r: Req) -> Any:
    return await r.svc.pool.claim(r.id(), r.actor)


@doc(
    "Give a customer to another owner (null: to the pool)",
    role="supervisor",
    tags=TAG,
    body=obj({"owner": {"type": ["string", "null"]}}),
    response=obj(),
)
@endpoint("supervisor")
async def reassign(r: Req) -> Any:
    data = await json_body(r.request)
    if isinstance(data, dict) and data.get("owner") is None:
        owner = None
    else:
        owner = AssignIn.model_validate(data).owner
    return await r.svc.pool.reassign(r.id(), owner, r.actor)


@doc(
    "Return dormant customers to the pool now",
    role="supervisor",
    tags=TAG,
    response=obj({"returned": arr()}),
)
@endpoint("supervisor")
async def pool_return_now(r: Req) -> Any:
    return {"returned": await r.svc.pool.return_dormant(r.svc.config.pool_after_days)}


@doc(
    "Contacts whose birthday it is",
    tags=TAG,
    query=[Day(name="date")],
    response=obj({"contacts": arr(obj())}),
)
@endpoint()
async def care_birthdays(r: Req) -> Any:
    day = date_param(r.request, "date") or date.today()
    return {"contacts": await r.svc.pool.birthdays(day, r.actor)}


@doc(
    "Customers not contacted for some days",
    tags=TAG,
    query=[Int(name="days", lo=1, hi=3650)],
    response=CUSTOMERS,
)
@endpoint()
async def care_dormant(r: Req) -> Any:
    days = r.int("days", r.svc.config.dormant_days, 1, 3650)
    return {"customers": await r.svc.pool.dormant(days, r.actor)}


# --- leads -------------------------------------------------------------------------------


LEAD_CUSTOMER = Int(name="customer_id", lo=1, hi=2**62, description="one customer's")


@doc(
    "Leads",
    tags=TAG,
    query=[Text(name="status", max_len=32), LEAD_CUSTOMER],
    response=obj({"leads": arr(obj())}),
)
@endpoint()
async def list_leads(r: Req) -> Any:
    status = r.request.query.get("status")
    return {"leads": await r.svc.pool.list_leads(r.actor, status, LEAD_CUSTOMER.read(r.request))}


@doc("Create a lead", tags=TAG, status=201, body=LeadIn, response=obj())
@endpoint(status=201)
async def create_lead(r: Req) -> Any:
    return await r.svc.pool.create_lead(await r.body(LeadIn), r.actor)


@doc("One lead", tags=TAG, response=obj())
@endpoint()
async def get_lead(r: Req) -> Any:
    return await r.svc.pool.get_lead(r.id(), r.actor)


@doc("Change a lead", tags=TAG, body=LeadPatch, response=obj())
@endpoint()
async def patch_lead(r: Req) -> Any:
    patch = await r.body(LeadPatch)
    return await r.svc.pool.update_lead(r.id(), patch, r.actor)


@doc("Assign a lead to an agent", role="supervisor", tags=TAG, body=AssignIn, response=obj())
@endpoint("supervisor")
async def assign_lead(r: Req) -> Any:
    data = await r.body(AssignIn)
    return await r.svc.pool.assign_lead(r.id(), data.owner, r.actor)


# --- import / export ---------------------------------------------------------------------


def _format(r: Req, default: str) -> str:
    fmt = r.query("format") or default
    if fmt not in ("csv", "xlsx"):
        raise CrmError("format must be csv or xlsx")
    return fmt


@doc(
    "Import customers from CSV or XLSX (422 with the rows refused)",
    role="supervisor",
    tags=TAG,
    query=[Choice(name="format", choices=("csv", "xlsx"))],
    body={"type": "string"},
    body_type="text/csv",
    response=obj(),
)
@endpoint("supervisor")
async def import_customers(r: Req) -> Any:
    data = await r.request.read()
    fmt = _format(r, "xlsx" if r.request.content_type == XLSX else "csv")
    rows = read_xlsx(data) if fmt == "xlsx" else read_csv(data)
    report = await import_rows(r.svc.store, rows, r.actor)
    return web.json_response(report, status=422 if report["errors"] else 200)


@doc(
    "Export customers (CSV formula-neutralised, or XLSX)",
    tags=TAG,
    query=[Choice(name="format", choices=("csv", "xlsx"), default="csv"), Q, OWNER, *FILTERS],
    content_type=("text/csv", XLSX),
)
@endpoint()
async def export_customers(r: Req) -> Any:
    """The customers the caller may see, limited like the list (search, owner, filters)."""
    fmt = _format(r, "csv")
    rows = await export_rows(
        r.svc.store,
        r.actor,
        q=r.query("q")[:256],
        owner=_owner_filter(r),
        filters=list_filters(r),
    )
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


@doc("Webhook targets and their delivery state", role="admin", tags=TAG, response=obj())
@endpoint("admin")
async def webhooks_status(r: Req) -> Any:
    return r.svc.webhooks.status()


@doc(
    "Webhook deliveries that failed for good",
    role="admin",
    tags=TAG,
    query=[Int(name="limit", default=100, lo=1, hi=1000)],
    response=obj({"dead_letters": arr(obj())}),
)
@endpoint("admin")
async def dead_letters(r: Req) -> Any:
    return {"dead_letters": await r.svc.webhooks.dead_letters(r.int("limit", 100, 1, 1000))}


@doc("Retry a dead letter", role="admin", tags=TAG, response=obj({"queued": BOOL}),
     errors=[503])  # fmt: skip
@endpoint("admin")
async def retry_dead_letter(r: Req) -> Any:
    outcome = await r.svc.webhooks.retry_dead_letter(r.id())
    if outcome == "missing":
        raise NotFound("no such dead letter")
    if outcome == "no-receiver":
        raise NotFound("the dead letter's receiver is no longer configured", code="no-receiver")
    if outcome == "full":
        raise Unavailable("the webhook queue is full: the dead letter stays, retry later")
    return {"queued": True}


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
    ("GET", "/api/v1/interactions/by-call/{linkedid}", get_call_interaction),
    ("PUT", "/api/v1/interactions/by-call/{linkedid}", put_call_interaction),
    ("GET", "/api/v1/dispositions", dispositions),
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
