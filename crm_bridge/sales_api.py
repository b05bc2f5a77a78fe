"""REST routes of sales: the dashboard's figures, reassigning stale leads, and the public
web form a site posts leads to (``POST /forms/lead?key=…``, outside ``/api/``: no account,
a per-form key, rate limited per client address, validated like every input)."""

from __future__ import annotations

import hmac
import json
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from crm_bridge.access import SYSTEM
from crm_bridge.api import CRM, TAG, Handler, Req, _errors, endpoint
from crm_bridge.errors import CrmError
from crm_bridge.models import Customer, Email, Phone
from crm_bridge.opportunities import Opportunities, reminders
from crm_bridge.ratelimit import RateLimiter
from crm_bridge.schemas import CustomerIn, LeadIn, Name, Notes, _storable
from crm_bridge.schemas import Email as EmailText
from cti.web.body import read_body
from cti.web.openapi import arr, doc, obj
from cti.web.params import Day, Int

__all__ = ["SALES", "add_sales_routes"]

SALES = web.AppKey("crm_sales", Opportunities)
FORM_LIMITER = web.AppKey("crm_form_limiter", RateLimiter)
FORM_MAX_BYTES = 16 * 1024

FROM = Day(name="from", description="first day (UTC), default: 29 days before to")
TO = Day(name="to", description="last day (UTC, included), default: today")


@doc(
    "Sales dashboard: pipeline by stage, won vs target, activities per agent, daily trend",
    tags=TAG,
    query=[FROM, TO],
    response=obj(
        {
            "pipeline": arr(obj()),
            "won": obj(),
            "target": {"type": "number"},
            "activities": arr(obj()),
            "trend": arr(obj()),
        }
    ),
)
@endpoint()
async def dashboard(r: Req) -> Any:
    last = TO.read(r.request) or date.today()
    first = FROM.read(r.request) or last - timedelta(days=29)
    if first > last or (last - first).days > 366:
        raise CrmError("from must be on or before to, at most 366 days apart")
    return await r.request.app[SALES].dashboard(r.actor, first, last + timedelta(days=1))


@doc(
    "Give open leads nobody changed for some days to the owner the rule names now",
    role="supervisor",
    tags=TAG,
    query=[Int(name="days", lo=1, hi=3650)],
    response=obj({"leads": arr(obj())}),
)
@endpoint("supervisor")
async def reassign_stale(r: Req) -> Any:
    days = r.int("days", r.svc.config.lead_stale_days, 1, 3650)
    return {"leads": await r.request.app[SALES].reassign_stale(days, r.actor)}


@doc(
    "Today's reminders for the worklist: follow-ups due, birthdays, dormant customers",
    tags=TAG,
    query=[Day(name="date", description="default: today")],
    response=obj({"reminders": arr(obj())}),
)
@endpoint()
async def get_reminders(r: Req) -> Any:
    day = Day(name="date").read(r.request) or date.today()
    found = await reminders(r.svc.pool, r.actor, day, r.svc.config.dormant_days)
    return {"reminders": found}


# --- the public web form -----------------------------------------------------------------

Short = Annotated[str, Field(max_length=256), AfterValidator(_storable)]
Phone48 = Annotated[str, Field(max_length=48), AfterValidator(_storable)]
Label64 = Annotated[str, Field(max_length=64), AfterValidator(_storable)]


class LeadFormIn(BaseModel):
    """What a site's form posts (JSON or ``application/x-www-form-urlencoded``)."""

    model_config = ConfigDict(extra="ignore")  # a site's form carries its own fields too

    name: Name
    phone: Phone48 = ""
    email: EmailText | None = None
    company: Short = ""
    title: Short = ""
    message: Notes = ""
    industry: Label64 = ""
    region: Label64 = ""


async def _form_data(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > FORM_MAX_BYTES:
        raise CrmError(f"the form is larger than {FORM_MAX_BYTES} bytes")
    raw = await read_body(request.content, FORM_MAX_BYTES)
    if len(raw) > FORM_MAX_BYTES:
        raise CrmError(f"the form is larger than {FORM_MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CrmError("the form is not UTF-8") from None
    if request.content_type == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            raise CrmError("the body is not JSON") from None
        if not isinstance(data, dict):
            raise CrmError("the body must be a JSON object")
        return data
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=50)
        except ValueError:
            raise CrmError("too many fields") from None
        return {k: v for k, v in pairs if not (k == "email" and v == "")}
    raise CrmError("send the form as JSON or application/x-www-form-urlencoded")


async def lead_form(request: web.Request) -> web.StreamResponse:
    svc = request.app[CRM]
    form = svc.config.lead_form
    key = request.query.get("key", "")
    if not form.keys or not any(hmac.compare_digest(key, k) for k in form.keys):
        raise web.HTTPNotFound(text='{"error": "no such form"}', content_type="application/json")
    if not request.app[FORM_LIMITER].allow(request.remote or "?"):
        return web.json_response(
            {"error": "too many requests: try again in a minute"},
            status=429,
            headers={"Retry-After": "60"},
        )
    try:
        data = LeadFormIn.model_validate(await _form_data(request))
        if not data.phone and data.email is None:
            raise CrmError("a phone number or an e-mail address is needed")
        e164 = svc.store.e164(data.phone) if data.phone else ""
        if data.phone and not e164:
            raise CrmError("phone: not a phone number")
        lead = await _capture(request, data, e164)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        return web.json_response({"error": f"{field}: {first['msg']}"}, status=400)
    except CrmError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    return web.json_response({"ok": True, "lead_id": lead["id"]}, status=201)


async def _capture(request: web.Request, data: LeadFormIn, e164: str) -> dict[str, Any]:
    """The customer with this number or e-mail (any owner), else a new one; then the lead
    (source ``web_form``), whose owner the assignment rule picks; a new customer goes to
    the lead's owner too."""
    svc = request.app[CRM]
    async with svc.store.db.session() as session:
        found = None
        if e164:
            found = await session.scalar(
                select(Phone.customer_id).where(Phone.e164 == e164).order_by(Phone.id).limit(1)
            )
        if found is None and data.email is not None:
            found = await session.scalar(
                select(Email.customer_id)
                .where(Email.address_key == data.email.strip().lower())
                .order_by(Email.id)
                .limit(1)
            )
        region = ""
        if found is not None:
            region = (
                await session.scalar(select(Customer.region).where(Customer.id == found))
            ) or ""
    created = found is None
    if found is None:
        customer = await svc.store.create_customer(
            CustomerIn(
                name=data.name,
                company=data.company,
                phones=[data.phone] if data.phone else [],
                emails=[data.email] if data.email else [],
                force=True,
            ),
            SYSTEM,
        )
        found, region = customer["id"], customer["region"]
    lead = await svc.pool.create_lead(
        LeadIn(
            customer_id=found,
            title=data.title or f"Web form: {data.name}"[:256],
            notes=data.message,
            industry=data.industry,
            region=data.region or region,
        ),
        SYSTEM,
        source="web_form",
    )
    if created and lead["owner"]:
        await svc.pool.reassign(found, lead["owner"], SYSTEM)
    return lead


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v1/crm/dashboard", dashboard),
    ("POST", "/api/v1/leads/reassign-stale", reassign_stale),
    ("GET", "/api/v1/crm/reminders", get_reminders),
]


def add_sales_routes(app: web.Application, opportunities: Opportunities) -> None:
    app[SALES] = opportunities
    form = app[CRM].config.lead_form
    app[FORM_LIMITER] = RateLimiter(form.per_minute, form.burst, form.total_per_minute)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _errors(handler))
    app.router.add_post("/forms/lead", lead_form)
