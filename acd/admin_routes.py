"""The console's ACD routes: a queue's members seen from the queue.

``GET /api/v1/acd/queues/{name}/members`` (supervisor) lists the agents with a skill in
the queue, their penalty and where they are logged in; ``PUT`` (admin) makes a set of
agents and penalties exactly the queue's members. Each agent's other skills are kept;
logged-in agents join, leave or get the new penalty in Asterisk at once (QueueAdd /
QueueRemove / QueuePenalty), calls in progress are not touched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from acd import store
from acd.service import AcdService
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.web.auth import audit, require_role
from cti.web.body import json_object
from cti.web.errors import BadRequest, NotFound
from cti.web.openapi import arr, doc, obj

__all__ = ["add_admin_routes"]

SERVICE = web.AppKey("acd_admin_service", AcdService)
_MAX_MEMBERS = 1000
QUEUE = r"{name:[a-z0-9][a-z0-9_]{0,63}}"
_MEMBERS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0,
                                                       "maximum": 1000}}  # fmt: skip


async def _queue(request: web.Request) -> str:
    name = request.match_info["name"]
    svc = request.app[SERVICE]
    if name not in {q.name for q in await store.list_queues(svc.db)}:
        raise NotFound("no such queue")
    return name


@doc(
    "A queue's members: the agents with a skill in it, their penalty, their state now",
    role="supervisor",
    tags=["acd"],
    response=obj(
        {
            "queue": {"type": "string"},
            "members": arr(
                obj({"agent": {"type": "string"}, "penalty": {"type": "integer"}, "live": {}})
            ),
        }
    ),
)
async def get_members(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    name = await _queue(request)
    svc = request.app[SERVICE]
    members = await store.queue_members(svc.db, name)
    now = datetime.now(UTC)
    live = (
        {m.name: m.snapshot(now) for m in svc.live.queues[name].members.values()}
        if (name in svc.live.queues)
        else {}
    )
    return web.json_response({
        "queue": name,
        "members": [{"agent": a, "penalty": p, "live": live.get(a)} for a, p in members.items()],
    })  # fmt: skip


def _members_body(data: dict[str, Any]) -> dict[str, int]:
    raw = data.get("members")
    if set(data) - {"members"} or not isinstance(raw, dict):
        raise BadRequest('the body is {"members": {"<agent>": <penalty>, ...}}')
    if len(raw) > _MAX_MEMBERS:
        raise BadRequest(f"at most {_MAX_MEMBERS} members")
    out: dict[str, int] = {}
    for agent, penalty in raw.items():
        try:
            store.check_agent_name(agent)
        except store.ConfigInvalid as exc:
            raise BadRequest(str(exc), details={"field": f"members.{agent}"}) from None
        if type(penalty) is not int or not 0 <= penalty <= 1000:
            raise BadRequest(
                "a penalty is an integer 0..1000", details={"field": f"members.{agent}"}
            )
        out[agent] = penalty
    return out


@doc(
    "Make these agents (with these penalties) exactly the queue's members; logged-in "
    "agents join or leave at once",
    role="admin",
    tags=["acd"],
    body=obj({"members": _MEMBERS}, required=["members"], extra=False),
    response=obj(
        {"queue": {"type": "string"}, "members": _MEMBERS, "applied": {"type": "boolean"}}
    ),
)
async def put_members(request: web.Request) -> web.Response:
    require_role(request, "admin")
    name = await _queue(request)
    members = _members_body(await json_object(request))
    svc = request.app[SERVICE]
    before = await store.queue_members(svc.db, name)
    try:
        changed = await store.set_queue_members(svc.db, name, members)
    except store.ConfigInvalid as exc:
        raise BadRequest(str(exc)) from None
    applied = True
    for agent in changed:
        try:
            await svc.apply_skills(agent)
        except (NotConnected, TimeoutError, AmiActionError):
            applied = False  # applied at the next AMI connect (resync)
    after = await store.queue_members(svc.db, name)
    await audit(request, "acd.queue.members", target_type="queue", target_id=name,
                before=before, after=after)  # fmt: skip
    return web.json_response({"queue": name, "members": after, "applied": applied})


def add_admin_routes(app: web.Application, service: AcdService) -> None:
    app[SERVICE] = service
    app.router.add_get(f"/api/v1/acd/queues/{QUEUE}/members", get_members)
    app.router.add_put(f"/api/v1/acd/queues/{QUEUE}/members", put_members)
