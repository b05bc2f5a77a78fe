"""REST routes of the ACD (all under /api/v1/acd, bearer token required by the app).

Roles: any token reads queues and the lost-caller list; an agent changes only its own
status (token name == agent name) and closes only its queues' lost callers
(:func:`may_work_queue`); a supervisor changes anyone's and reads everything;
an admin configures queues and agents.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from acd import store
from acd.service import AcdService, AgentNotFound, OperationRefused
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.web.auth import audit, principal, require_agent_access, require_role
from cti.web.body import json_object
from cti.web.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from cti.web.openapi import BOOL, STR, arr, doc, obj
from cti.web.params import Flag, Int, When, path_int, time_range

__all__ = ["SERVICE", "add_routes"]

SERVICE = web.AppKey("acd_service", AcdService)
_MAX_BODY = 64 * 1024
_MAX_DEVICES = 8
_MAX_SKILLS = 64
PAUSE_SINCE = When(name="since", description="default: a day before until")
PAUSE_UNTIL = When(name="until", description="default: now")
LOST_OPEN = Flag(name="open", default=True, description="only callers not yet called back")
LOST_LIMIT = Int(name="limit", default=100, lo=1, hi=1000)


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_object(request, max_bytes=_MAX_BODY, allow_empty=True)


def _svc(request: web.Request) -> AcdService:
    return request.app[SERVICE]


def _now() -> datetime:
    return datetime.now(UTC)


@doc(
    "Queues with their configuration and live figures",
    tags=["acd"],
    response=obj({"queues": arr(obj())}),
)
async def list_queues(request: web.Request) -> web.Response:
    svc = _svc(request)
    who = principal(request)
    live = {q["name"]: q for q in svc.live.snapshot(_now())}
    out = []
    for q in await store.list_queues(svc.db):
        if not who.sees_queue(q.name):  # a supervisor scoped to teams
            continue
        d: dict[str, Any] = asdict(q)
        d["live"] = live.get(q.name)
        out.append(d)
    return web.json_response({"queues": out})


async def _queue_config(svc: AcdService, name: str) -> dict[str, Any] | None:
    return next((asdict(q) for q in await store.list_queues(svc.db) if q.name == name), None)


@doc(
    "Create or change a queue (applied to Asterisk live)",
    role="admin",
    tags=["acd"],
    body=obj(),
    body_required=False,
    response=obj({"name": STR, "applied": BOOL}),
)
async def put_queue(request: web.Request) -> web.Response:
    require_role(request, "admin")
    name = request.match_info["name"]
    try:
        params = store.queue_params(name, await _body(request))
    except store.ConfigInvalid as exc:
        raise BadRequest(str(exc)) from None
    svc = _svc(request)
    queues = {q.name for q in await store.list_queues(svc.db)}
    if params.overflow_queue and params.overflow_queue not in queues:
        raise BadRequest(f"overflow_queue: no queue named {params.overflow_queue!r}")
    before = await _queue_config(svc, name)
    await store.put_queue(svc.db, params)
    applied = await _apply(svc)
    await audit(request, "acd.queue.update" if name in queues else "acd.queue.create",
                target_type="queue", target_id=name, before=before,
                after=await _queue_config(svc, name))  # fmt: skip
    return web.json_response({"name": name, "applied": applied})


async def _apply(svc: AcdService) -> bool:
    """Applied to this node's Asterisk now (if it drives one); every other driver is told."""
    svc.queues_changed()
    try:
        return await svc.apply_queues()
    except (NotConnected, TimeoutError, AmiActionError):
        return False  # kept in the store; applied at the next AMI connect


@doc("Delete a queue", role="admin", tags=["acd"], response=obj({"deleted": BOOL}))
async def delete_queue(request: web.Request) -> web.Response:
    require_role(request, "admin")
    svc = _svc(request)
    name = request.match_info["name"]
    before = await _queue_config(svc, name)
    if not await store.delete_queue(svc.db, name):
        raise NotFound("no such queue")
    await _apply(svc)
    await audit(request, "acd.queue.delete", target_type="queue", target_id=name,
                before=before)  # fmt: skip
    return web.json_response({"deleted": True})


