"""Agents' phones provisioned from the store (issue #14): a browser phone and a SIP phone
added through the API are endpoints in the running Asterisk at once (no restart, a call
in progress untouched), register with the credentials handed out (a SIPp desk phone
over UDP, a SIP-over-WebSocket client as SIP.js does), and stop working when rotated or
removed.

Provisioning and the request checks run on both stores; the desk phone's call and the
address block are Asterisk's and run on SQLite only (harness.SQLITE_ONLY)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from acd import store as acd_store
from cti.ami.client import AmiClient
from cti.ami.config_push import Category, read
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.store.db import Database
from cti.store.models import AuditEntry
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from phones import store as phone_store
from phones.credentials import ha1
from phones.pjsip import shard_file
from tests.acceptance.conftest import DaemonFactory, daemon_settings
from tests.acceptance.harness import SQLITE_ONLY, add_sim_agent, originate_call, wait_for
from tests.acceptance.sip_phones import (
    sipp_register,
    start_caller,
    start_desk_phone,
    ws_register,
)


class Api:
    def __init__(self, daemon: Daemon, token: str) -> None:
        self.base = f"http://127.0.0.1:{daemon.http_port}"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, self.base + path, json=body, headers=self.headers) as r,
        ):
            return r.status, await r.json()


async def endpoints(ami: AmiClient) -> set[str]:
    _, items = await ami.send_list_action("PJSIPShowEndpoints")
    return {i["ObjectName"] for i in items}


async def startup(ami: AmiClient) -> tuple[str, str]:
    r = await ami.send_action("CoreStatus")
    return r["CoreStartupDate"], r["CoreStartupTime"]


async def channels(ami: AmiClient) -> set[str]:
    _, items = await ami.send_list_action("CoreShowChannels")
    return {i["Channel"] for i in items}


async def test_phones_are_provisioned_into_the_running_asterisk(
    ami: AmiClient, asterisk: ChrootAsterisk, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = await start_daemon()
    admin = Api(daemon, await create_token(daemon.db, "ops", "admin"))
    booted = await startup(ami)

    # a call is up while the phones are added
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "60"})
    await add_sim_agent(ami, "101")
    await originate_call(ami, hold_s=60)

    async def talking() -> set[str]:
        chans = await channels(ami)
        return chans if len(chans) >= 4 else set()

    up = await wait_for(talking, timeout=20, what="the call to be answered")

    status, web = await admin("POST", "/api/v1/agents/agent101/phones",
                              {"kind": "webrtc", "label": "desk browser"})  # fmt: skip
    assert status == 201, web
    status, sip = await admin("POST", "/api/v1/phones",
                              {"agent": "agent101", "kind": "sip", "label": "Yealink"})  # fmt: skip
    assert status == 201, sip
    web_name, sip_name = web["phone"]["name"], sip["phone"]["name"]
    assert web["applied"] and sip["applied"]
    assert {web_name, sip_name} <= await endpoints(ami)
    assert await startup(ami) == booted, "Asterisk was restarted"
    assert up <= await channels(ami), "the call in progress was touched"

    # the browser phone: WebRTC media (DTLS-SRTP, ICE) on it, not on the desk phone
    web_ep = await asyncio.to_thread(asterisk.cli, f"pjsip show endpoint {web_name}")
    sip_ep = await asyncio.to_thread(asterisk.cli, f"pjsip show endpoint {sip_name}")
    assert " webrtc " in web_ep and ": yes" in web_ep.split(" webrtc ", 1)[1].split("\n")[0]
    assert "ice_support                        : true" in web_ep
    assert "media_encryption                   : dtls" in web_ep
    assert "ice_support                        : false" in sip_ep
    assert "opus" in web_ep.split(" allow ", 1)[1].split("\n")[0]

    # the SIP phone's password is shown once, the browser phone's never to the admin
    sip_password = sip["credentials"]["password"]
    assert len(sip_password) >= 24
    assert "password" not in web["credentials"]
    assert sip["credentials"]["registrar"]["udp"].endswith(f":{asterisk.spec.sip_port}")
    status, listed = await admin("GET", "/api/v1/phones")
    assert status == 200 and "password" not in json.dumps(listed)
    async with daemon.db.session() as s:
        entries = await s.execute(select(AuditEntry).where(AuditEntry.action.like("phones.%")))
        logged = json.dumps([[e.action, e.before, e.after, e.detail] for e in entries.scalars()])
    assert "phones.create" in logged and sip_password not in logged

    # the desk phone registers with its credentials; a wrong password is refused
    ok, _, out = await sipp_register(asterisk, sip_name, "wrong-password", cwd=tmp_path)
    assert not ok
    ok, _, out = await sipp_register(asterisk, sip_name, sip_password, cwd=tmp_path)
    assert ok, out

    async def registered(name: str) -> bool:
        _, phones = await admin("GET", "/api/v1/agents/agent101/phones")
        return any(p["name"] == name and p["registered"] for p in phones["phones"])

    await wait_for(lambda: registered(sip_name), timeout=10, what="the desk phone registered")

    # the agent's desktop gets what SIP.js needs, and it registers over the WebSocket
    agent = Api(daemon, await create_token(daemon.db, "agent101", "agent"))
    status, mine = await agent("GET", "/api/v1/me/phones")
    assert status == 200, mine
    (browser,) = [p for p in mine["phones"] if p["kind"] == "webrtc"]
    creds = browser["sip"]
    assert creds["ws_url"] == f"ws://127.0.0.1:{asterisk.spec.http_port}/ws"
    assert creds["uri"] == f"sip:{web_name}@127.0.0.1" and creds["username"] == web_name
    code, session, _ws = await ws_register(creds["ws_url"], web_name, "not-" + creds["password"])
    await session.close()
    assert code in (401, 403)
    code, session, _ws = await ws_register(creds["ws_url"], web_name, creds["password"])
    try:
        assert code == 200
        await wait_for(
            lambda: registered(web_name), timeout=10, what="the browser phone registered"
        )
    finally:
        await session.close()

    # rotated: the old password no longer registers, the new one does
    status, rotated = await admin("POST", f"/api/v1/phones/{sip_name}/rotate")
    assert status == 200, rotated
    new_password = rotated["credentials"]["password"]
    assert new_password != sip_password
    assert not await registered(sip_name), "the registration made with the old password stays"
    assert sip_name not in await asyncio.to_thread(asterisk.cli, "pjsip show contacts")
    ok, _, _ = await sipp_register(asterisk, sip_name, sip_password, cwd=tmp_path)
    assert not ok
    ok, _, out = await sipp_register(asterisk, sip_name, new_password, cwd=tmp_path)
    assert ok, out

    # removed: gone from Asterisk with its registration, the call still up
    status, gone = await admin("DELETE", f"/api/v1/phones/{sip_name}")
    assert status == 200 and gone["applied"], gone
    assert sip_name not in await endpoints(ami)
    contacts = await asyncio.to_thread(asterisk.cli, "pjsip show contacts")
    assert sip_name not in contacts
    ok, _, _ = await sipp_register(asterisk, sip_name, new_password, cwd=tmp_path)
    assert not ok
    assert up <= await channels(ami)
    assert await startup(ami) == booted


async def test_phone_requests_are_checked(start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon()
    admin = Api(daemon, await create_token(daemon.db, "ops", "admin"))
    sup = Api(daemon, await create_token(daemon.db, "sup", "supervisor"))
    agent = Api(daemon, await create_token(daemon.db, "agent102", "agent"))
    for body in (
        {"agent": "agent101", "kind": "iax"},
        {"agent": "a\r\nb", "kind": "sip"},
        {"agent": "agent101", "kind": "sip", "label": "x\ny"},
        {"agent": "agent101", "kind": "sip", "extra": 1},
        {"agent": ["x"], "kind": "sip"},
    ):
        status, err = await admin("POST", "/api/v1/phones", body)
        assert status == 400, (body, err)
    assert (await sup("POST", "/api/v1/phones", {"agent": "agent101", "kind": "sip"}))[0] == 403
    assert (await agent("GET", "/api/v1/agents/agent101/phones"))[0] == 403
    assert (await admin("DELETE", "/api/v1/phones/nope"))[0] == 404
    for _ in range(4):
        assert (await admin("POST", "/api/v1/phones", {"agent": "agent102", "kind": "sip"}))[
            0
        ] == 201
    status, err = await admin("POST", "/api/v1/phones", {"agent": "agent102", "kind": "sip"})
    assert status == 400 and "at most" in err["error"]
    status, mine = await agent("GET", "/api/v1/me/phones")
    assert status == 200 and len(mine["phones"]) == 4
    assert all("password" not in p["sip"] for p in mine["phones"])  # SIP phones: shown once only


@SQLITE_ONLY
async def test_a_desk_phone_answers_a_queue_call(
    ami: AmiClient, asterisk: ChrootAsterisk, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """An agent with a provisioned SIP phone is logged in on it (its queue member is
    PJSIP/<phone>, not its simulated device) and a SIPp caller's queue call rings the
    registered SIPp desk phone, which answers."""
    daemon = await start_daemon()
    await acd_store.put_agent(daemon.db, "agent101", "", [("local", "101")], {"support": 0})
    admin = Api(daemon, await create_token(daemon.db, "ops", "admin"))
    status, sip = await admin("POST", "/api/v1/phones", {"agent": "agent101", "kind": "sip"})
    assert status == 201, sip
    name, password = sip["phone"]["name"], sip["credentials"]["password"]
    ok, port, out = await sipp_register(asterisk, name, password, cwd=tmp_path)
    assert ok, out
    phone = await start_desk_phone(port, cwd=tmp_path)
    try:
        agent = Api(daemon, await create_token(daemon.db, "agent101", "agent"))
        status, body = await agent("POST", "/api/v1/acd/agents/agent101/status",
                                   {"status": "available"})  # fmt: skip
        assert status == 200, body
        _, items = await ami.send_list_action("QueueStatus", {"Queue": "support"})
        members = {i.get("StateInterface") for i in items if i.get("Event") == "QueueMember"}
        assert f"PJSIP/{name}" in members, members

        caller = await start_caller(asterisk, cwd=tmp_path, talk_ms=2000)
        out_caller, _ = await asyncio.wait_for(caller.communicate(), 60)
        assert caller.returncode == 0, out_caller.decode(errors="replace")[-2000:]
        out_phone, _ = await asyncio.wait_for(phone.communicate(), 30)
        assert phone.returncode == 0, out_phone.decode(errors="replace")[-2000:]
    finally:
        if phone.returncode is None:
            phone.kill()
            await phone.wait()

    async def answered_row() -> list[CallRow]:
        async with daemon.db.session() as s:
            rows = (await s.execute(select(CallRow).where(CallRow.agent == "agent101"))).scalars()
            return [r for r in rows if r.disposition == "answered"]

    (row,) = await wait_for(answered_row, timeout=20, what="the answered call's row")
    assert row.queue == "support"


@pytest.fixture
async def blocking_daemon(asterisk: ChrootAsterisk, db_url: str) -> AsyncIterator[Daemon]:
    """A daemon that blocks after 3 wrong credentials within 30 s, for 4 s."""
    settings = daemon_settings(
        asterisk, db_url, phones={"block_failures": 3, "block_window_s": 30, "block_s": 4}
    )
    daemon = Daemon(settings)
    await daemon.start()
    await daemon.ami.wait_connected(timeout=15)
    yield daemon
    await daemon.stop()


@SQLITE_ONLY
async def test_repeated_wrong_credentials_block_the_address_for_a_while(
    ami: AmiClient, asterisk: ChrootAsterisk, blocking_daemon: Daemon, tmp_path: Path
) -> None:
    daemon = blocking_daemon
    admin = Api(daemon, await create_token(daemon.db, "ops", "admin"))
    status, sip = await admin("POST", "/api/v1/phones", {"agent": "agent103", "kind": "sip"})
    assert status == 201, sip
    name, password = sip["phone"]["name"], sip["credentials"]["password"]
    attacker, other = "127.0.0.3", "127.0.0.4"
    ok, _, out = await sipp_register(asterisk, name, password, cwd=tmp_path, ip=attacker)
    assert ok, out  # the right credentials work from there, before any guessing

    for guess in ("123456", "password", name):
        ok, _, _ = await sipp_register(asterisk, name, guess, cwd=tmp_path, ip=attacker)
        assert not ok
    conf = asterisk.etc_dir / "pjsip_phones.conf"

    async def blocked() -> bool:
        return f"deny = {attacker}/32" in conf.read_text()

    await wait_for(blocked, timeout=10, what="the attacker's address in the ACL")
    async with aiohttp.ClientSession() as s, s.get(admin.base + "/metrics") as r:
        metrics = await r.text()
    assert "cti_phones_blocked_addresses 1.0" in metrics and "cti_phones_blocks 1.0" in metrics
    ok, _, _ = await sipp_register(asterisk, name, password, cwd=tmp_path, ip=attacker)
    assert not ok, "a blocked address registered"
    ok, _, out = await sipp_register(asterisk, name, password, cwd=tmp_path, ip=other)
    assert ok, out  # only that address is blocked

    async def unblocked() -> bool:
        return not await blocked()

    await wait_for(unblocked, timeout=15, what="the block to end")
    ok, _, out = await sipp_register(asterisk, name, password, cwd=tmp_path, ip=attacker)
    assert ok, out


async def metric(daemon: Daemon, name: str) -> float:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{daemon.http_port}/metrics") as r,
    ):
        text = await r.text()
    (line,) = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[1])


async def applied(daemon: Daemon) -> bool:
    return await metric(daemon, "cti_phones_pjsip_reloads") >= 1


@SQLITE_ONLY
async def test_a_connect_pushes_only_the_phones_that_changed_meanwhile(
    ami: AmiClient, asterisk: ChrootAsterisk, db_url: str
) -> None:
    """Phones changed in the store while no daemon drove Asterisk (one rotated, one
    removed, one added) are what Asterisk has once a daemon connects, read back with
    GetConfig and loaded by res_pjsip; the files of the other phones are not rewritten
    (same bytes, same mtime) and one UpdateConfig goes to each changed file only."""

    async def new_phone(db: Database, agent: str) -> str:
        row = await phone_store.create(db, agent, "sip", "", "cti",
                                       lambda n: ha1(n, "cti", "pw-" + n), 5)  # fmt: skip
        return row.name

    db = Database.from_url(db_url)
    try:
        names = [await new_phone(db, f"agent{100 + i}") for i in range(6)]
        settings = daemon_settings(asterisk, db_url)
        first = Daemon(settings)
        await first.start()
        try:
            await wait_for(lambda: applied(first), timeout=20, what="the first connect's push")
        finally:
            await first.stop()
        rotated, removed, kept = names[0], names[1], names[2:]
        before = {f: (f.stat().st_mtime_ns, f.read_bytes())
                  for f in asterisk.etc_dir.glob("pjsip_phones.*.conf")}  # fmt: skip
        assert {shard_file(n) for n in names} <= {f.name for f in before}
        # meanwhile, with no daemon driving
        await phone_store.rotate(db, rotated, "cti", lambda n: ha1(n, "cti", "new-" + n))
        await phone_store.delete_phone(db, removed)
        added = await new_phone(db, "agent110")
    finally:
        await db.dispose()
    changed = {shard_file(n) for n in (rotated, removed, added)}

    second = Daemon(settings)
    await second.start()
    try:
        await wait_for(lambda: applied(second), timeout=20, what="the connect's push")
        assert await metric(second, "cti_phones_config_messages") == len(changed)
    finally:
        await second.stop()

    def digest(cats: list[Category], name: str) -> str:
        (auth,) = [c for c in cats if c.name == name and ("type", "auth") in c.options]
        return dict(auth.options)["password_digest"]

    back = await read(ami, shard_file(rotated))
    assert digest(back, rotated) == f"md5:{ha1(rotated, 'cti', 'new-' + rotated)}"
    assert removed not in {c.name for c in await read(ami, shard_file(removed))}
    back = await read(ami, shard_file(added))
    assert digest(back, added) == f"md5:{ha1(added, 'cti', 'pw-' + added)}"
    assert [c.inherit for c in back if c.name == added] == [("phone-sip",), ("phone-aor",), ()]
    live = await endpoints(ami)
    assert added in live and rotated in live and removed not in live and set(kept) <= live
    for f, (mtime, content) in before.items():
        if f.name not in changed:
            assert (f.stat().st_mtime_ns, f.read_bytes()) == (mtime, content), f.name
        else:
            assert f.read_bytes() != content, f.name
