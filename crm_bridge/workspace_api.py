"""REST routes of the customer pages (docs/crm.md, "Workspace"): the duplicate check
before a create, merge, bulk moves and the admin-defined custom fields."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from crm_bridge.api import CRM, TAG, Handler, Req, _errors, endpoint
from crm_bridge.custom import FieldsIn, load_fields, save_fields
from crm_bridge.duplicates import find_duplicates
from crm_bridge.schemas import AgentName, CustomerIn
from crm_bridge.workspace import MAX_BULK, Workspace
from cti.web.openapi import arr, doc, obj

__all__ = ["WORKSPACE", "add_workspace_routes"]

WORKSPACE = web.AppKey("crm_workspace", Workspace)

Id = Annotated[int, Field(ge=1, le=2**62)]


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duplicate_id: Id


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_BULK)]
    owner: AgentName | None  # null: back to the public pool


@doc(
    "Which customers a record about to be created may repeat (nothing is created)",
    tags=TAG,
    body=CustomerIn,
    response=obj({"candidates": arr(obj())}),
)
@endpoint()
async def check_duplicates(r: Req) -> Any:
    data = await r.body(CustomerIn)
    store = r.svc.store
    contacts = data.all_contacts()
    e164s = [store.e164(p.number) for c in contacts for p in c.phones]
    async with store.db.session() as session:
        found = await find_duplicates(
            session,
            actor=r.actor,
            names=[data.name, *(c.name for c in contacts)],
            company=data.company,
            e164s=[e for e in e164s if e],
            emails=[e for c in contacts for e in c.emails],
        )
    return {"candidates": found}


@doc(
    "Merge a duplicate into this customer (its contacts, calls, notes, opportunities and "
    "history move here; the duplicate is deleted)",
    tags=TAG,
    body=MergeIn,
    response=obj(),
)
@endpoint()
async def merge(r: Req) -> Any:
    data = await r.body(MergeIn)
    return await r.request.app[WORKSPACE].merge(r.id(), data.duplicate_id, r.actor)


@doc(
    "Give many customers to an agent (supervisor) or back to the public pool",
    tags=TAG,
    body=BulkIn,
    response=obj({"customers": arr(obj())}),
)
@endpoint()
async def bulk_move(r: Req) -> Any:
    data = await r.body(BulkIn)
    moved = await r.request.app[WORKSPACE].bulk_move(data.ids, data.owner, r.actor)
    return {"customers": moved}


@doc("The custom fields of a customer card", tags=TAG, response=obj({"fields": arr(obj())}))
@endpoint()
async def get_fields(r: Req) -> Any:
    async with r.svc.store.db.session() as session:
        return {"fields": [f.model_dump() for f in await load_fields(session)]}


@doc(
    "Set the custom fields of every customer card (the whole ordered list)",
    role="admin",
    tags=TAG,
    body=FieldsIn,
    response=obj({"fields": arr(obj())}),
)
@endpoint("admin")
async def put_fields(r: Req) -> Any:
    data = await r.body(FieldsIn)
    async with r.svc.store.db.session() as session, session.begin():
        await save_fields(session, data.fields)
    return {"fields": [f.model_dump() for f in data.fields]}


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/api/v1/customers/duplicates", check_duplicates),
    ("POST", "/api/v1/customers/bulk", bulk_move),
    ("POST", "/api/v1/customers/{id}/merge", merge),
    ("GET", "/api/v1/crm/custom-fields", get_fields),
    ("PUT", "/api/v1/crm/custom-fields", put_fields),
]


def add_workspace_routes(app: web.Application) -> None:
    app[WORKSPACE] = Workspace(app[CRM].store)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _errors(handler))