def _agent_config(agent: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an admin configures of an agent (its status is the agent's own business)."""
    if agent is None:
        return None
    return {k: agent[k] for k in ("display_name", "devices", "skills")}


def _may_see_agent(request: web.Request, agent: str) -> None:
    require_agent_access(request, agent)


@doc(
    "Agents with their memberships and live state",
    role="supervisor",
    tags=["acd"],
    response=obj({"agents": arr(obj())}),
)
async def list_agents(request: web.Request) -> web.Response:
    who = require_role(request, "supervisor")
    svc = _svc(request)
    agents = [a for a in await store.list_agents(svc.db) if who.sees_agent(a["name"])]
    now = _now()
    for a in agents:
        a["members"] = [
            {"queue": m.queue, **m.snapshot(now)} for m in svc.live.members_named(a["name"])
        ]
    return web.json_response({"agents": agents})


@doc("One agent (agents: only themselves)", tags=["acd"], response=obj())
async def get_agent(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    _may_see_agent(request, name)
    svc = _svc(request)
    agent = await store.get_agent(svc.db, name)
    if agent is None:
        raise NotFound("no such agent")
    now = _now()
    agent["members"] = [{"queue": m.queue, **m.snapshot(now)} for m in svc.live.members_named(name)]
    return web.json_response(agent)


@doc(
    "Create or change an agent: name, devices, skills (queue -> penalty)",
    role="admin",
    tags=["acd"],
    body=obj({"display_name": STR, "devices": arr(obj()), "skills": obj()}),
    body_required=False,
    response=obj(),
)
async def put_agent(request: web.Request) -> web.Response:
    require_role(request, "admin")
    name = request.match_info["name"]
    data = await _body(request)
    try:
        store.check_agent_name(name)
        unknown = set(data) - {"display_name", "devices", "skills"}
        if unknown:
            raise store.ConfigInvalid(f"unknown agent field(s): {', '.join(sorted(unknown))}")
        display = data.get("display_name", "")
        if not isinstance(display, str) or len(display) > 128:
            raise store.ConfigInvalid("display_name: a string of at most 128 characters")
        devices_raw = data.get("devices", [])
        if not isinstance(devices_raw, list) or len(devices_raw) > _MAX_DEVICES:
            raise store.ConfigInvalid(f"devices: a list of at most {_MAX_DEVICES}")
        devices = []
        for d in devices_raw:
            if not isinstance(d, dict):
                raise store.ConfigInvalid("a device is an object {kind, address}")
            devices.append(store.check_device(d.get("kind"), d.get("address")))
        skills_raw = data.get("skills", {})
        if not isinstance(skills_raw, dict) or len(skills_raw) > _MAX_SKILLS:
            raise store.ConfigInvalid(f"skills: an object queue -> penalty (at most {_MAX_SKILLS})")
        skills: dict[str, int] = {}
        for queue, penalty in skills_raw.items():
            store.check_queue_name(queue)
            if type(penalty) is not int or not 0 <= penalty <= 1000:
                raise store.ConfigInvalid("a penalty is an integer 0..1000")
            skills[queue] = penalty
    except store.ConfigInvalid as exc:
        raise BadRequest(str(exc)) from None
    svc = _svc(request)
    before = _agent_config(await store.get_agent(svc.db, name))
    await store.put_agent(svc.db, name, display, devices, skills)
    try:
        await svc.apply_skills(name)
    except (NotConnected, TimeoutError, AmiActionError):
        pass  # applied at the next AMI connect (resync)
    after = await store.get_agent(svc.db, name)
    await audit(request, "acd.agent.update" if before else "acd.agent.create",
                target_type="agent", target_id=name, before=before,
                after=_agent_config(after))  # fmt: skip
    return web.json_response(after)


@doc(
    "Delete an agent (logged out first)",
    role="admin",
    tags=["acd"],
    errors=[503],
    response=obj({"deleted": BOOL}),
)
async def delete_agent(request: web.Request) -> web.Response:
    require_role(request, "admin")
    svc = _svc(request)
    name = request.match_info["name"]
    agent = await store.get_agent(svc.db, name)
    if agent is None:
        raise NotFound("no such agent")
    if agent["status"] != "logged_out":
        try:
            await svc.set_status(name, "logged_out", by=principal(request).actor)
        except (NotConnected, TimeoutError, AmiActionError) as exc:
            raise Unavailable(f"Asterisk: {exc}") from None
    await store.delete_agent(svc.db, name)
    await audit(request, "acd.agent.delete", target_type="agent", target_id=name,
                before=_agent_config(agent))  # fmt: skip
    return web.json_response({"deleted": True})


@doc(
    "Set an agent's status: available, paused with a reason, logged out",
    tags=["acd"],
    errors=[409, 503],
    body=obj({"status": STR, "reason": STR, "device": {"type": "integer"}}),
    response=obj(),
)
async def set_status(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    _may_see_agent(request, name)
    data = await _body(request)
    status, reason, device = data.get("status"), data.get("reason", ""), data.get("device", 0)
    if not isinstance(status, str) or not isinstance(reason, str) or type(device) is not int:
        raise BadRequest("status and reason are strings, device an integer")
    try:
        agent = await _svc(request).set_status(
            name, status, reason, by=principal(request).actor, device=device
        )
    except AgentNotFound:
        raise NotFound("no such agent") from None
    except OperationRefused as exc:
        raise BadRequest(str(exc)) from None
    except (NotConnected, TimeoutError) as exc:
        raise Unavailable(f"Asterisk unreachable: {exc}") from None
    except AmiActionError as exc:
        raise Conflict(f"Asterisk refused: {exc}") from None
    return web.json_response(agent)


@doc("An agent's status history", tags=["acd"], response=obj({"history": arr(obj())}))
async def agent_history(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    _may_see_agent(request, name)
    return web.json_response({"history": await store.status_history(_svc(request).db, name)})


@doc(
    "Pause time by reason over a time range",
    role="supervisor",
    tags=["acd"],
    query=[PAUSE_SINCE, PAUSE_UNTIL],
    response=obj({"since": STR, "until": STR, "pause_s": obj()}),
)
async def pause_report(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    since, until = time_range(
        request, since=PAUSE_SINCE.name, until=PAUSE_UNTIL.name,
        default_span=timedelta(days=1), max_span=timedelta(days=400),
    )  # fmt: skip
    report = await store.pause_time_by_reason(_svc(request).db, since, until)
    return web.json_response(
        {"since": since.isoformat(), "until": until.isoformat(), "pause_s": report}
    )


@doc("Live queue figures", role="supervisor", tags=["acd"], response=obj({"queues": arr(obj())}))
async def live(request: web.Request) -> web.Response:
    who = require_role(request, "supervisor")
    queues = [q for q in _svc(request).live.snapshot(_now()) if who.sees_queue(str(q["name"]))]
    return web.json_response({"queues": queues})


@doc("The configured pause reasons", tags=["acd"], response=obj({"reasons": arr()}))
async def pause_reasons(request: web.Request) -> web.Response:
    return web.json_response({"reasons": list(_svc(request).settings.pause_reasons)})


@doc(
    "Lost callers (abandoned, not yet called back)",
    tags=["acd"],
    query=[LOST_OPEN, LOST_LIMIT],
    response=obj({"lost_callers": arr(obj())}),
)
async def list_lost(request: web.Request) -> web.Response:
    rows = await store.list_lost(
        _svc(request).db, open_only=LOST_OPEN.read(request), limit=LOST_LIMIT.value(request)
    )
    return web.json_response({"lost_callers": rows})


async def may_work_queue(request: web.Request, queue: str) -> bool:
    """Who may act on a queue's work (a lost caller, a callback): its supervisors (a
    supervisor scoped to teams: their queues) and the agents who have it as a skill."""
    p = principal(request)
    if p.at_least("supervisor"):
        return p.sees_queue(queue)
    agent = await store.get_agent(_svc(request).db, p.name)
    return agent is not None and queue in agent["skills"]


@doc(
    "Close a lost caller (called back, or manually): only agents of its queue and its supervisors",
    tags=["acd"],
    body=obj({"by": {"type": "string", "enum": ["called_back", "manual"]}}),
    body_required=False,
    response=obj({"closed": BOOL}),
)
async def close_lost(request: web.Request) -> web.Response:
    lost_id = path_int(request)
    data = await _body(request)
    by = data.get("by", "called_back")
    if by not in ("called_back", "manual"):
        raise BadRequest("by must be called_back or manual")
    svc = _svc(request)
    row = await store.get_lost(svc.db, lost_id)
    if row is None or row["closed_at"] is not None:
        raise NotFound("no such open lost caller")
    if not await may_work_queue(request, row["queue"]):
        raise Forbidden(
            f"only agents and supervisors of queue {row['queue']!r} may close this lost caller",
            code="not-your-queue",
        )
    if not await store.close_lost(svc.db, lost_id, _now(), by):
        raise NotFound("no such open lost caller")
    return web.json_response({"closed": True})


def add_routes(app: web.Application, service: AcdService) -> None:
    app[SERVICE] = service
    r = app.router
    r.add_get("/api/v1/acd/queues", list_queues)
    r.add_put("/api/v1/acd/queues/{name}", put_queue)
    r.add_delete("/api/v1/acd/queues/{name}", delete_queue)
    r.add_get("/api/v1/acd/agents", list_agents)
    r.add_get("/api/v1/acd/agents/{name}", get_agent)
    r.add_put("/api/v1/acd/agents/{name}", put_agent)
    r.add_delete("/api/v1/acd/agents/{name}", delete_agent)
    r.add_post("/api/v1/acd/agents/{name}/status", set_status)
    r.add_get("/api/v1/acd/agents/{name}/history", agent_history)
    r.add_get("/api/v1/acd/reports/pause", pause_report)
    r.add_get("/api/v1/acd/live", live)
    r.add_get("/api/v1/acd/pause-reasons", pause_reasons)
    r.add_get("/api/v1/acd/lost-callers", list_lost)
    r.add_post("/api/v1/acd/lost-callers/{id}/close", close_lost)
