"""REST routes of messaging (docs/messaging.md). Agents send to customers they may see
and read their messages; supervisors manage templates, preview and start mass sends and
remove opt-outs."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cti.web.auth import require_role
from cti.web.body import model_body
from cti.web.errors import ApiError
from cti.web.openapi import BOOL, arr, doc, obj
from cti.web.params import Day, Int, path_int
from messaging.digest import DailyDigest
from messaging.service import MessagingError, Messenger

__all__ = ["DIGEST", "MESSENGER", "add_digest_routes", "add_routes"]

MESSENGER = web.AppKey("messenger", Messenger)
DIGEST = web.AppKey("digest", DailyDigest)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TAG = ["messaging"]


def _text(value: str) -> str:
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


Id = Annotated[int, Field(ge=1, le=2**62)]
FieldValue = Annotated[str, Field(max_length=256), AfterValidator(_text)]
QueryValue = Annotated[str, Field(max_length=256), AfterValidator(_text)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateIn(_In):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    channel: Literal["sms", "email"]
    subject: Annotated[str, Field(max_length=256), AfterValidator(_text)] = ""
    body: Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_text)]
    provider_template: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")] = ""


class SendIn(_In):
    customer_id: Id
    template_id: Id
    to: Annotated[str, Field(max_length=320)] | None = None  # one of the customer's
    fields: Annotated[dict[str, FieldValue], Field(max_length=32)] = Field(default_factory=dict)


class MassIn(_In):
    template_id: Id
    # the customer list's filters: q, owner, tier, region, tag, contacted_after/before
    query: Annotated[dict[str, QueryValue], Field(max_length=16)] = Field(default_factory=dict)


class OptOutIn(_In):
    channel: Literal["sms", "email"]
    address: Annotated[str, Field(min_length=3, max_length=320), AfterValidator(_text)]
    reason: Annotated[str, Field(max_length=256), AfterValidator(_text)] = ""


class DigestAddressIn(_In):
    # "" removes the address (no digest)
    email: Annotated[
        str, Field(max_length=320, pattern=r"^$|^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
    ]


MESSAGE = obj()
CUSTOMER = Int(name="customer_id", lo=1, hi=2**62, required=True)
LIMIT = Int(name="limit", default=100, lo=1, hi=1000)


def route(role: str, status: int = 200) -> Callable[[Callable[..., Awaitable[Any]]], Handler]:
    def wrap(op: Callable[..., Awaitable[Any]]) -> Handler:
        @functools.wraps(op)
        async def handler(request: web.Request) -> web.StreamResponse:
            principal = require_role(request, role)
            try:
                out = await op(request, request.app[MESSENGER], principal)
            except MessagingError as exc:
                raise ApiError(exc.message, status=exc.status) from None
            return web.json_response(out, status=status)

        return handler

    return wrap


@doc(
    "A customer's messages (SMS and e-mail) with their status",
    tags=TAG,
    query=[CUSTOMER, LIMIT],
    errors=[503],
    response=obj({"messages": arr(MESSAGE)}),
)
@route("agent")
async def list_messages(request: web.Request, m: Messenger, who: Any) -> Any:
    customer = CUSTOMER.read(request)
    assert customer is not None
    return {"messages": await m.for_customer(customer, who, LIMIT.value(request))}


@doc(
    "Send a template to one customer (503: the channel is not configured)",
    tags=TAG,
    status=201,
    errors=[503],
    body=SendIn,
    response=MESSAGE,
)
@route("agent", 201)
async def send(request: web.Request, m: Messenger, who: Any) -> Any:
    data = await model_body(request, SendIn)
    return await m.send_to_customer(
        data.customer_id, data.template_id, who, to=data.to, extra=data.fields
    )


@doc(
    "How many customers a mass send would reach (opted-out and unreachable apart)",
    role="supervisor",
    tags=TAG,
    errors=[503],
    body=MassIn,
    response=obj(),
)
@route("supervisor")
async def preview(request: web.Request, m: Messenger, who: Any) -> Any:
    data = await model_body(request, MassIn)
    return await m.preview(data.query, data.template_id, who)


@doc(
    "Send a template to every customer of a filtered list (throttled)",
    role="supervisor",
    tags=TAG,
    status=201,
    errors=[503],
    body=MassIn,
    response=obj(),
)
@route("supervisor", 201)
async def mass(request: web.Request, m: Messenger, who: Any) -> Any:
    data = await model_body(request, MassIn)
    return await m.mass_send(data.query, data.template_id, who)


@doc("A mass send's progress", role="supervisor", tags=TAG, response=obj())
@route("supervisor")
async def batch(request: web.Request, m: Messenger, who: Any) -> Any:
    return await m.batch(path_int(request))


@doc("Message templates", tags=TAG, response=obj({"templates": arr(obj())}))
@route("agent")
async def templates(request: web.Request, m: Messenger, who: Any) -> Any:
    return {"templates": await m.templates()}


@doc(
    "Add a template ({field} is replaced)",
    role="supervisor",
    tags=TAG,
    status=201,
    errors=[409],
    body=TemplateIn,
    response=obj(),
)
@route("supervisor", 201)
async def add_template(request: web.Request, m: Messenger, who: Any) -> Any:
    data = await model_body(request, TemplateIn)
    return await m.save_template(data.model_dump(), None)


@doc("Change a template", role="supervisor", tags=TAG, body=TemplateIn, response=obj())
@route("supervisor")
async def put_template(request: web.Request, m: Messenger, who: Any) -> Any:
    data = await model_body(request, TemplateIn)
    return await m.save_template(data.model_dump(), path_int(request))


@doc("Delete a template", role="supervisor", tags=TAG, response=obj({"deleted": BOOL}))
@route("supervisor")
async def delete_template(request: web.Request, m: Messenger, who: Any) -> Any:
    await m.delete_template(path_int(request))
    return {"deleted": True}


@doc(
    "Addresses that receive no messages",
    tags=TAG,
    query=[LIMIT],
    response=obj({"opt_outs": arr(obj())}),
)
@route("agent")
async def opt_outs(request: web.Request, m: Messenger, who: Any) -> Any:
    return {"opt_outs": await m.opt_outs(LIMIT.value(request))}


@doc("Opt an address out (the customer asked)", tags=TAG, status=201, body=OptOutIn, response=obj())
@route("agent", 201)
async def add_opt_out(request: web.Request, m: Messenger, who: Any) -> Any:
    data = await model_body(request, OptOutIn)
    return await m.add_opt_out(data.channel, data.address, data.reason, who.name)


@doc("Remove an opt-out", role="supervisor", tags=TAG, response=obj({"deleted": BOOL}))
@route("supervisor")
async def remove_opt_out(request: web.Request, m: Messenger, who: Any) -> Any:
    if not await m.remove_opt_out(path_int(request)):
        raise MessagingError("no such opt-out", 404)
    return {"deleted": True}


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v1/messages", list_messages),
    ("POST", "/api/v1/messages", send),
    ("POST", "/api/v1/messages/preview", preview),
    ("POST", "/api/v1/messages/mass", mass),
    ("GET", "/api/v1/messages/batches/{id}", batch),
    ("GET", "/api/v1/message-templates", templates),
    ("POST", "/api/v1/message-templates", add_template),
    ("PUT", "/api/v1/message-templates/{id}", put_template),
    ("DELETE", "/api/v1/message-templates/{id}", delete_template),
    ("GET", "/api/v1/opt-outs", opt_outs),
    ("POST", "/api/v1/opt-outs", add_opt_out),
    ("DELETE", "/api/v1/opt-outs/{id}", remove_opt_out),
]


def add_routes(app: web.Application, messenger: Messenger) -> None:
    app[MESSENGER] = messenger
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)


# --- the daily digest --------------------------------------------------------------------


@doc(
    "Where each person's daily digest goes",
    role="supervisor",
    tags=TAG,
    response=obj({"addresses": arr(obj())}),
)
async def digest_addresses(request: web.Request) -> web.StreamResponse:
    require_role(request, "supervisor")
    return web.json_response({"addresses": await request.app[DIGEST].addresses()})


@doc(
    "Set (or with \"\" remove) where a person's daily digest goes: one's own, or anyone's "
    "for an admin",
    tags=TAG,
    body=DigestAddressIn,
    response=obj(),
)
async def put_digest_address(request: web.Request) -> web.StreamResponse:
    who = require_role(request, "agent")
    login = request.match_info["login"]
    if login != who.login and not who.at_least("admin"):
        raise ApiError("only an admin sets another person's digest address", status=403)
    if not 1 <= len(login) <= 64:
        raise ApiError("no such login", status=404)
    data = await model_body(request, DigestAddressIn)
    return web.json_response(await request.app[DIGEST].set_address(login, data.email, who.actor))


@doc(
    "Whose digest of a day went out (status per person)",
    role="supervisor",
    tags=TAG,
    query=[Day(name="date", description="default: today")],
    response=obj({"digests": arr(obj())}),
)
async def digest_day(request: web.Request) -> web.StreamResponse:
    require_role(request, "supervisor")
    day = Day(name="date").read(request) or date.today()
    return web.json_response({"digests": await request.app[DIGEST].days(day)})


DIGEST_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v1/digest/addresses", digest_addresses),
    ("PUT", "/api/v1/digest/addresses/{login}", put_digest_address),
    ("GET", "/api/v1/digest/days", digest_day),
]


def add_digest_routes(app: web.Application, digest: DailyDigest) -> None:
    app[DIGEST] = digest
    for method, path, handler in DIGEST_ROUTES:
        app.router.add_route(method, path, handler)
