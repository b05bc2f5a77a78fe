"""Users, teams and browser sessions: the operations the API, the CLI and ``make up`` use.

Guarantees:
- passwords are stored only as argon2id hashes; a sign-in for an unknown login costs what
  a wrong password costs; the answer never says which of the two it was;
- a sign-in is refused (429, nothing verified) after ``failures_per_user`` failures for
  that login since its last success within the window, or ``failures_per_address``
  failures from that address within the window — counted from the audit log, so the
  limit survives restarts and holds across processes;
- a session secret is stored only as its SHA-256; a session ends at its absolute expiry,
  after ``session_idle_minutes`` without use, at sign-out, when its user signs out
  everywhere, is disabled or gets a new password; whoever listens on :attr:`ended`
  (the websocket hub) is told at once so open websockets close with it;
- a change of what a session may see that does not end it (its user's teams or queue
  scope, a team's queues or members) reaches open websockets through the database: the
  write moves the credential change marker (migration auth_0003) and
  :meth:`Accounts.live_sessions` builds each session's principal as it is now, which the
  hub compares with the one a connection opened with;
- taking something away never widens what a supervisor sees: one left in no team by a
  removal (of them from a team, of their last team, of their team list) who had no queue
  list of their own gets the empty one (``[]``: no queue, no other agent) instead of
  falling back to unrestricted, audited as ``user.scope_emptied``; only an admin's write
  gives them teams, queues or all queues (``queues: null`` and no team) again
  (docs/decisions/0036-removal-never-widens.md);
- every change and every sign-in / failed sign-in is written to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cti.accounts.audit import AuditLog
from cti.accounts.passwords import Passwords, check_password_rules
from cti.accounts.totp import new_secret, provisioning_uri, verify_code
from cti.config import AuthConfig
from cti.principal import ROLES, Principal
from cti.store.db import Database
from cti.store.models import Team, User, UserTeam, WebSession, clip_text, utcnow
from cti.web.errors import ApiError, BadRequest, Conflict, NotFound, TooManyRequests, Unauthorized

__all__ = ["Accounts", "SignIn", "check_login", "csrf_for"]

LOGIN_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
AGENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
QUEUE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
TEAM_RE = re.compile(r"[\w][\w .-]{0,63}")
MAX_QUEUES = 256
SIGN_IN_FAILED = "auth.sign_in_failed"
SIGN_IN = "auth.sign_in"
_TOUCH_EVERY = timedelta(seconds=30)
_SECRET_BYTES = 32
_MAX_SECRET_LEN = 128

EndedListener = Callable[[str, set[int]], object]


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def csrf_for(session_secret: str) -> str:
    """The CSRF token of a session: derived from its secret (the HttpOnly cookie), so only
    a page that was given it by the daemon can know it; nothing else stored."""
    return hmac.new(session_secret.encode("utf-8"), b"cti-csrf-v1", hashlib.sha256).hexdigest()


def check_login(login: object) -> str:
    if not isinstance(login, str) or not LOGIN_RE.fullmatch(login.strip().lower()):
        raise BadRequest("login: 1-64 of a-z 0-9 . _ @ - (starting with a letter or digit)",
                         code="bad-login")  # fmt: skip
    return login.strip().lower()


def _check_role(role: object) -> str:
    if role not in ROLES:
        raise BadRequest(f"role: one of {', '.join(ROLES)}", code="bad-role")
    assert isinstance(role, str)
    return role


def _check_agent(agent: object) -> str | None:
    if agent is None or agent == "":
        return None
    if not isinstance(agent, str) or not AGENT_RE.fullmatch(agent):
        raise BadRequest("agent: 1-64 of A-Z a-z 0-9 _ . -", code="bad-agent")
    return agent


def check_queues(queues: object, what: str = "queues") -> list[str] | None:
    if queues is None:
        return None
    if not isinstance(queues, list) or len(queues) > MAX_QUEUES:
        raise BadRequest(f"{what}: a list of at most {MAX_QUEUES} queue names", code="bad-scope")
    for q in queues:
        if not isinstance(q, str) or not QUEUE_RE.fullmatch(q):
            raise BadRequest(f"{what}: bad queue name", code="bad-scope")
    return sorted(set(queues))


def _display(name: object) -> str:
    if name is None:
        return ""
    if not isinstance(name, str) or len(name) > 128:
        raise BadRequest("display_name: a string of at most 128 characters")
    return clip_text(name.strip(), 128)


@dataclass(frozen=True)
class SignIn:
    principal: Principal
    secret: str
    csrf: str
    expires_at: datetime


class Accounts:
    def __init__(self, db: Database, config: AuthConfig, audit: AuditLog, *,
                 issuer: str = "CTI") -> None:  # fmt: skip
        self.db = db
        self.config = config
        self.audit = audit
        self.issuer = issuer
        self.passwords = Passwords(
            time_cost=config.argon2_time_cost,
            memory_kib=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
        )
        self.ended: list[EndedListener] = []

    # --- reading ---------------------------------------------------------------------------
    async def _teams_of(
        self, session: AsyncSession, user_ids: Iterable[int]
    ) -> dict[int, list[str]]:
        rows = (
            await session.execute(
                select(UserTeam.user_id, Team.name)
                .join(Team, Team.id == UserTeam.team_id)
                .where(UserTeam.user_id.in_(list(user_ids)))
            )
        ).all()
        out: dict[int, list[str]] = {}
        for uid, name in rows:
            out.setdefault(uid, []).append(name)
        return {k: sorted(v) for k, v in out.items()}

    def _user_json(self, u: User, teams: list[str]) -> dict[str, Any]:
        return {
            "id": u.id,
            "login": u.login,
            "display_name": u.display_name,
            "role": u.role,
            "agent": u.agent,
            "queues": u.queues,
            "teams": teams,
            "disabled": u.disabled_at is not None,
            "disabled_at": u.disabled_at.isoformat() if u.disabled_at else None,
            "totp_enabled": u.totp_enabled,
            "must_change_password": u.must_change_password,
            "password_changed_at": u.password_changed_at.isoformat(),
            "created_at": u.created_at.isoformat(),
            "updated_at": u.updated_at.isoformat(),
        }

    async def list_users(self) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            users = (await session.scalars(select(User).order_by(User.login))).all()
            teams = await self._teams_of(session, [u.id for u in users])
        return [self._user_json(u, teams.get(u.id, [])) for u in users]

    async def get_user(self, user_id: int) -> dict[str, Any]:
        async with self.db.session() as session:
            u = await session.get(User, user_id)
            if u is None:
                raise NotFound("no such user")
            teams = await self._teams_of(session, [u.id])
        return self._user_json(u, teams.get(u.id, []))

    async def find_login(self, login: str) -> dict[str, Any] | None:
        async with self.db.session() as session:
            u = await session.scalar(select(User).where(User.login == login.strip().lower()))
            if u is None:
                return None
            teams = await self._teams_of(session, [u.id])
        return self._user_json(u, teams.get(u.id, []))

    # --- writing users ---------------------------------------------------------------------
    async def _set_teams(self, session: AsyncSession, user_id: int, names: object) -> None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest("teams: a list of team names", code="bad-scope")
        wanted = set(names)
        rows = (
            await session.execute(select(Team.id, Team.name).where(Team.name.in_(wanted)))
        ).all()
        missing = wanted - {name for _, name in rows}
        if missing:
            raise BadRequest(f"teams: no such team {sorted(missing)[0]!r}", code="bad-scope")
        await session.execute(delete(UserTeam).where(UserTeam.user_id == user_id))
        for tid, _ in rows:
            session.add(UserTeam(user_id=user_id, team_id=tid))

    async def create_user(self, by: Principal | str, data: dict[str, Any], *,
                          address: str = "") -> dict[str, Any]:  # fmt: skip
        unknown = set(data) - {"login", "password", "role", "display_name", "agent", "queues",
                               "teams", "must_change_password"}  # fmt: skip
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        login = check_login(data.get("login"))
        role = _check_role(data.get("role", "agent"))
        password = check_password_rules(
            data.get("password"), login=login, min_length=self.config.min_password_length
        )
        must_change = data.get("must_change_password", False)
        if not isinstance(must_change, bool):
            raise BadRequest("must_change_password: true or false")
        user = User(
            login=login,
            display_name=_display(data.get("display_name")),
            role=role,
            agent=_check_agent(data.get("agent")),
            queues=check_queues(data.get("queues")),
            password_hash=await self.passwords.hash(password),
            must_change_password=must_change,
            totp_enabled=False,
            totp_last_step=0,
        )
        try:
            async with self.db.session() as session, session.begin():
                session.add(user)
                await session.flush()
                if "teams" in data:
                    await self._set_teams(session, user.id, data["teams"])
        except IntegrityError:
            raise Conflict("a user with this login or agent already exists",
                           code="user-exists") from None  # fmt: skip
        out = await self.get_user(user.id)
        await self.audit.record("user.create", actor=by, address=address, target_type="user",
                                target_id=login, after=out)  # fmt: skip
        return out

    async def update_user(self, by: Principal | str, user_id: int, data: dict[str, Any], *,
                          address: str = "") -> dict[str, Any]:  # fmt: skip
        unknown = set(data) - {"display_name", "role", "agent", "queues", "teams",
                               "must_change_password"}  # fmt: skip
        if unknown:
            raise BadRequest(f"unknown or read-only field(s): {', '.join(sorted(unknown))}")
        before = await self.get_user(user_id)
        try:
            async with self.db.session() as session, session.begin():
                u = await session.get(User, user_id)
                if u is None:
                    raise NotFound("no such user")
                if "display_name" in data:
                    u.display_name = _display(data["display_name"])
                if "role" in data:
                    u.role = _check_role(data["role"])
                if "agent" in data:
                    u.agent = _check_agent(data["agent"])
                if "queues" in data:
                    u.queues = check_queues(data["queues"])
                if "must_change_password" in data:
                    if not isinstance(data["must_change_password"], bool):
                        raise BadRequest("must_change_password: true or false")
                    u.must_change_password = data["must_change_password"]
                emptied: list[int] = []
                if "teams" in data:
                    await self._set_teams(session, user_id, data["teams"])
                    # a team list emptied leaves the scope empty, unless this same write
                    # grants all queues (queues from a list to null): the admin's choice
                    grants_all = (
                        "queues" in data and u.queues is None and before["queues"] is not None
                    )
                    if before["teams"] and not grants_all:
                        emptied = await _empty_scope_of_teamless(session, [user_id])
                u.updated_at = utcnow()
        except IntegrityError:
            raise Conflict("another user is already linked to this agent",
                           code="user-exists") from None  # fmt: skip
        after = await self.get_user(user_id)
        await self.audit.record("user.update", actor=by, address=address, target_type="user",
                                target_id=before["login"], before=before, after=after)  # fmt: skip
        await self._audit_emptied(by, address, {user_id: before}, emptied, "their teams removed")
        if before["role"] != after["role"] or before["agent"] != after["agent"]:
            await self._end_sessions(user_id)  # what they may do changed: sign in again
        return after

    async def set_password(self, by: Principal | str, user_id: int, password: object, *,
                           must_change: bool = False, address: str = "") -> None:  # fmt: skip
        """An admin's reset (or the user's own change): every session of the user ends."""
        user = await self.get_user(user_id)
        pw = check_password_rules(password, login=user["login"],
                                  min_length=self.config.min_password_length)  # fmt: skip
        digest = await self.passwords.hash(pw)
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(User).where(User.id == user_id).values(
                    password_hash=digest, password_changed_at=utcnow(),
                    must_change_password=must_change, updated_at=utcnow(),
                )
            )  # fmt: skip
        detail = "must change at next sign-in" if must_change else ""
        await self.audit.record("user.password", actor=by, address=address, target_type="user",
                                target_id=user["login"], detail=detail)  # fmt: skip
        await self._end_sessions(user_id)

    async def change_own_password(self, who: Principal, old: object, new: object, *,
                                  address: str = "") -> None:  # fmt: skip
        if who.user_id is None:
            raise BadRequest("only a signed-in person has a password", code="not-a-user")
        async with self.db.session() as session:
            u = await session.get(User, who.user_id)
        if (
            u is None
            or not isinstance(old, str)
            or not await self.passwords.verify(u.password_hash, old)
        ):
            raise BadRequest("the current password is wrong", code="wrong-password")
        await self.set_password(who, who.user_id, new, address=address)

    async def set_disabled(self, by: Principal | str, user_id: int, disabled: bool, *,
                           address: str = "") -> dict[str, Any]:  # fmt: skip
        before = await self.get_user(user_id)
        if isinstance(by, Principal) and by.user_id == user_id and disabled:
            raise Conflict("you cannot disable yourself", code="self-disable")
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(User).where(User.id == user_id)
                .values(disabled_at=utcnow() if disabled else None, updated_at=utcnow())
            )  # fmt: skip
        after = await self.get_user(user_id)
        await self.audit.record("user.disable" if disabled else "user.enable", actor=by,
                                address=address, target_type="user", target_id=before["login"],
                                before=before, after=after)  # fmt: skip
        if disabled:
            await self._end_sessions(user_id)
        return after

    async def delete_user(self, by: Principal | str, user_id: int, *, address: str = "") -> None:
        before = await self.get_user(user_id)
        if isinstance(by, Principal) and by.user_id == user_id:
            raise Conflict("you cannot delete yourself", code="self-delete")
        ids = await self._end_sessions(user_id)
        async with self.db.session() as session, session.begin():
            await session.execute(delete(UserTeam).where(UserTeam.user_id == user_id))
            await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
            await session.execute(delete(User).where(User.id == user_id))
        await self.audit.record("user.delete", actor=by, address=address, target_type="user",
                                target_id=before["login"], before=before,
                                detail=f"{len(ids)} session(s) ended")  # fmt: skip

    # --- teams -----------------------------------------------------------------------------
    async def list_teams(self) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            teams = (await session.scalars(select(Team).order_by(Team.name))).all()
            members = (
                await session.execute(
                    select(UserTeam.team_id, User.login).join(User, User.id == UserTeam.user_id)
                )
            ).all()
        by_team: dict[int, list[str]] = {}
        for tid, login in members:
            by_team.setdefault(tid, []).append(login)
        return [{"name": t.name, "queues": t.queues, "members": sorted(by_team.get(t.id, []))}
                for t in teams]  # fmt: skip

    async def _team(self, name: str) -> dict[str, Any] | None:
        return next((t for t in await self.list_teams() if t["name"] == name), None)

    async def put_team(self, by: Principal | str, name: str, data: dict[str, Any], *,
                       address: str = "") -> dict[str, Any]:  # fmt: skip
        if not TEAM_RE.fullmatch(name):
            raise BadRequest("team name: 1-64 letters, digits, space . _ -", code="bad-team")
        unknown = set(data) - {"queues", "members"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        queues = check_queues(data.get("queues", [])) or []
        members = data.get("members")
        if members is not None and (
            not isinstance(members, list) or not all(isinstance(m, str) for m in members)
        ):
            raise BadRequest("members: a list of logins", code="bad-team")
        before = await self._team(name)
        members_before = await self._members(name) if members is not None else {}
        emptied: list[int] = []
        async with self.db.session() as session, session.begin():
            team = await session.scalar(select(Team).where(Team.name == name))
            if team is None:
                team = Team(name=name, queues=queues)
                session.add(team)
                await session.flush()
            else:
                team.queues = queues
            if members is not None:
                rows = (await session.execute(
                    select(User.id, User.login).where(User.login.in_([m.lower() for m in members]))
                )).all()  # fmt: skip
                missing = {m.lower() for m in members} - {login for _, login in rows}
                if missing:
                    raise BadRequest(f"members: no such user {sorted(missing)[0]!r}",
                                     code="bad-team")  # fmt: skip
                old = set(
                    (await session.scalars(
                        select(UserTeam.user_id).where(UserTeam.team_id == team.id)
                    )).all()
                )  # fmt: skip
                await session.execute(delete(UserTeam).where(UserTeam.team_id == team.id))
                for uid, _ in rows:
                    session.add(UserTeam(user_id=uid, team_id=team.id))
                await session.flush()
                emptied = await _empty_scope_of_teamless(session, old - {uid for uid, _ in rows})
        after = await self._team(name)
        await self.audit.record("team.put", actor=by, address=address, target_type="team",
                                target_id=name, before=before, after=after)  # fmt: skip
        await self._audit_emptied(by, address, members_before, emptied,
                                  f"removed from team {name!r}")  # fmt: skip
        assert after is not None
        return after

    async def delete_team(self, by: Principal | str, name: str, *, address: str = "") -> None:
        before = await self._team(name)
        if before is None:
            raise NotFound("no such team")
        members_before = await self._members(name)
        async with self.db.session() as session, session.begin():
            await session.execute(delete(Team).where(Team.name == name))  # memberships cascade
            emptied = await _empty_scope_of_teamless(session, list(members_before))
        await self.audit.record("team.delete", actor=by, address=address, target_type="team",
                                target_id=name, before=before)  # fmt: skip
        await self._audit_emptied(by, address, members_before, emptied,
                                  f"team {name!r} deleted")  # fmt: skip

    async def _members(self, team: str) -> dict[int, dict[str, Any]]:
        """The users in ``team`` as :meth:`get_user` shows them, by id."""
        async with self.db.session() as session:
            users = (
                await session.scalars(
                    select(User)
                    .join(UserTeam, UserTeam.user_id == User.id)
                    .join(Team, Team.id == UserTeam.team_id)
                    .where(Team.name == team)
                )
            ).all()
            teams = await self._teams_of(session, [u.id for u in users])
        return {u.id: self._user_json(u, teams.get(u.id, [])) for u in users}

    async def _audit_emptied(self, by: Principal | str, address: str,
                             before: dict[int, dict[str, Any]], emptied: list[int],
                             cause: str) -> None:  # fmt: skip
        """One ``user.scope_emptied`` entry per supervisor a removal left with nothing."""
        for user_id in emptied:
            after = await self.get_user(user_id)
            await self.audit.record(
                "user.scope_emptied", actor=by, address=address, target_type="user",
                target_id=after["login"], before=before.get(user_id), after=after,
                detail=f"{cause}: in no team, so no queue and no other agent until an admin "
                       "grants teams, queues or all queues",
            )  # fmt: skip

    # --- sign-in and sessions --------------------------------------------------------------
    async def _throttle(self, login: str, address: str) -> None:
        cfg = self.config
        window = timedelta(minutes=cfg.failure_window_minutes)
        now = utcnow()
        since = now - window
        last_ok = await self.audit.last(SIGN_IN, actor=login)
        user_since = max(since, last_ok) if last_ok else since
        n_user, oldest_user = await self.audit.count_since(SIGN_IN_FAILED, user_since, actor=login)
        n_addr, oldest_addr = await self.audit.count_since(SIGN_IN_FAILED, since, address=address)
        for n, limit, oldest in ((n_user, cfg.failures_per_user, oldest_user),
                                 (n_addr, cfg.failures_per_address, oldest_addr)):  # fmt: skip
            if n >= limit:
                wait = max(1, int(((oldest or now) + window - now).total_seconds()) + 1)
                raise TooManyRequests(
                    f"too many failed sign-ins; try again in {wait} s",
                    code="sign-in-throttled",
                    headers={"Retry-After": str(wait)},
                )

    async def sign_in(self, login: object, password: object, code: object = None, *,
                      address: str = "", user_agent: str = "") -> SignIn:  # fmt: skip
        if not isinstance(login, str) or not isinstance(password, str) or len(password) > 1024:
            raise BadRequest("login and password are strings")
        name = login.strip().lower()[:64]
        await self._throttle(name, address)

        async def failed(reason: str) -> ApiError:
            await self.audit.record(SIGN_IN_FAILED, actor=name, address=address,
                                    target_type="user", target_id=name, detail=reason)  # fmt: skip
            return Unauthorized("wrong login or password", code="bad-credentials")

        async with self.db.session() as session:
            u = await session.scalar(select(User).where(User.login == name))
        if not await self.passwords.verify(u.password_hash if u else None, password) or u is None:
            raise await failed("unknown login" if u is None else "wrong password")
        if u.disabled_at is not None:
            raise await failed("disabled")
        needs_totp = u.totp_enabled or (u.role == "admin" and self.config.require_totp_for_admins)
        if needs_totp:
            if not u.totp_enabled or not u.totp_secret:
                raise await failed("second factor required but not set up")
            if code is None or code == "":
                raise Unauthorized("enter the code of your authenticator app", code="totp-required")
            step = verify_code(u.totp_secret, code, u.totp_last_step)
            if step is None:
                raise await failed("wrong second-factor code")
            async with self.db.session() as session, session.begin():
                await session.execute(
                    update(User).where(User.id == u.id).values(totp_last_step=step)
                )
        if self.passwords.needs_rehash(u.password_hash):
            digest = await self.passwords.hash(password)
            async with self.db.session() as session, session.begin():
                await session.execute(
                    update(User).where(User.id == u.id).values(password_hash=digest)
                )
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        now = utcnow()
        expires = now + timedelta(hours=self.config.session_max_hours)
        row = WebSession(user_id=u.id, token_hash=_sha(secret), created_at=now, last_seen_at=now,
                         expires_at=expires, address=clip_text(address, 64),
                         user_agent=clip_text(user_agent, 256))  # fmt: skip
        async with self.db.session() as session, session.begin():
            session.add(row)
            await session.flush()
            principal = await self._principal(session, u, row.id, expires)
        await self.audit.record(SIGN_IN, actor=name, address=address, target_type="user",
                                target_id=name, detail=f"session {row.id}")  # fmt: skip
        return SignIn(principal, secret, csrf_for(secret), expires)

    async def _principal(self, session: AsyncSession, u: User, session_id: int,
                         expires_at: datetime) -> Principal:  # fmt: skip
        return (await _principals(session, [(session_id, u, expires_at)]))[session_id]

    async def verify_session(self, secret: str) -> Principal | None:
        """The principal of a live session cookie; None when unknown, revoked, expired
        (absolute or idle) or its user is disabled. Refreshes the idle timer."""
        if not isinstance(secret, str) or not secret or len(secret) > _MAX_SECRET_LEN:
            return None
        if not secret.isascii():
            return None
        now = utcnow()
        idle = timedelta(minutes=self.config.session_idle_minutes)
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(WebSession, User)
                    .join(User, User.id == WebSession.user_id)
                    .where(WebSession.token_hash == _sha(secret))
                )
            ).one_or_none()
            if row is None:
                return None
            ws, u = row
            if (ws.revoked_at is not None or ws.expires_at <= now or ws.last_seen_at + idle <= now
                    or u.disabled_at is not None):  # fmt: skip
                return None
            principal = await self._principal(session, u, ws.id, ws.expires_at)
            if now - ws.last_seen_at >= _TOUCH_EVERY:
                await session.execute(
                    update(WebSession).where(WebSession.id == ws.id).values(last_seen_at=now)
                )
                await session.commit()
        return principal

    @property
    def session_recheck_s(self) -> float:
        """How often whoever keeps a session in use (the websocket hub) checks it again
        with :meth:`live_sessions` ``touch=True``, which refreshes its idle timer when last
        seen over 30 s ago: a quarter of the idle timeout (at least 15 s), so a session in
        use is never seen idle longer than ``quarter + 30 s + the holder's period``."""
        return self.config.session_idle_minutes * 60 / 4

    async def live_sessions(self, ids: set[int], *,
                            touch: bool = False) -> dict[int, Principal]:  # fmt: skip
        """Which of ``ids`` are still valid sessions, each with the principal a sign-in
        would build now (its user's role, agent and teams may have changed since; its
        ``expires_at`` the absolute expiry), refreshing their idle timer when ``touch``
        (an open websocket is use). Three reads whatever the number of sessions."""
        if not ids:
            return {}
        now = utcnow()
        idle = timedelta(minutes=self.config.session_idle_minutes)
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(WebSession.id, WebSession.last_seen_at, WebSession.expires_at, User)
                    .join(User, User.id == WebSession.user_id)
                    .where(WebSession.id.in_(ids), WebSession.revoked_at.is_(None),
                           WebSession.expires_at > now, User.disabled_at.is_(None))
                )
            ).all()  # fmt: skip
            live = [(sid, u, expires) for sid, seen, expires, u in rows if seen + idle > now]
            stale = {sid for sid, seen, _, _ in rows if seen + idle > now
                     and now - seen >= _TOUCH_EVERY}  # fmt: skip
            principals = await _principals(session, live)
            if touch and stale:
                await session.execute(
                    update(WebSession).where(WebSession.id.in_(stale)).values(last_seen_at=now)
                )
                await session.commit()
        return principals

    async def session_info(self, session_id: int) -> dict[str, Any]:
        async with self.db.session() as session:
            ws = await session.get(WebSession, session_id)
        if ws is None:
            raise NotFound("no such session")
        idle = timedelta(minutes=self.config.session_idle_minutes)
        return {
            "id": ws.id,
            "created_at": ws.created_at.isoformat(),
            "expires_at": ws.expires_at.isoformat(),
            "idle_expires_at": (ws.last_seen_at + idle).isoformat(),
            "idle_timeout_s": int(idle.total_seconds()),
        }

    async def sign_out(self, who: Principal, *, address: str = "") -> None:
        if who.session_id is None:
            return
        await self._revoke([who.session_id])
        await self.audit.record("auth.sign_out", actor=who, address=address,
                                target_type="session", target_id=who.session_id)  # fmt: skip

    async def sign_out_everywhere(self, by: Principal | str, user_id: int, *,
                                  address: str = "") -> int:  # fmt: skip
        ids = await self._end_sessions(user_id)
        user = await self.get_user(user_id)
        await self.audit.record("auth.sign_out_everywhere", actor=by, address=address,
                                target_type="user", target_id=user["login"],
                                detail=f"{len(ids)} session(s) ended")  # fmt: skip
        return len(ids)

    async def _end_sessions(self, user_id: int) -> set[int]:
        async with self.db.session() as session:
            ids = set(
                (await session.scalars(
                    select(WebSession.id).where(WebSession.user_id == user_id,
                                                WebSession.revoked_at.is_(None))
                )).all()
            )  # fmt: skip
        await self._revoke(ids)
        return ids

    async def _revoke(self, ids: Iterable[int]) -> None:
        wanted = set(ids)
        if wanted:
            async with self.db.session() as session, session.begin():
                await session.execute(
                    update(WebSession)
                    .where(WebSession.id.in_(wanted), WebSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
        self.announce("session", wanted)

    def announce(self, kind: str, ids: set[int]) -> None:
        """Tell the listeners (the websocket hub) that these credentials ended."""
        if ids:
            for listener in self.ended:
                listener(kind, ids)

    # --- second factor ---------------------------------------------------------------------
    async def totp_begin(self, who: Principal) -> dict[str, str]:
        """A new secret for the caller (pending until :meth:`totp_confirm`)."""
        if who.user_id is None:
            raise BadRequest("only a signed-in person has a second factor", code="not-a-user")
        secret = new_secret()
        async with self.db.session() as session, session.begin():
            u = await session.get(User, who.user_id)
            if u is None:
                raise NotFound("no such user")
            if u.totp_enabled:
                raise Conflict("a second factor is already set up; remove it first",
                               code="totp-exists")  # fmt: skip
            u.totp_secret = secret
        return {"secret": secret, "uri": provisioning_uri(secret, who.login, self.issuer)}

    async def totp_confirm(self, who: Principal, code: object, *, address: str = "") -> None:
        async with self.db.session() as session, session.begin():
            u = await session.get(User, who.user_id or 0)
            if u is None or not u.totp_secret or u.totp_enabled:
                raise Conflict("start the set-up first", code="totp-not-started")
            step = verify_code(u.totp_secret, code, u.totp_last_step)
            if step is None:
                raise BadRequest("wrong code", code="wrong-code")
            u.totp_enabled = True
            u.totp_last_step = step
        await self.audit.record("user.totp_enable", actor=who, address=address,
                                target_type="user", target_id=who.login)  # fmt: skip

    async def totp_remove(self, by: Principal | str, user_id: int, *, address: str = "") -> None:
        user = await self.get_user(user_id)
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(User).where(User.id == user_id)
                .values(totp_enabled=False, totp_secret=None, totp_last_step=0)
            )  # fmt: skip
        await self.audit.record("user.totp_remove", actor=by, address=address,
                                target_type="user", target_id=user["login"])  # fmt: skip


async def _empty_scope_of_teamless(session: AsyncSession, user_ids: Iterable[int]) -> list[int]:
    """Of ``user_ids``, who have just lost a team: the supervisors now in no team with no
    queue list of their own get the empty list, so the loss leaves them seeing nothing
    rather than everything (a removal never widens access). Their ids, in the caller's
    transaction; their websockets close with 4005 (the write moves the marker)."""
    ids = list(user_ids)
    if not ids:
        return []
    in_a_team = set(
        (await session.scalars(select(UserTeam.user_id).where(UserTeam.user_id.in_(ids)))).all()
    )
    emptied: list[int] = []
    for u in (
        await session.scalars(select(User).where(User.id.in_(ids), User.role == "supervisor"))
    ).all():
        if u.queues is None and u.id not in in_a_team:
            u.queues = []
            u.updated_at = utcnow()
            emptied.append(u.id)
    return sorted(emptied)


async def _principals(
    session: AsyncSession, sessions: list[tuple[int, User, datetime]]
) -> dict[int, Principal]:
    """The principal of each (session id, its user, its absolute expiry): the one place a
    person's role, agent and teams become what they may see. An admin sees everything; a
    non-admin with neither a team nor a queue list (``queues`` null: granted so) too; any
    other non-admin is scoped: their own queues and their teams' queues, their team mates
    and no other agent (none without a team: ``queues`` ``[]`` and no team is an empty
    scope). At most two reads (teams, team mates) for any number of sessions."""
    users = {u.id: u for _, u, _ in sessions if u.role != "admin"}
    teams_of: dict[int, list[int]] = {}
    team_queues: dict[int, list[str]] = {}
    if users:
        for uid, tid, qs in (
            await session.execute(
                select(UserTeam.user_id, Team.id, Team.queues)
                .join(Team, Team.id == UserTeam.team_id)
                .where(UserTeam.user_id.in_(list(users)))
            )
        ).all():
            teams_of.setdefault(uid, []).append(tid)
            team_queues[tid] = list(qs or [])
    mates: dict[int, set[str]] = {}
    if team_queues:
        for tid, agent in (
            await session.execute(
                select(UserTeam.team_id, User.agent)
                .join(User, User.id == UserTeam.user_id)
                .where(UserTeam.team_id.in_(list(team_queues)), User.agent.is_not(None))
            )
        ).all():
            if agent:
                mates.setdefault(tid, set()).add(agent)
    out: dict[int, Principal] = {}
    for session_id, u, expires_at in sessions:
        queues: set[str] | None = None
        agents: set[str] | None = None
        tids = teams_of.get(u.id, []) if u.role != "admin" else []
        if u.role != "admin" and (u.queues is not None or tids):
            queues, agents = set(u.queues or []), set()
            for tid in tids:
                queues.update(team_queues[tid])
                agents.update(mates.get(tid, ()))
        out[session_id] = Principal(
            token_id=None,
            name=u.agent or u.login,
            role=u.role,
            user_id=u.id,
            session_id=session_id,
            login=u.login,
            queues=frozenset(queues) if queues is not None else None,
            agents=frozenset(agents) if agents is not None else None,
            expires_at=expires_at,
        )
    return out
