"""Accounts over real sockets: password sign-in, cookie + CSRF, expiry, throttling,
second factor, disabling (websockets end at once), tokens' lifecycle, audit, metrics."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pyotp
import pytest
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from cti.config import AuthConfig, HttpConfig
from cti.store.db import Database
from cti.store.models import WebSession, utcnow
from cti.store.tokens import create_token, revoke_token
from cti.web.app import WebDeps, create_app
from cti.web.auth import ACCOUNTS
from cti.web.ws import CLOSE_CREDENTIAL_ENDED, WsHub
from tests.local_http import FAST, PW, NoCalls


@dataclass
class Site:
    base: str
    app: web.Application
    db: Database
    hub: WsHub

    @property
    def origin(self) -> str:
        return self.base

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=self.base, cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Origin": self.base},
        )  # fmt: skip


async def start(
    db: Database, auth: AuthConfig, http: HttpConfig | None = None
) -> tuple[Site, web.AppRunner]:
    hub = WsHub(db, auth_timeout_s=1, sweep_s=0.2)
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=hub,
                             http=http or HttpConfig(), auth=auth))  # fmt: skip
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return Site(f"http://127.0.0.1:{port}", app, db, hub), runner


@pytest.fixture
async def site(db: Database) -> AsyncIterator[Site]:
    s, runner = await start(db, AuthConfig(**FAST, failures_per_user=3, failures_per_address=6))
    accounts = s.app[ACCOUNTS]
    await accounts.create_user("setup", {"login": "root", "password": PW, "role": "admin"})
    await accounts.create_user("setup", {"login": "anna", "password": PW, "role": "agent",
                                         "agent": "agent101"})  # fmt: skip
    yield s
    await s.hub.close_all()
    await runner.cleanup()


async def sign_in(http: aiohttp.ClientSession, login: str, password: str = PW,
                  **extra: str) -> tuple[int, dict[str, Any]]:  # fmt: skip
    async with http.post("/api/v1/auth/sign-in", json={"login": login, "password": password,
                                                        **extra}) as resp:  # fmt: skip
        return resp.status, await resp.json()


async def test_sign_in_sets_a_safe_cookie_and_reads_as_the_agent(site: Site) -> None:
    async with site.session() as http:
        async with http.post("/api/v1/auth/sign-in",
                             json={"login": "Anna", "password": PW}) as resp:  # fmt: skip
            assert resp.status == 200
            body = await resp.json()
            cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        assert body["user"] == {"name": "agent101", "role": "agent", "login": "anna",
                                "kind": "session", "agent": "agent101"}  # fmt: skip
        async with http.get("/api/v1/me") as resp:
            me = await resp.json()
            assert me["name"] == "agent101" and me["kind"] == "session"
        async with http.get("/api/v1/auth/session") as resp:
            assert (await resp.json())["csrf_token"] == body["csrf_token"]
        async with http.get("/api/v1/users") as resp:
            assert resp.status == 403  # an agent is not an admin


async def test_wrong_password_and_unknown_login_look_the_same(site: Site) -> None:
    async with site.session() as http:
        s1, b1 = await sign_in(http, "anna", "wrong password!")
        s2, b2 = await sign_in(http, "nobody", "wrong password!")
        assert s1 == s2 == 401 and b1 == b2
        assert b1["code"] == "bad-credentials"
        async with http.get("/api/v1/me") as resp:
            assert resp.status == 401


async def test_csrf_and_origin_guard_cookie_writes(site: Site) -> None:
    async with site.session() as http:
        _, body = await sign_in(http, "root")
        csrf = body["csrf_token"]
        new = {"login": "bob", "password": PW, "role": "agent"}
        async with http.post("/api/v1/users", json=new) as resp:
            assert resp.status == 403 and (await resp.json())["code"] == "csrf"
        async with http.post("/api/v1/users", json=new,
                             headers={"X-CSRF-Token": "0" * 64}) as resp:  # fmt: skip
            assert resp.status == 403
        evil = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        async with http.post("/api/v1/users", json=new, headers=evil) as resp:
            assert resp.status == 403 and (await resp.json())["code"] == "bad-origin"
        async with http.post("/api/v1/users", json=new, headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 201, await resp.text()
        # a bearer token is not ambient: no CSRF token needed
        token = await create_token(site.db, "ops", "admin")
    async with aiohttp.ClientSession(base_url=site.base) as http:
        async with http.post("/api/v1/users", json={**new, "login": "carl"},
                             headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
            assert resp.status == 201


async def test_sessions_expire_idle_and_absolute(site: Site) -> None:
    async with site.session() as http:
        await sign_in(http, "anna")
        async with http.get("/api/v1/me") as resp:
            assert resp.status == 200
        async with site.db.session() as s, s.begin():
            await s.execute(
                update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=61))
            )
        async with http.get("/api/v1/me") as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "session-ended"
        await sign_in(http, "anna")
        async with site.db.session() as s, s.begin():
            await s.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        async with http.get("/api/v1/me") as resp:
            assert resp.status == 401


async def test_failed_sign_ins_are_throttled_per_user_and_address(site: Site) -> None:
    async with site.session() as http:
        for _ in range(3):
            assert (await sign_in(http, "anna", "wrong password!"))[0] == 401
        async with http.post(
            "/api/v1/auth/sign-in", json={"login": "anna", "password": PW}
        ) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        assert (await sign_in(http, "root"))[0] == 200  # another user is not locked
        for _ in range(3):
            await sign_in(http, "ghost", "wrong password!")
        assert (await sign_in(http, "root"))[0] == 429  # the address is


async def test_disabling_a_user_ends_sessions_and_websockets_at_once(site: Site) -> None:
    accounts = site.app[ACCOUNTS]
    async with site.session() as http, site.session() as other:
        await sign_in(http, "anna")
        await sign_in(other, "anna")
        ws = await http.ws_connect("/ws")
        hello = json.loads((await ws.receive(timeout=3)).data)
        assert hello == {"type": "hello", "who": "agent101", "role": "agent"}
        user = await accounts.find_login("anna")
        assert user is not None
        await accounts.set_disabled("root", user["id"], True)
        msg = await ws.receive(timeout=1)  # at once: not waiting for the sweep
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert ws.close_code == CLOSE_CREDENTIAL_ENDED
        for client in (http, other):
            async with client.get("/api/v1/me") as resp:
                assert resp.status == 401
        assert (await sign_in(http, "anna"))[0] == 401


async def test_revoked_or_expired_tokens_end_their_websockets(site: Site) -> None:
    admin = await create_token(site.db, "ops", "admin")
    auth = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession(base_url=site.base, headers=auth) as http:
        async with http.post("/api/v1/tokens", json={"name": "wallboard", "role": "supervisor",
                                                      "expires_in_days": 30}) as resp:  # fmt: skip
            assert resp.status == 201
            made = await resp.json()
        async with http.get("/api/v1/tokens") as resp:
            listed = (await resp.json())["tokens"]
        assert all("token" not in t and "token_hash" not in t for t in listed)
        assert {t["name"] for t in listed} >= {"ops", "wallboard"}
        ws = await http.ws_connect("/ws", headers={"Authorization": f"Bearer {made['token']}"})
        assert json.loads((await ws.receive(timeout=3)).data)["type"] == "hello"
        async with http.delete(f"/api/v1/tokens/{made['id']}") as resp:
            assert resp.status == 200
        await ws.receive(timeout=1)
        assert ws.close_code == CLOSE_CREDENTIAL_ENDED
        async with aiohttp.ClientSession(base_url=site.base) as anon:
            async with anon.get(
                "/api/v1/me", headers={"Authorization": f"Bearer {made['token']}"}
            ) as resp:
                assert resp.status == 401
        # revoked by another process (the CLI): the sweep closes it
        cli = await create_token(site.db, "cli-made", "agent")
        ws = await http.ws_connect("/ws", headers={"Authorization": f"Bearer {cli}"})
        await ws.receive(timeout=3)
        assert await revoke_token(site.db, "cli-made") == 1
        await ws.receive(timeout=3)
        assert ws.close_code == CLOSE_CREDENTIAL_ENDED
        # expired
        soon = await create_token(
            site.db, "short", "agent", expires_at=utcnow() + timedelta(seconds=1)
        )
        ws = await http.ws_connect("/ws", headers={"Authorization": f"Bearer {soon}"})
        await ws.receive(timeout=3)
        await ws.receive(timeout=4)
        assert ws.close_code == CLOSE_CREDENTIAL_ENDED


async def test_sign_out_and_sign_out_everywhere(site: Site) -> None:
    async with site.session() as a, site.session() as b:
        _, body = await sign_in(a, "anna")
        await sign_in(b, "anna")
        ws = await b.ws_connect("/ws")
        await ws.receive(timeout=3)
        async with a.post("/api/v1/auth/sign-out-everywhere",
                          headers={"X-CSRF-Token": body["csrf_token"]}) as resp:  # fmt: skip
            assert resp.status == 200 and (await resp.json())["sessions_ended"] == 2
        await ws.receive(timeout=1)
        assert ws.close_code == CLOSE_CREDENTIAL_ENDED
        async with b.get("/api/v1/me") as resp:
            assert resp.status == 401
        _, body = await sign_in(a, "anna")
        async with a.post(
            "/api/v1/auth/sign-out", headers={"X-CSRF-Token": body["csrf_token"]}
        ) as resp:
            assert resp.status == 200
        async with a.get("/api/v1/me") as resp:
            assert resp.status == 401


async def test_admin_second_factor(site: Site) -> None:
    async with site.session() as http:
        _, body = await sign_in(http, "root")
        h = {"X-CSRF-Token": body["csrf_token"]}
        async with http.post("/api/v1/auth/totp/setup", headers=h) as resp:
            setup = await resp.json()
        assert setup["uri"].startswith("otpauth://totp/")
        totp = pyotp.TOTP(setup["secret"])
        async with http.post(
            "/api/v1/auth/totp/confirm", json={"code": "000000"}, headers=h
        ) as resp:
            assert resp.status == 400
        code = totp.now()
        async with http.post("/api/v1/auth/totp/confirm", json={"code": code}, headers=h) as resp:
            assert resp.status == 200
    async with site.session() as http:
        status, body = await sign_in(http, "root")
        assert status == 401 and body["code"] == "totp-required"
        assert (await sign_in(http, "root", code=code))[0] == 401  # a code works once
        nxt = totp.at(int(utcnow().timestamp()) + 30)
        assert (await sign_in(http, "root", code=nxt))[0] == 200


async def test_audit_log_records_changes_and_sign_ins_and_exports_safely(site: Site) -> None:
    accounts = site.app[ACCOUNTS]
    async with site.session() as http:
        await sign_in(http, "=cmd|' /C calc'!A0", "wrong password!")
        _, body = await sign_in(http, "root")
        h = {"X-CSRF-Token": body["csrf_token"]}
        user = await accounts.find_login("anna")
        assert user is not None
        async with http.patch(f"/api/v1/users/{user['id']}", json={"display_name": "Anna Li"},
                              headers=h) as resp:  # fmt: skip
            assert resp.status == 200
        async with http.get("/api/v1/audit?action=user.update") as resp:
            entries = (await resp.json())["entries"]
        assert entries[0]["actor"] == "root" and entries[0]["target_id"] == "anna"
        assert (
            entries[0]["before"]["display_name"] == ""
            and entries[0]["after"]["display_name"] == "Anna Li"
        )
        async with http.get("/api/v1/audit?action=auth.") as resp:
            actions = {e["action"] for e in (await resp.json())["entries"]}
        assert {"auth.sign_in", "auth.sign_in_failed"} <= actions
        async with http.get("/api/v1/audit/export?format=csv") as resp:
            assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
            rows = list(csv.reader(io.StringIO(await resp.text())))
        cells = [c for r in rows[1:] for c in r]
        assert "'=cmd|' /c calc'!a0" in cells and not any(c.startswith("=") for c in cells)
        assert not any("argon2" in c for c in cells)


async def test_team_scope_for_supervisors(site: Site) -> None:
    accounts = site.app[ACCOUNTS]
    await accounts.create_user("setup", {"login": "sue", "password": PW, "role": "supervisor"})
    await accounts.create_user("setup", {"login": "ben", "password": PW, "role": "agent",
                                         "agent": "agent102"})  # fmt: skip
    await accounts.put_team("setup", "north", {"queues": ["support"], "members": ["sue", "anna"]})
    async with site.session() as http:
        await sign_in(http, "sue")
        async with http.get("/api/v1/me") as resp:
            me = await resp.json()
    assert me["queues"] == ["support"]
    user = await accounts.find_login("sue")
    assert user is not None and user["teams"] == ["north"]


async def test_metrics_only_from_allowed_networks_or_with_a_token(db: Database) -> None:
    s, runner = await start(db, AuthConfig(**FAST), HttpConfig(metrics_allow=["10.0.0.0/8"]))
    try:
        async with aiohttp.ClientSession(base_url=s.base) as http:
            async with http.get("/metrics") as resp:
                assert resp.status == 401
            agent = await create_token(db, "a", "agent")
            async with http.get("/metrics", headers={"Authorization": f"Bearer {agent}"}) as resp:
                assert resp.status == 403
            sup = await create_token(db, "prom", "supervisor")
            async with http.get("/metrics", headers={"Authorization": f"Bearer {sup}"}) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
    s, runner = await start(db, AuthConfig(**FAST))  # default: loopback allowed
    try:
        async with aiohttp.ClientSession(base_url=s.base) as http, http.get("/metrics") as resp:
            assert resp.status == 200
    finally:
        await runner.cleanup()
