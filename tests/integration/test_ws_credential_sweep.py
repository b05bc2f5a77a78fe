"""Websockets close when their credential ends, and the sweep that finds out costs what
changed, not what is connected (cti/web/ws.py, cti/store/credential_changes.py).

Over real sockets, on SQLite and PostgreSQL: a revocation or a disabling made by the CLI
(a process of its own) still closes the websocket within the sweep period; an expiry
closes it at its time with no sweep and no write; a sweep with nothing changed reads one
row and no credential; every write that can end a credential moves the marker, use does
not."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine

from cti.accounts.audit import AuditLog
from cti.accounts.service import Accounts
from cti.config import AuthConfig
from cti.store.credential_changes import credential_mark
from cti.store.db import Database
from cti.store.models import ApiToken, User, WebSession, utcnow
from cti.store.tokens import create_token, revoke_token, revoke_token_id, verify_token
from cti.web.app import WebDeps, create_app
from cti.web.auth import ACCOUNTS
from cti.web.ws import CLOSE_ACCESS_CHANGED, CLOSE_CREDENTIAL_ENDED, Audience, WsHub, to_role
from tests.checkout import checkout_env
from tests.local_http import FAST, PW, NoCalls, serving


@dataclass
class Site:
    base: str
    app: web.Application
    hub: WsHub

    @property
    def accounts(self) -> Accounts:
        return self.app[ACCOUNTS]


@asynccontextmanager
async def site(db: Database, *, sweep_s: float) -> AsyncIterator[Site]:
    hub = WsHub(db, auth_timeout_s=1, sweep_s=sweep_s)
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=hub,
                             auth=AuthConfig(**FAST)))  # fmt: skip
    async with serving(app) as base:
        try:
            yield Site(base, app, hub)
        finally:
            await hub.close_all()


async def open_ws(
    http: aiohttp.ClientSession, s: Site, token: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {"Origin": s.base}
    ws = await http.ws_connect(f"{s.base}/ws", headers=headers)
    assert json.loads((await ws.receive(timeout=3)).data)["type"] == "hello"
    return ws


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> int | None:
    """Wait for the server to close ``ws``; its close code."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return ws.close_code


