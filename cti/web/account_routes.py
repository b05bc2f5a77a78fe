"""REST routes of accounts: sign-in and sessions, users, teams, API tokens, the audit log.

Sign-in (``POST /api/v1/auth/sign-in``) is the only route reachable without a
credential. Everything about other people (users, teams, tokens, audit) is admin-only;
what a person does to their own account (sign out, sign out everywhere, change their
password, set up a second factor) needs only to be signed in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from cti.accounts.audit import AuditFilter, to_csv
from cti.accounts.service import check_queues, csrf_for
from cti.store.tokens import (
    create_token,
    get_token,
    list_tokens,
    revoke_token_id,
    token_of_secret,
)
from cti.web.auth import ACCOUNTS, AUDIT, PRINCIPAL, address_of, audit, principal, require_role
from cti.web.body import json_object
from cti.web.credentials import SESSION_COOKIE
from cti.web.errors import BadRequest, NotFound
from cti.web.openapi import BOOL, INT, NULLABLE_STR, STR, arr, doc, obj
from cti.web.origins import OriginPolicy
from cti.web.params import Choice, Int, Text, When, path_int

__all__ = ["ORIGINS", "SESSION_PATH", "add_account_routes"]

ORIGINS = web.AppKey("origins", OriginPolicy)

#: a person's own queue list (cti.accounts.service, decision 0036): null and [] differ
SCOPE: dict[str, Any] = {
    "type": ["array", "null"], "items": STR,
    "description": "the person's own queues, besides their teams' queues. null: no list "
                   "(in no team: every queue and agent, an admin's grant of all queues); "
                   "[]: none (in no team: no queue and no other agent; what a supervisor "
                   "without a list of their own is given on losing their last team)",
}  # fmt: skip
USER: dict[str, Any] = obj(
    {
        "id": INT, "login": STR, "display_name": STR, "role": STR,
        "agent": NULLABLE_STR, "queues": SCOPE, "teams": arr(STR), "disabled": BOOL,
        "totp_enabled": BOOL,
        "must_change_password": BOOL,
    },
    required=["id", "login", "role", "disabled"],
)  # fmt: skip
ME: dict[str, Any] = obj(
    {"name": STR, "role": STR, "login": STR, "kind": STR, "agent": NULLABLE_STR},
    required=["name", "role"],
)
SIGN_IN_BODY = obj(
    {"login": {"type": "string", "maxLength": 64},
     "password": {"type": "string", "maxLength": 1024},
     "code": {"type": "string", "maxLength": 12}},
    required=["login", "password"], extra=False,
)  # fmt: skip
USER_BODY = obj(
    {
        "login": STR, "password": STR,
        "role": {"type": "string", "enum": ["agent", "supervisor", "admin"]},
        "display_name": STR, "agent": NULLABLE_STR, "queues": SCOPE, "teams": arr(STR),
        "must_change_password": BOOL,
    },
    extra=False,
)  # fmt: skip
TOKEN: dict[str, Any] = obj(
    {"id": INT, "name": STR, "role": STR, "state": STR, "expires_at": NULLABLE_STR},
    required=["id", "name", "role", "state"],
)
TEAM = obj({"name": STR, "queues": arr(STR), "members": arr(STR)}, required=["name"])

AUDIT_LIMIT = Int(name="limit", default=200, lo=1, hi=5000)
AUDIT_BEFORE = Int(name="before_id", lo=1, description="page: entries older than this id")
AUDIT_SINCE = When(name="since")
AUDIT_UNTIL = When(name="until")
AUDIT_ACTOR = Text(name="actor", max_len=128)
AUDIT_ACTION = Text(name="action", max_len=64, description='exact, or a prefix ending in "."')
AUDIT_TARGET_TYPE = Text(name="target_type", max_len=32)
AUDIT_TARGET_ID = Text(name="target_id", max_len=128)
AUDIT_FORMAT = Choice(name="format", choices=("csv", "json"), default="csv")
AUDIT_QUERY = [AUDIT_SINCE, AUDIT_UNTIL, AUDIT_ACTOR, AUDIT_ACTION, AUDIT_TARGET_TYPE,
               AUDIT_TARGET_ID, AUDIT_BEFORE, AUDIT_LIMIT]  # fmt: skip
USER_ID = r"{id:[0-9]{1,18}}"
TEAM_NAME = r"{name:[\w][\w .-]{0,63}}"
MAX_TOKEN_DAYS = 3650


def _cookie_secure(request: web.Request) -> bool:
    return request.secure or request.app[ORIGINS].secure_only


def _me(request: web.Request) -> dict[str, Any]:
    p = principal(request)
    return {
        "name": p.name,
        "role": p.role,
        "login": p.login,
        "kind": p.credential[0],
        "agent": p.name if p.login and p.name != p.login else None,
        "queues": sorted(p.queues) if p.queues is not None else None,
    }


# --- sign-in and the caller's own session --------------------------------------------------


@doc("Sign in with login and password (and the second-factor code when set up); sets "
     "the session cookie and returns the CSRF token", role=None, body=SIGN_IN_BODY,
     errors=[401, 429], tags=["auth"],
     response=obj({"user": ME, "csrf_token": STR, "expires_at": STR, "idle_timeout_s": INT},
                  required=["user", "csrf_token"]))  # fmt: skip
async def sign_in(request: web.Request) -> web.Response:
    body = await json_object(request, max_bytes=4096)
    accounts = request.app[ACCOUNTS]
    result = await accounts.sign_in(
        body.get("login"), body.get("password"), body.get("code"),
        address=address_of(request), user_agent=request.headers.get("User-Agent", ""),
    )  # fmt: skip
    p = result.principal
    resp = web.json_response(
        {
            "user": {"name": p.name, "role": p.role, "login": p.login, "kind": "session",
                     "agent": p.name if p.name != p.login else None},
            "csrf_token": result.csrf,
            "expires_at": result.expires_at.isoformat(),
            "idle_timeout_s": accounts.config.session_idle_minutes * 60,
        }
    )  # fmt: skip
    resp.set_cookie(
        SESSION_COOKIE, result.secret, httponly=True, samesite="Strict",
        secure=_cookie_secure(request), path="/",
        max_age=accounts.config.session_max_hours * 3600,
    )  # fmt: skip
    return resp


SESSION_PATH = "/api/v1/auth/session"


@doc("Whether this browser is signed in, and then who, its CSRF token and expiry (public: "
     "pages ask it on load)", role=None, tags=["auth"],
     response=obj({"signed_in": BOOL, "user": ME, "csrf_token": STR, "expires_at": STR,
                   "idle_timeout_s": INT}, required=["signed_in"]))  # fmt: skip
async def session_info(request: web.Request) -> web.Response:
    p = request.get(PRINCIPAL)
    if p is None or p.session_id is None:
        return web.json_response({"signed_in": False})
    info = await request.app[ACCOUNTS].session_info(p.session_id)
    return web.json_response(
        {
            "signed_in": True,
            "user": _me(request),
            "csrf_token": csrf_for(request.cookies.get(SESSION_COOKIE, "")),
            **info,
        }
    )


@doc("Sign out this browser session", tags=["auth"], response=obj({"signed_out": BOOL}))
async def sign_out(request: web.Request) -> web.Response:
    await request.app[ACCOUNTS].sign_out(principal(request), address=address_of(request))
    resp = web.json_response({"signed_out": True})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@doc("Sign out every session of the caller (all browsers; their websockets close)",
     tags=["auth"], response=obj({"sessions_ended": INT}))  # fmt: skip
async def sign_out_everywhere(request: web.Request) -> web.Response:
    p = principal(request)
    if p.user_id is None:
        raise BadRequest("an API token has no sessions", code="not-a-user")
    n = await request.app[ACCOUNTS].sign_out_everywhere(p, p.user_id, address=address_of(request))
    resp = web.json_response({"sessions_ended": n})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@doc("Who the credential speaks for", response=ME, tags=["auth"])
async def whoami(request: web.Request) -> web.Response:
    return web.json_response(_me(request))


@doc("Change the caller's own password (every session ends: sign in again)", tags=["auth"],
     body=obj({"old_password": STR, "new_password": STR}, required=["old_password",
              "new_password"]), response=obj({"changed": BOOL}))  # fmt: skip
async def change_password(request: web.Request) -> web.Response:
    body = await json_object(request, max_bytes=4096)
    await request.app[ACCOUNTS].change_own_password(
        principal(request), body.get("old_password"), body.get("new_password"),
        address=address_of(request),
    )  # fmt: skip
    resp = web.json_response({"changed": True})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@doc("Start setting up a TOTP second factor: a new secret and its otpauth URI",
     tags=["auth"], errors=[409], response=obj({"secret": STR, "uri": STR}))  # fmt: skip
async def totp_setup(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ACCOUNTS].totp_begin(principal(request)))


@doc("Confirm the second factor with a current code", tags=["auth"], errors=[409],
     body=obj({"code": STR}, required=["code"]), response=obj({"enabled": BOOL}))  # fmt: skip
async def totp_confirm(request: web.Request) -> web.Response:
    body = await json_object(request, max_bytes=1024)
    await request.app[ACCOUNTS].totp_confirm(
        principal(request), body.get("code"), address=address_of(request)
    )
    return web.json_response({"enabled": True})


# --- users (admin) ------------------------------------------------------------------------


@doc("Every user", role="admin", tags=["users"], response=obj({"users": arr(USER)}))
async def list_users(request: web.Request) -> web.Response:
    require_role(request, "admin")
    return web.json_response({"users": await request.app[ACCOUNTS].list_users()})


@doc("Create a user", role="admin", tags=["users"], status=201, errors=[409], body=USER_BODY,
     response=USER)  # fmt: skip
async def create_user(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    body = await json_object(request)
    user = await request.app[ACCOUNTS].create_user(who, body, address=address_of(request))
    return web.json_response(user, status=201)


@doc("One user", role="admin", tags=["users"], response=USER)
async def get_user(request: web.Request) -> web.Response:
    require_role(request, "admin")
    return web.json_response(await request.app[ACCOUNTS].get_user(path_int(request)))


@doc("Change a user's name, role, agent link, scope or teams (a role or agent change "
     "ends their sessions; a supervisor with queues null whose teams this empties gets "
     "queues [] unless the same change sets queues null from a list)", role="admin",
     tags=["users"], errors=[409], body=USER_BODY,
     response=USER)  # fmt: skip
async def patch_user(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    body = await json_object(request)
    user = await request.app[ACCOUNTS].update_user(
        who, path_int(request), body, address=address_of(request)
    )
    return web.json_response(user)


@doc("Delete a user (prefer disabling: the audit log keeps their login either way)",
     role="admin", tags=["users"], errors=[409], response=obj({"deleted": BOOL}))  # fmt: skip
async def delete_user(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    await request.app[ACCOUNTS].delete_user(who, path_int(request), address=address_of(request))
    return web.json_response({"deleted": True})


@doc("Reset a user's password (their sessions and websockets end)", role="admin",
     tags=["users"], body=obj({"password": STR, "must_change_password": BOOL},
                              required=["password"]),
     response=obj({"reset": BOOL}))  # fmt: skip
async def reset_password(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    body = await json_object(request, max_bytes=4096)
    must_change = body.get("must_change_password", False)
    if not isinstance(must_change, bool):
        raise BadRequest("must_change_password: true or false")
    await request.app[ACCOUNTS].set_password(
        who, path_int(request), body.get("password"), must_change=must_change,
        address=address_of(request),
    )  # fmt: skip
    return web.json_response({"reset": True})


@doc("Disable a user: their sessions and open websockets end at once", role="admin",
     tags=["users"], errors=[409], response=USER)  # fmt: skip
async def disable_user(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    user = await request.app[ACCOUNTS].set_disabled(
        who, path_int(request), True, address=address_of(request)
    )
    return web.json_response(user)


@doc("Enable a disabled user", role="admin", tags=["users"], response=USER)
async def enable_user(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    user = await request.app[ACCOUNTS].set_disabled(
        who, path_int(request), False, address=address_of(request)
    )
    return web.json_response(user)


@doc("End every session of a user", role="admin", tags=["users"],
     response=obj({"sessions_ended": INT}))  # fmt: skip
async def user_sign_out(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    n = await request.app[ACCOUNTS].sign_out_everywhere(
        who, path_int(request), address=address_of(request)
    )
    return web.json_response({"sessions_ended": n})


@doc("Remove a user's second factor (lost phone)", role="admin", tags=["users"],
     response=obj({"removed": BOOL}))  # fmt: skip
async def user_totp_remove(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    await request.app[ACCOUNTS].totp_remove(who, path_int(request), address=address_of(request))
    return web.json_response({"removed": True})


# --- teams (admin) ------------------------------------------------------------------------


@doc("Every team with its queues and members", role="admin", tags=["users"],
     response=obj({"teams": arr(TEAM)}))  # fmt: skip
async def list_teams(request: web.Request) -> web.Response:
    require_role(request, "admin")
    return web.json_response({"teams": await request.app[ACCOUNTS].list_teams()})


@doc("Create or replace a team (queues it works, members by login; a supervisor it "
     "drops who is then in no team with queues null gets queues [])", role="admin",
     tags=["users"], body=obj({"queues": arr(STR), "members": arr(STR)}, extra=False),
     response=TEAM)  # fmt: skip
async def put_team(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    body = await json_object(request, allow_empty=True)
    team = await request.app[ACCOUNTS].put_team(
        who, request.match_info["name"], body, address=address_of(request)
    )
    return web.json_response(team)


@doc("Delete a team (a supervisor then in no team with queues null gets queues [])",
     role="admin", tags=["users"], response=obj({"deleted": BOOL}))  # fmt: skip
async def delete_team(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    await request.app[ACCOUNTS].delete_team(
        who, request.match_info["name"], address=address_of(request)
    )
    return web.json_response({"deleted": True})


# --- API tokens (admin) -------------------------------------------------------------------

TOKEN_STATE = Choice(name="state", choices=("active", "all"), default="active")


@doc("API tokens (never their secrets)", role="admin", tags=["tokens"], query=[TOKEN_STATE],
     response=obj({"tokens": arr(TOKEN)}))  # fmt: skip
async def get_tokens(request: web.Request) -> web.Response:
    require_role(request, "admin")
    everything = TOKEN_STATE.value(request) == "all"
    tokens = await list_tokens(request.app[AUDIT].db, include_ended=everything)
    return web.json_response({"tokens": tokens})


@doc("Create an API token for an integration; its secret is in this answer only",
     role="admin", tags=["tokens"], status=201,
     body=obj({"name": {"type": "string", "maxLength": 128},
               "role": {"type": "string", "enum": ["agent", "supervisor", "admin"]},
               "expires_in_days": {"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_DAYS},
               "queues": {"type": ["array", "null"], "items": STR}},
              required=["name", "role"], extra=False),
     response=obj({"token": STR, "id": INT}, required=["token"]))  # fmt: skip
async def post_token(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    body = await json_object(request, max_bytes=16 * 1024)
    unknown = set(body) - {"name", "role", "expires_in_days", "queues"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    days = body.get("expires_in_days")
    expires = None
    if days is not None:
        if type(days) is not int or not 1 <= days <= MAX_TOKEN_DAYS:
            raise BadRequest(f"expires_in_days: an integer 1..{MAX_TOKEN_DAYS}")
        expires = datetime.now(UTC) + timedelta(days=days)
    name, role = body.get("name"), body.get("role")
    if not isinstance(name, str) or not isinstance(role, str):
        raise BadRequest("name and role are strings")
    queues = check_queues(body.get("queues"))
    db = request.app[AUDIT].db
    try:
        secret = await create_token(db, name, role, expires_at=expires, queues=queues,
                                    created_by=who.actor)  # fmt: skip
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    row = await token_of_secret(db, secret)
    assert row is not None
    await audit(request, "token.create", target_type="token", target_id=row["id"], after=row)
    return web.json_response({**row, "token": secret}, status=201)


@doc("Revoke an API token: its websockets close at once", role="admin", tags=["tokens"],
     response=obj({"revoked": BOOL}))  # fmt: skip
async def delete_token(request: web.Request) -> web.Response:
    require_role(request, "admin")
    token_id = path_int(request)
    db = request.app[AUDIT].db
    before = await get_token(db, token_id)
    if before is None or not await revoke_token_id(db, token_id):
        raise NotFound("no such active token")
    request.app[ACCOUNTS].announce("token", {token_id})
    await audit(request, "token.revoke", target_type="token", target_id=token_id,
                before=before, after=await get_token(db, token_id))  # fmt: skip
    return web.json_response({"revoked": True})


# --- audit log (admin) --------------------------------------------------------------------

ENTRY = obj(
    {"id": INT, "at": STR, "actor": STR, "action": STR, "target_type": STR, "target_id": STR,
     "before": {}, "after": {}, "detail": STR, "address": STR},
    required=["id", "at", "actor", "action"],
)  # fmt: skip


def _audit_filter(request: web.Request) -> AuditFilter:
    since, until = AUDIT_SINCE.read(request), AUDIT_UNTIL.read(request)
    if since is not None and until is not None and since > until:
        raise BadRequest("since is after until", code="bad-range")
    return AuditFilter(
        since=since, until=until, actor=AUDIT_ACTOR.read(request),
        action=AUDIT_ACTION.read(request), target_type=AUDIT_TARGET_TYPE.read(request),
        target_id=AUDIT_TARGET_ID.read(request), before_id=AUDIT_BEFORE.read(request),
        limit=AUDIT_LIMIT.value(request),
    )  # fmt: skip


@doc("The audit log, newest first: changes (before -> after) and sign-ins", role="admin",
     tags=["audit"], query=AUDIT_QUERY, response=obj({"entries": arr(ENTRY)}))  # fmt: skip
async def get_audit(request: web.Request) -> web.Response:
    require_role(request, "admin")
    entries = await request.app[AUDIT].query(_audit_filter(request))
    return web.json_response({"entries": entries})


@doc("The audit log as a download (CSV, formula-neutralised; or JSON)", role="admin",
     tags=["audit"], query=[*AUDIT_QUERY, AUDIT_FORMAT],
     content_type=("text/csv", "application/json"))  # fmt: skip
async def export_audit(request: web.Request) -> web.Response:
    who = require_role(request, "admin")
    entries = await request.app[AUDIT].query(_audit_filter(request))
    await audit(request, "audit.export", detail=f"{len(entries)} entries")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if AUDIT_FORMAT.value(request) == "json":
        return web.json_response(
            {"entries": entries, "exported_by": who.actor},
            headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.json"'},
        )
    return web.Response(
        text=to_csv(entries), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )  # fmt: skip


def add_account_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/auth/sign-in", sign_in)
    r.add_get(SESSION_PATH, session_info)
    r.add_post("/api/v1/auth/sign-out", sign_out)
    r.add_post("/api/v1/auth/sign-out-everywhere", sign_out_everywhere)
    r.add_post("/api/v1/auth/password", change_password)
    r.add_post("/api/v1/auth/totp/setup", totp_setup)
    r.add_post("/api/v1/auth/totp/confirm", totp_confirm)
    r.add_get("/api/v1/me", whoami)
    r.add_get("/api/v1/users", list_users)
    r.add_post("/api/v1/users", create_user)
    r.add_get(f"/api/v1/users/{USER_ID}", get_user)
    r.add_patch(f"/api/v1/users/{USER_ID}", patch_user)
    r.add_delete(f"/api/v1/users/{USER_ID}", delete_user)
    r.add_post(f"/api/v1/users/{USER_ID}/password", reset_password)
    r.add_post(f"/api/v1/users/{USER_ID}/disable", disable_user)
    r.add_post(f"/api/v1/users/{USER_ID}/enable", enable_user)
    r.add_post(f"/api/v1/users/{USER_ID}/sign-out", user_sign_out)
    r.add_delete(f"/api/v1/users/{USER_ID}/totp", user_totp_remove)
    r.add_get("/api/v1/teams", list_teams)
    r.add_put(f"/api/v1/teams/{TEAM_NAME}", put_team)
    r.add_delete(f"/api/v1/teams/{TEAM_NAME}", delete_team)
    r.add_get("/api/v1/tokens", get_tokens)
    r.add_post("/api/v1/tokens", post_token)
    r.add_delete(r"/api/v1/tokens/{id:[0-9]{1,18}}", delete_token)
    r.add_get("/api/v1/audit", get_audit)
    r.add_get("/api/v1/audit/export", export_audit)
