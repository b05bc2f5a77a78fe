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
from acd.callbacks import CallbackError, Callbacks
from acd.outbound import InvalidNumber, valid_number
from acd.routes import SERVICE, _body, _may_see_agent, _svc
from acd.service import AgentNotFound, OperationRefused
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.web.app import PRINCIPAL, ROLES_ORDER, json_error

__all__ = ["CALLBACKS", "add_outbound_routes"]

CALLBACKS = web.AppKey("acd_callbacks", Callbacks)
REGION = web.AppKey("acd_region", str)
_OUTCOME = re.compile(r"[a-z_]{1,32}")
_BUSY = ("ringing", "on_call", "on_hold")


def _is_supervisor(request: web.Request) -> bool:
    return ROLES_ORDER.get(request[PRINCIPAL].role, -1) >= ROLES_ORDER["supervisor"]


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPBadRequest(reason="bad id")
    return int(raw)


async def click_to_call(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    _may_see_agent(request, name)
    data = await _body(request)
    svc, callbacks = _svc(request), request.app[CALLBACKS]
    now = datetime.now(UTC)
    if any(m.snapshot(now)["state"] in _BUSY for m in svc.live.members_named(name)):
        return json_error(409, "the agent is on a call")
    try:
        number = valid_number(data.get("number"), request.app[REGION])
        iface = await svc.agent_interface(name)
        call = await callbacks.dialer.dial_via_agent(name, iface, number, kind="click_to_call")
    except InvalidNumber as exc:
        return json_error(400, str(exc))
    except AgentNotFound:
        return json_error(404, "no such agent")
    except OperationRefused as exc:
        return json_error(409, str(exc))
    except (NotConnected, TimeoutError) as exc:
        return json_error(503, f"Asterisk unreachable: {exc}")
    except AmiActionError as exc:
        return json_error(409, f"Asterisk refused: {exc}")
    svc.notifier.outbound_started(name, datetime.now(UTC), call.linkedid, number, "click_to_call")
    return web.json_response({"linkedid": call.linkedid, "number": number}, status=202)


async def _visible(request: web.Request, row: dict[str, Any]) -> bool:
    if _is_supervisor(request):
        return True
    me = request[PRINCIPAL].name
    agent = await store.get_agent(_svc(request).db, me)
    return row["agent"] == me or (agent is not None and row["queue"] in agent["skills"])


async def list_callbacks(request: web.Request) -> web.Response:
    status = request.query.get("status", "open")
    if status not in ("open", "done", "all"):
        return json_error(400, "status must be open, done or all")
    raw = request.query.get("limit", "200")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        return json_error(400, "limit must be between 1 and 1000")
    svc = _svc(request)
    queues: list[str] | None = None
    me = request[PRINCIPAL].name
    if not _is_supervisor(request):
        agent = await store.get_agent(svc.db, me)
        queues = list(agent["skills"]) if agent is not None else []
    rows = await cbs.list_callbacks(svc.db, status=status, queues=queues, agent=me, limit=int(raw))
    return web.json_response({"callbacks": rows})


async def dial_callback(request: web.Request) -> web.Response:
    cid = _id(request)
    svc, callbacks = _svc(request), request.app[CALLBACKS]
    row = await cbs.get(svc.db, cid)
    if row is None or not await _visible(request, row):
        return json_error(404, "no such callback")
    me = request[PRINCIPAL].name
    try:
        iface = await svc.agent_interface(me)
        call = await callbacks.dial(cid, me, iface)
    except AgentNotFound:
        return json_error(409, "only a configured agent can dial a callback")
    except (OperationRefused, CallbackError) as exc:
        return json_error(409, str(exc))
    except LookupError:
        return json_error(404, "no such callback")
    except (NotConnected, TimeoutError) as exc:
        return json_error(503, f"Asterisk unreachable: {exc}")
    except AmiActionError as exc:
        return json_error(409, f"Asterisk refused: {exc}")
    return web.json_response({"linkedid": call.linkedid}, status=202)


async def close_callback(request: web.Request) -> web.Response:
    cid = _id(request)
    svc, callbacks = _svc(request), request.app[CALLBACKS]
    data = await _body(request)
    outcome = data.get("outcome", "closed")
    if not isinstance(outcome, str) or not _OUTCOME.fullmatch(outcome):
        return json_error(400, "outcome: 1-32 of a-z and _")
    row = await cbs.get(svc.db, cid)
    if row is None or not await _visible(request, row):
        return json_error(404, "no such callback")
    if not await callbacks.close(cid, outcome, request[PRINCIPAL].name):
        return json_error(409, "callback already closed")
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