async def cti(db_url: str, tmp_path: Path, *args: str) -> str:
    """``cti`` in a process of its own on the test's database (the loop keeps serving)."""
    conf = tmp_path / "cti.toml"
    conf.write_text(f'[database]\nurl = "{db_url}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti.cli", "--config", str(conf), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=checkout_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement ``db`` sends to the server meanwhile, on any of its engines."""
    seen: list[str] = []
    engines: set[Engine] = {db.engine.sync_engine, db.reader.sync_engine, db.read_engine}

    def record(_c: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def about_credentials(sql: list[str]) -> list[str]:
    return [s for s in sql if any(t in s for t in ("api_tokens", "web_sessions", "users"))]


async def test_a_token_revoked_by_the_cli_closes_its_websocket_within_the_sweep(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    token = await create_token(db, "wallboard", "supervisor")
    row = await verify_token(db, token)
    assert row is not None
    async with site(db, sweep_s=0.2) as s, aiohttp.ClientSession() as http:
        ws = await open_ws(http, s, token)
        keep = await open_ws(http, s, await create_token(db, "other", "agent"))
        assert "1 token(s) revoked" in await cti(db_url, tmp_path, "token", "revoke",
                                                 str(row.token_id))  # fmt: skip
        assert await closed_with(ws, timeout=3) == CLOSE_CREDENTIAL_ENDED
        assert not keep.closed  # only the revoked one


async def test_a_user_disabled_by_the_cli_loses_their_browser_websocket(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    async with site(db, sweep_s=0.2) as s:
        await s.accounts.create_user("setup", {"login": "anna", "password": PW,
                                                "role": "agent", "agent": "agent101"})  # fmt: skip
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar, headers={"Origin": s.base}) as http:
            async with http.post(f"{s.base}/api/v1/auth/sign-in",
                                 json={"login": "anna", "password": PW}) as resp:  # fmt: skip
                assert resp.status == 200
            ws = await open_ws(http, s)
            await cti(db_url, tmp_path, "user", "disable", "anna")
            assert await closed_with(ws, timeout=3) == CLOSE_CREDENTIAL_ENDED


async def test_an_expiring_token_closes_its_websocket_at_its_time_with_no_sweep_or_write(
    db: Database,
) -> None:
    expires = utcnow() + timedelta(seconds=1.5)
    token = await create_token(db, "short", "agent", expires_at=expires)
    mark = await credential_mark(db)
    async with site(db, sweep_s=3600) as s, aiohttp.ClientSession() as http:  # no sweep
        ws = await open_ws(http, s, token)
        with statements(db) as sql:
            assert await closed_with(ws, timeout=5) == CLOSE_CREDENTIAL_ENDED
        assert utcnow() >= expires  # not before its time
        assert about_credentials(sql) == []  # no query found it: the timer did
    async with db.session() as session:
        assert await session.scalar(select(ApiToken.revoked_at)) is None  # nothing written
    assert await credential_mark(db) == mark


async def test_a_sweep_with_nothing_changed_reads_one_row_and_no_credential(
    db: Database, db_url: str
) -> None:
    tokens = [await create_token(db, f"desk{i}", "agent") for i in range(20)]
    async with site(db, sweep_s=3600) as s, aiohttp.ClientSession() as http:
        sockets = [await open_ws(http, s, t) for t in tokens]
        with statements(db) as first:
            await s.hub.sweep()  # the first: every connection is new
        assert about_credentials(first)
        for _ in range(3):
            with statements(db) as sql:
                assert await s.hub.sweep() == 0
            assert len(sql) == 1 and "credential_changes" in sql[0], sql
        # one joins: it alone is checked, once
        sockets.append(await open_ws(http, s, await create_token(db, "late", "agent")))
        with statements(db) as sql:
            await s.hub.sweep()
        assert len(about_credentials(sql)) == 1
        with statements(db) as sql:
            await s.hub.sweep()
        assert about_credentials(sql) == []
        # another database handle (as another process would) revokes one: the marker moved,
        # every connection is checked again and that one closes
        other = Database.from_url(db_url)
        try:
            assert await revoke_token(other, "desk7") == 1
        finally:
            await other.dispose()
        with statements(db) as sql:
            assert await s.hub.sweep() == 1
        assert about_credentials(sql)
        assert await closed_with(sockets[7], timeout=3) == CLOSE_CREDENTIAL_ENDED
        with statements(db) as sql:
            await s.hub.sweep()
        assert about_credentials(sql) == []
        assert sum(not ws.closed for ws in sockets) == 20


async def test_open_sessions_are_checked_again_each_recheck_period_in_one_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What keeps a session in use from idling out (the check refreshes last_seen_at)."""
    monkeypatch.setattr(Accounts, "session_recheck_s", property(lambda _: 1.0))
    async with site(db, sweep_s=3600) as s:
        await s.accounts.create_user("setup", {"login": "anna", "password": PW,
                                                "role": "agent", "agent": "agent101"})  # fmt: skip
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as a,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as b,
        ):
            for http in (a, b):
                async with http.post(f"{s.base}/api/v1/auth/sign-in", headers={"Origin": s.base},
                                     json={"login": "anna", "password": PW}) as resp:  # fmt: skip
                    assert resp.status == 200
            first = await open_ws(a, s)
            await s.hub.sweep()  # its first check
            await asyncio.sleep(0.3)
            second = await open_ws(b, s)
            await s.hub.sweep()  # the newcomer's first check
            with statements(db) as sql:
                await s.hub.sweep()
            assert about_credentials(sql) == []  # neither is due
            await asyncio.sleep(0.7)  # the first is due, the second past half its period
            with statements(db) as sql:
                await s.hub.sweep()
            assert len([q for q in about_credentials(sql) if q.startswith("SELECT")]) == 1
            with statements(db) as sql:
                await s.hub.sweep()
            assert about_credentials(sql) == []  # both were checked: none is due
            assert not first.closed and not second.closed


async def marker_moves(db: Database) -> Callable[[], Awaitable[bool]]:
    """``moved()``: whether the credential change marker moved since the last call (or
    since this one)."""
    marks = [await credential_mark(db)]

    async def moved() -> bool:
        marks.append(await credential_mark(db))
        return marks[-1] != marks[-2]

    return moved


async def test_every_write_that_can_end_a_credential_moves_the_marker_and_use_does_not(
    db: Database, db_url: str
) -> None:
    accounts = Accounts(db, AuthConfig(**FAST), AuditLog(db))
    moved = await marker_moves(db)

    # creating and using credentials: nothing moves
    token = await create_token(db, "ops", "admin")
    await create_token(db, "ops", "agent")
    second = await create_token(db, "second", "agent")
    await verify_token(db, token)  # records last_used_at
    user = await accounts.create_user("setup", {"login": "anna", "password": PW,
                                                "role": "agent", "agent": "a101"})  # fmt: skip
    signed = await accounts.sign_in("anna", PW)
    assert signed.principal.expires_at == signed.expires_at  # the hub's timer reads it
    assert not await moved()
    # a session's last use set back (it may have idled out) moves it; use moving it
    # forward does not
    async with db.session() as session, session.begin():
        await session.execute(
            update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=5))
        )
    assert await moved()
    assert await accounts.verify_session(signed.secret) is not None  # touches last_seen_at
    assert not await moved()
    async with db.session() as session, session.begin():
        await session.execute(
            update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=1))
        )
    assert await moved()
    assert await accounts.live_sessions({signed.principal.session_id or 0}, touch=True)
    assert not await moved()
    # each way a credential ends moves it
    second_id = (await verify_token(db, second)).token_id  # type: ignore[union-attr]
    assert await revoke_token_id(db, second_id or 0)
    assert await moved()
    assert await revoke_token(db, "ops") == 2
    assert await moved()
    await accounts.sign_out(signed.principal)
    assert await moved()
    await accounts.sign_in("anna", PW)
    await accounts.set_password("setup", user["id"], "another long password")
    assert await moved()
    await accounts.sign_in("anna", "another long password")
    await accounts.update_user("setup", user["id"], {"role": "supervisor"})
    assert await moved()
    await accounts.set_disabled("setup", user["id"], True)
    assert await moved()
    await accounts.set_disabled("setup", user["id"], False)
    assert await moved()  # enabling too (harmless: the next sweep checks, finds nothing)
    await accounts.delete_user("setup", user["id"])
    assert await moved()
    # and a write by anyone else, not through this code: the triggers are in the database
    other = Database.from_url(db_url)
    try:
        async with other.session() as session, session.begin():
            await session.execute(update(ApiToken).values(expires_at=utcnow()))
    finally:
        await other.dispose()
    assert await moved()


# --- what a credential may see changed: its connections close with 4005 and reconnect ----


async def sign_in(http: aiohttp.ClientSession, s: Site, login: str) -> None:
    async with http.post(f"{s.base}/api/v1/auth/sign-in", headers={"Origin": s.base},
                         json={"login": login, "password": PW}) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()


async def gets(ws: aiohttp.ClientWebSocketResponse, hub: WsHub, audience: Audience) -> bool:
    """Whether a message published to ``audience`` now reaches ``ws``."""
    marker = {"type": "probe", "n": utcnow().isoformat()}
    hub.publish(audience, marker)
    try:
        async with asyncio.timeout(0.5):
            while True:
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT:
                    return False
                if json.loads(msg.data) == marker:
                    return True
    except TimeoutError:
        return False


@asynccontextmanager
async def call_centre(db: Database) -> AsyncIterator[Site]:
    """Team north (queue sales: agent a101) and team south (queue support: agent a201);
    "boss" supervises north."""
    async with site(db, sweep_s=0.2) as s:
        for login, role, agent in (
            ("boss", "supervisor", None),
            ("ann", "agent", "a101"),
            ("bob", "agent", "a201"),
            ("cid", "agent", "a301"),
        ):
            await s.accounts.create_user("setup", {"login": login, "password": PW,
                                                   "role": role, "agent": agent})  # fmt: skip
        await s.accounts.put_team("setup", "north", {"queues": ["sales"],
                                                     "members": ["boss", "ann"]})  # fmt: skip
        await s.accounts.put_team("setup", "south", {"queues": ["support"],
                                                     "members": ["bob"]})  # fmt: skip
        yield s


async def move_boss_south(s: Site, db_url: str, writer: str) -> None:
    """north loses boss, south gains them: through the daemon's API, or by another node
    of the cluster (its own database handle, nothing said to this daemon)."""
    teams = {"north": {"queues": ["sales"], "members": ["ann"]},
             "south": {"queues": ["support"], "members": ["bob", "boss"]}}  # fmt: skip
    if writer == "api":
        admin = await create_token(s.hub.db, "admin-script", "admin")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
            for name, body in teams.items():
                async with http.put(f"{s.base}/api/v1/teams/{name}", json=body) as resp:
                    assert resp.status == 200, await resp.text()
        return
    other = Database.from_url(db_url)
    try:
        node_b = Accounts(other, AuthConfig(**FAST), AuditLog(other))
        for name, body in teams.items():
            await node_b.put_team("admin", name, body)
    finally:
        await other.dispose()


@pytest.mark.parametrize("writer", ["api", "another node"])
async def test_a_supervisor_moved_to_another_team_is_closed_and_comes_back_with_the_new_one(
    db: Database, db_url: str, writer: str
) -> None:
    async with call_centre(db) as s:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, s, "boss")
            ws = await open_ws(http, s)
            assert await gets(ws, s.hub, to_role("supervisor", queue="sales"))
            assert not await gets(ws, s.hub, to_role("supervisor", queue="support"))
            await move_boss_south(s, db_url, writer)
            assert await closed_with(ws, timeout=3) == CLOSE_ACCESS_CHANGED
            # the session holds: the page reconnects and gets what the new team allows
            ws = await open_ws(http, s)
            assert not await gets(ws, s.hub, to_role("supervisor", queue="sales"))
            assert await gets(ws, s.hub, to_role("supervisor", queue="support"))
            (conn,) = s.hub.connections
            assert conn.principal.agents == frozenset({"a201"})  # no longer a101


async def test_a_supervisor_demoted_to_agent_by_an_operators_sql_is_closed(
    db: Database, db_url: str
) -> None:
    async with call_centre(db) as s:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, s, "boss")
            ws = await open_ws(http, s)
            assert await gets(ws, s.hub, to_role("supervisor"))
            other = Database.from_url(db_url)  # not through the accounts: no session revoked
            try:
                async with other.session() as session, session.begin():
                    await session.execute(
                        update(User).where(User.login == "boss").values(role="agent")
                    )
            finally:
                await other.dispose()
            assert await closed_with(ws, timeout=3) == CLOSE_ACCESS_CHANGED
            ws = await open_ws(http, s)
            assert not await gets(ws, s.hub, to_role("supervisor"))


async def test_a_tokens_role_or_queues_changed_by_sql_close_its_websocket(
    db: Database, db_url: str
) -> None:
    wallboard = await create_token(db, "wallboard", "supervisor", queues=["sales", "support"])
    async with site(db, sweep_s=0.2) as s, aiohttp.ClientSession() as http:
        ws = await open_ws(http, s, wallboard)
        keep = await open_ws(http, s, await create_token(db, "other", "supervisor"))
        assert await gets(ws, s.hub, to_role("supervisor", queue="support"))
        other = Database.from_url(db_url)
        try:
            async with other.session() as session, session.begin():
                await session.execute(
                    update(ApiToken).where(ApiToken.name == "wallboard").values(queues=["sales"])
                )
        finally:
            await other.dispose()
        assert await closed_with(ws, timeout=3) == CLOSE_ACCESS_CHANGED
        ws = await open_ws(http, s, wallboard)
        assert not await gets(ws, s.hub, to_role("supervisor", queue="support"))
        assert await gets(ws, s.hub, to_role("supervisor", queue="sales"))
        assert not keep.closed


async def test_another_teams_change_through_the_api_leaves_the_connection_open(
    db: Database,
) -> None:
    admin = await create_token(db, "admin-script", "admin")
    async with call_centre(db) as s:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, s, "boss")
            ws = await open_ws(http, s)
            await s.hub.sweep()
            mark = await credential_mark(db)
            async with http.put(f"{s.base}/api/v1/teams/south",
                                headers={"Authorization": f"Bearer {admin}"},
                                json={"queues": ["support"], "members": ["bob", "cid"]},
                                ) as resp:  # fmt: skip
                assert resp.status == 200, await resp.text()
            assert await credential_mark(db) != mark  # it could have changed someone's scope
            with statements(db) as sql:
                assert await s.hub.sweep() == 0
            assert about_credentials(sql)  # a full check ran and found boss's scope the same
            assert not ws.closed
            assert await gets(ws, s.hub, to_role("supervisor", queue="sales"))


async def test_every_write_that_can_change_what_a_credential_sees_moves_the_marker(
    db: Database,
) -> None:
    accounts = Accounts(db, AuthConfig(**FAST), AuditLog(db))
    moved = await marker_moves(db)

    user = await accounts.create_user("setup", {"login": "anna", "password": PW,
                                                "role": "agent", "agent": "a101"})  # fmt: skip
    await create_token(db, "board", "supervisor")
    await accounts.update_user("setup", user["id"], {"display_name": "Anna"})
    assert not await moved()  # creating, and what nobody's scope depends on
    await accounts.put_team("setup", "north", {"queues": ["sales"], "members": ["anna"]})
    assert await moved()  # a membership
    await accounts.put_team("setup", "north", {"queues": ["sales", "support"]})
    assert await moved()  # a team's queues
    await accounts.update_user("setup", user["id"], {"queues": ["billing"]})
    assert await moved()  # a user's own scope
    await accounts.update_user("setup", user["id"], {"teams": []})
    assert await moved()  # leaving a team
    async with db.session() as session, session.begin():
        await session.execute(update(User).values(agent="a102"))
    assert await moved()  # an agent binding (the name it acts as, its mates' scope)
    async with db.session() as session, session.begin():
        await session.execute(update(ApiToken).values(role="agent"))
    assert await moved()
    async with db.session() as session, session.begin():
        await session.execute(update(ApiToken).values(queues=["sales"]))
    assert await moved()
    await accounts.delete_team("setup", "north")
    assert await moved()


async def take_north_from_boss(s: Site, db_url: str, how: str) -> None:
    """boss loses their only team: through the daemon's API (north deleted, boss removed
    from its members, boss's team list emptied) or north deleted by another node."""
    if how == "another node: team deleted":
        other = Database.from_url(db_url)
        try:
            await Accounts(other, AuthConfig(**FAST), AuditLog(other)).delete_team("admin", "north")
        finally:
            await other.dispose()
        return
    boss = await s.accounts.find_login("boss")
    assert boss is not None
    route: dict[str, tuple[str, str, dict[str, Any] | None]] = {
        "api: team deleted": ("DELETE", "/api/v1/teams/north", None),
        "api: removed from the members": ("PUT", "/api/v1/teams/north",
                                          {"queues": ["sales"], "members": ["ann"]}),
        "api: team list emptied": ("PATCH", f"/api/v1/users/{boss['id']}",
                                   {"teams": [], "queues": None}),
    }  # fmt: skip
    method, path, body = route[how]
    admin = await create_token(s.hub.db, "admin-script", "admin")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
        async with http.request(method, s.base + path, json=body) as resp:
            assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    "how",
    ["api: team deleted", "api: removed from the members", "api: team list emptied",
     "another node: team deleted"],
)  # fmt: skip
async def test_a_supervisor_losing_their_only_team_is_closed_and_comes_back_seeing_nothing(
    db: Database, db_url: str, how: str
) -> None:
    """Decision 0036: the removal leaves boss an empty scope, not the whole centre; the
    open wallboard/desktop socket closes (4005) and reconnects to nothing of north's nor
    south's (before the rule it came back unrestricted: every queue and agent)."""
    async with call_centre(db) as s:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, s, "boss")
            ws = await open_ws(http, s)
            assert await gets(ws, s.hub, to_role("supervisor", queue="sales"))
            await take_north_from_boss(s, db_url, how)
            assert await closed_with(ws, timeout=3) == CLOSE_ACCESS_CHANGED
            ws = await open_ws(http, s)  # the session holds
            assert not await gets(ws, s.hub, to_role("supervisor", queue="sales"))
            assert not await gets(ws, s.hub, to_role("supervisor", queue="support"))
            (conn,) = s.hub.connections
            assert conn.principal.queues == frozenset() and conn.principal.agents == frozenset()
