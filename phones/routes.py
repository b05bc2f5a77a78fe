"""The phones API.

Admins provision an agent's phones (``/api/v1/phones``, ``/api/v1/agents/{agent}/phones``;
every change audit-logged, no secret in the log); supervisors see them; the signed-in agent
reads its own with what a phone needs to register (``/api/v1/me/phones``: for a browser
phone the password too, which is how the desktop's SIP.js signs in).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from cti.web.auth import audit, principal, require_agent_access, require_role
from cti.web.body import json_object
from cti.web.errors import BadRequest, NotFound
from cti.web.openapi import BOOL, STR, arr, doc, obj
from phones import store
from phones.instance_conf import Ports
from phones.models import KINDS, PhoneRow
from phones.service import PhoneService

__all__ = ["add_routes"]

SERVICE = web.AppKey("phones_service", PhoneService)
PORTS = web.AppKey("phones_ports", Ports)
PHONE = r"{name:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}}"
AGENT = r"{agent:[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}}"
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")

_PHONE = obj({
    "name": STR, "agent": STR, "kind": {"type": "string", "enum": list(KINDS)}, "label": STR,
    "registered": BOOL, "contacts": arr(STR), "created_at": STR, "rotated_at": STR,
})  # fmt: skip
_CREDENTIALS = obj({
    "username": STR, "password": STR, "realm": STR, "domain": STR, "uri": STR,
    "ws_url": STR, "registrar": obj({"udp": STR, "tcp": STR, "tls": STR}),
})  # fmt: skip
_CREATED = obj({"phone": _PHONE, "credentials": _CREDENTIALS, "applied": BOOL})
_NEW = obj({"kind": {"type": "string", "enum": list(KINDS)}, "label": STR}, required=["kind"],
           extra=False)  # fmt: skip


def _host(request: web.Request) -> str:
    host = request.url.host or ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if _HOST.fullmatch(host) else "127.0.0.1"


def credentials(request: web.Request, row: PhoneRow, password: str) -> dict[str, Any]:
    """What a phone needs to register (``password`` only when given: shown once)."""
    svc, ports = request.app[SERVICE], request.app[PORTS]
    host = _host(request)
    domain = svc.settings.domain or host
    out: dict[str, Any] = {
        "username": row.name,
        "realm": svc.settings.realm if row.kind == "webrtc" else row.realm,
        "domain": domain,
        "uri": f"sip:{row.name}@{domain}",
    }
    if password:
        out["password"] = password
    if row.kind == "webrtc":
        if svc.settings.ws_url:
            out["ws_url"] = svc.settings.ws_url
        elif ports.ws is not None:
            out["ws_url"] = f"{'wss' if ports.wss else 'ws'}://{host}:{ports.ws}/ws"
    else:
        out["registrar"] = {proto: f"{domain}:{port}" for proto, port in ports.sip.items()}
    return out


async def _phone(request: web.Request) -> PhoneRow:
    row = await store.get(request.app[SERVICE].db, request.match_info["name"])
    if row is None:
        raise NotFound("no such phone")
    return row


def _new_body(data: dict[str, Any]) -> tuple[str, str]:
    kind, label = data.get("kind"), data.get("label", "")
    if kind not in KINDS:
        raise BadRequest(f"kind: one of {', '.join(KINDS)}", details={"field": "kind"})
    if not isinstance(label, str) or len(label) > 64 or any(ord(c) < 32 for c in label):
        raise BadRequest("label: up to 64 characters, one line", details={"field": "label"})
    return kind, label


async def _create(request: web.Request, agent: str, kind: str, label: str) -> web.Response:
    svc = request.app[SERVICE]
    try:
        row, password, applied = await svc.create(agent, kind, label)
    except store.PhoneInvalid as exc:
        raise BadRequest(str(exc)) from None
    view = svc.view(row)
    await audit(request, "phones.create", target_type="phone", target_id=row.name, after=view)
    return web.json_response(
        {"phone": view, "credentials": credentials(request, row, password), "applied": applied},
        status=201,
    )


# --- admin / supervisor -------------------------------------------------------------------
@doc("Every provisioned phone, with whether it is registered now", role="supervisor",
     tags=["phones"], response=obj({"phones": arr(_PHONE)}))  # fmt: skip
async def list_all(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    svc = request.app[SERVICE]
    p = principal(request)
    rows = [r for r in await store.list_phones(svc.db) if p.sees_agent(r.agent)]
    return web.json_response({"phones": [svc.view(r) for r in rows]})


@doc("Provision a phone for an agent: Asterisk has it at once (no restart). A SIP phone's "
     "password is in the answer, once; a browser phone's goes only to the agent's desktop",
     role="admin", tags=["phones"], status=201, response=_CREATED,
     body=obj({"agent": STR, "kind": {"type": "string", "enum": list(KINDS)}, "label": STR},
              required=["agent", "kind"], extra=False))  # fmt: skip
async def create(request: web.Request) -> web.Response:
    require_role(request, "admin")
    data = await json_object(request)
    if set(data) - {"agent", "kind", "label"}:
        raise BadRequest("the body is {agent, kind, label}")
    try:
        agent = store.check_agent(data.get("agent"))
    except store.PhoneInvalid as exc:
        raise BadRequest(str(exc), details={"field": "agent"}) from None
    kind, label = _new_body(data)
    return await _create(request, agent, kind, label)


@doc("One phone", role="supervisor", tags=["phones"], response=_PHONE)
async def get_one(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    row = await _phone(request)
    require_agent_access(request, row.agent)
    return web.json_response(request.app[SERVICE].view(row))


@doc(
    "New credentials for a phone (the old ones stop working at once; a registered phone "
    "must register again)",
    role="admin",
    tags=["phones"],
    response=_CREATED,
)
async def rotate(request: web.Request) -> web.Response:
    require_role(request, "admin")
    row = await _phone(request)
    svc = request.app[SERVICE]
    done = await svc.rotate(row.name)
    if done is None:
        raise NotFound("no such phone")
    new, password, applied = done
    view = svc.view(new)
    await audit(request, "phones.rotate", target_type="phone", target_id=new.name,
                detail=f"generation {new.generation}")  # fmt: skip
    return web.json_response(
        {"phone": view, "credentials": credentials(request, new, password), "applied": applied}
    )


@doc("Remove a phone: Asterisk forgets its endpoint and registration at once (calls in "
     "progress are kept)", role="admin", tags=["phones"],
     response=obj({"deleted": STR, "applied": BOOL}))  # fmt: skip
async def remove(request: web.Request) -> web.Response:
    require_role(request, "admin")
    row = await _phone(request)
    svc = request.app[SERVICE]
    done = await svc.delete(row.name)
    if done is None:
        raise NotFound("no such phone")
    old, applied = done
    await audit(request, "phones.delete", target_type="phone", target_id=old.name,
                before=store.view(old))  # fmt: skip
    return web.json_response({"deleted": old.name, "applied": applied})


@doc("An agent's phones", role="agent", tags=["phones"],
     response=obj({"agent": STR, "phones": arr(_PHONE)}))  # fmt: skip
async def list_agent(request: web.Request) -> web.Response:
    agent = request.match_info["agent"]
    require_agent_access(request, agent)
    svc = request.app[SERVICE]
    rows = await store.list_phones(svc.db, agent)
    return web.json_response({"agent": agent, "phones": [svc.view(r) for r in rows]})


@doc("Provision a phone for this agent (as POST /api/v1/phones)", role="admin",
     tags=["phones"], status=201, body=_NEW, response=_CREATED)  # fmt: skip
async def create_for_agent(request: web.Request) -> web.Response:
    require_role(request, "admin")
    agent = request.match_info["agent"]
    data = await json_object(request)
    if set(data) - {"kind", "label"}:
        raise BadRequest("the body is {kind, label}")
    kind, label = _new_body(data)
    return await _create(request, agent, kind, label)


# --- the signed-in agent --------------------------------------------------------------------
@doc(
    "The signed-in agent's phones and what each needs to register: for a browser phone "
    "the WebSocket URL, SIP URI, user name and password (SIP.js signs in with them)",
    role="agent",
    tags=["phones"],
    response=obj(
        {
            "agent": STR,
            "phones": arr(
                obj(
                    {
                        "name": STR,
                        "kind": STR,
                        "label": STR,
                        "registered": BOOL,
                        "sip": _CREDENTIALS,
                    }
                )
            ),
        }
    ),
)
async def mine(request: web.Request) -> web.Response:
    p = principal(request)
    svc = request.app[SERVICE]
    rows = await store.list_phones(svc.db, p.name)
    phones = []
    for row in rows:
        password = svc.browser_password(row) if row.kind == "webrtc" else ""
        view = svc.view(row)
        view["sip"] = credentials(request, row, password)
        phones.append(view)
    resp = web.json_response({"agent": p.name, "phones": phones})
    resp.headers["Cache-Control"] = "no-store"
    return resp


def add_routes(app: web.Application, service: PhoneService, ports: Ports) -> None:
    app[SERVICE] = service
    app[PORTS] = ports
    app.router.add_get("/api/v1/phones", list_all)
    app.router.add_post("/api/v1/phones", create)
    app.router.add_get(f"/api/v1/phones/{PHONE}", get_one)
    app.router.add_delete(f"/api/v1/phones/{PHONE}", remove)
    app.router.add_post(f"/api/v1/phones/{PHONE}/rotate", rotate)
    app.router.add_get(f"/api/v1/agents/{AGENT}/phones", list_agent)
    app.router.add_post(f"/api/v1/agents/{AGENT}/phones", create_for_agent)
    app.router.add_get("/api/v1/me/phones", mine)
