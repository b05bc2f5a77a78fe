"""REST routes for calls the ACD places: click-to-call and callbacks (contracts.md).

- ``POST /api/v1/acd/agents/{name}/dial`` {"number"} → 202 {"linkedid"}
- ``GET /api/v1/acd/callbacks?status=open|done|all``: an agent sees the requests of its
  queues and those assigned to it, a supervisor all
- ``POST /api/v1/acd/callbacks/{id}/dial``: the calling agent takes it and dials now
- ``POST /api/v1/acd/callbacks/{id}/close`` {"outcome"}
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from acd import callback_store as cbs
from acd import store
from acd.callbacks import CallbackError, CallbackRefused, Callbacks
from acd.outbound import DialRefused, InvalidNumber, valid_number
from acd.routes import SERVICE, _body, _may_see_agent, _svc, may_work_queue
from acd.service import AgentNotFound, OperationRefused
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.services import DialDecision
from cti.web.auth import has_role, principal
from cti.web.errors import ApiError, BadRequest, Conflict, NotFound, Unavailable
from cti.web.openapi import STR, arr, doc, obj
from cti.web.params import Choice, Int, path_int

__all__ = ["CALLBACKS", "add_outbound_routes"]

CALLBACKS = web.AppKey("acd_callbacks", Callbacks)
REGION = web.AppKey("acd_region", str)
_OUTCOME = re.compile(r"[a-z_]{1,32}")
_BUSY = ("ringing", "on_call", "on_hold")


CB_STATUS = Choice(name="status", choices=("open", "done", "all"), default="open")
CB_LIMIT = Int(name="limit", default=200, lo=1, hi=1000)


def refusal(decision: DialDecision) -> ApiError:
    """The answer to a dial the dial policy refused: 429 for an agent's daily limit, 503
    without a policy, 403 otherwise; the policy's code and reason in the body."""
    status = {"limit": 429, "unavailable": 503}.get(decision.code, 403)
    return ApiError(
        decision.reason, status=status, code=f"dial-{decision.code or 'refused'}",
        details={"code": decision.code, "reason": decision.reason, "number": decision.number},
    )  # fmt: skip


def _is_supervisor(request: web.Request) -> bool:
    return has_role(request, "supervisor")


def _id(request: web.Request) -> int:
    return path_int(request)


@doc(
    "Click-to-call: ring the agent, then dial the number (if the dial policy allows it: "
    "403 with its reason, 429 at the agent's daily limit)",
    tags=["acd"],
    status=202,
    errors=[403, 409, 429, 503],
    body=obj({"number": STR}, required=["number"]),
    response=obj({"linkedid": STR, "number": STR}),
)
async def click_to_call(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    _may_see_agent(request, name)
    data = await _body(request)
    svc, callbacks = _svc(request), request.app[CALLBACKS]
    now = datetime.now(UTC)
    if any(m.snapshot(now)["state"] in _BUSY for m in svc.live.members_named(name)):
        raise Conflict("the agent is on a call")
    try:
        number = valid_number(data.get("number"), request.app[REGION])
        iface = await svc.agent_interface(name)
        call = await callbacks.dialer.dial_via_agent(name, iface, number, kind="click_to_call")
    except InvalidNumber as exc:
        raise BadRequest(str(exc)) from None
    except DialRefused as exc:
        raise refusal(exc.decision) from None
    except AgentNotFound:
        raise NotFound("no such agent") from None
    except OperationRefused as exc:
        raise Conflict(str(exc)) from None
    except (NotConnected, TimeoutError) as exc:
        raise Unavailable(f"Asterisk unreachable: {exc}") from None
    except AmiActionError as exc:
        raise Conflict(f"Asterisk refused: {exc}") from None
    svc.notifier.outbound_started(name, datetime.now(UTC), call.linkedid, number, "click_to_call")
    return web.json_response({"linkedid": call.linkedid, "number": number}, status=202)


async def _visible(request: web.Request, row: dict[str, Any]) -> bool:
    return row["agent"] == principal(request).name or await may_work_queue(request, row["queue"])


@doc(
    "Callback requests (agents: of their queues and their own)",
    tags=["acd"],
    query=[CB_STATUS, CB_LIMIT],
    response=obj({"callbacks": arr(obj())}),
)
async def list_callbacks(request: web.Request) -> web.Response:
    status = CB_STATUS.value(request)
    limit = CB_LIMIT.value(request)
    svc = _svc(request)
    queues: list[str] | None = None
    me = principal(request).name
    if not _is_supervisor(request):
        agent = await store.get_agent(svc.db, me)
        queues = list(agent["skills"]) if agent is not None else []
    rows = await cbs.list_callbacks(svc.db, status=status, queues=queues, agent=me, limit=limit)
    return web.json_response({"callbacks": rows})


@doc(
    "Take a callback and dial it now (the dial policy applies as for click-to-call)",
    tags=["acd"],
    status=202,
    errors=[403, 409, 429, 503],
    response=obj({"linkedid": STR}),
)
async def dial_callback(request: web.Request) -> web.Response:
    cid = _id(request)
    svc, callbacks = _svc(request), request.app[CALLBACKS]
    row = await cbs.get(svc.db, cid)
    if row is None or not await _visible(request, row):
        raise NotFound("no such callback")
    me = principal(request).name
    try:
        iface = await svc.agent_interface(me)
        call = await callbacks.dial(cid, me, iface)
    except CallbackRefused as exc:
        raise refusal(exc.decision) from None
    except AgentNotFound:
        raise Conflict("only a configured agent can dial a callback") from None
    except (OperationRefused, CallbackError) as exc:
        raise Conflict(str(exc)) from None
    except LookupError:
        raise NotFound("no such callback") from None
    except (NotConnected, TimeoutError) as exc:
        raise Unavailable(f"Asterisk unreachable: {exc}") from None
    except AmiActionError as exc:
        raise Conflict(f"Asterisk refused: {exc}") from None
    return web.json_response({"linkedid": call.linkedid}, status=202)


@doc(
    "Close a callback with an outcome",
    tags=["acd"],
    errors=[409],
    body=obj({"outcome": STR}),
    body_required=False,
    response=obj(),
)
async def close_callback(request: web.Request) -> web.Response:
    cid = _id(request)
    svc, callbacks = _svc(request), request.app[CALLBACKS]
    data = await _body(request)
    outcome = data.get("outcome", "closed")
    if not isinstance(outcome, str) or not _OUTCOME.fullmatch(outcome):
        raise BadRequest("outcome: 1-32 of a-z and _")
    row = await cbs.get(svc.db, cid)
    if row is None or not await _visible(request, row):
        raise NotFound("no such callback")
    if not await callbacks.close(cid, outcome, principal(request).name):
        raise Conflict("callback already closed")
    return web.json_response(await cbs.get(svc.db, cid))


def add_outbound_routes(app: web.Application, callbacks: Callbacks, region: str) -> None:
    assert SERVICE in app, "acd.routes.add_routes first"
    app[CALLBACKS] = callbacks
    app[REGION] = region
    r = app.router
    r.add_post("/api/v1/acd/agents/{name}/dial", click_to_call)
    r.add_get("/api/v1/acd/callbacks", list_callbacks)
    r.add_post("/api/v1/acd/callbacks/{id}/dial", dial_callback)
    r.add_post("/api/v1/acd/callbacks/{id}/close", close_callback)
