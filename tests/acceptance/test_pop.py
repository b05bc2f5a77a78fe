"""Screen pops with the real Asterisk: a real queue call rings a simulated agent (member
name = the agent's token name) and the pop reaches that agent's websocket while the phone
rings, with the customer card from crm_bridge; answer and hang-up update the same card.

The two pop tests run on SQLite only (harness.SQLITE_ONLY): the CRM lookup by number they
rely on runs on PostgreSQL in tests/integration/test_crm_calls.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acd.feature import AcdFeature
from acd.queues_conf import FILE_NAME
from crm_bridge.feature import CrmFeature
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.daemon import Daemon
from cti.features import Feature
from cti.store.tokens import create_token
from desktop.feature import DesktopFeature
from ivr.feature import IvrFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import PAGE_PASSWORD, SQLITE_ONLY, originate_call, wait_for
from tests.acceptance.test_ivr_harness import MENUS, call, ivr_settings


@dataclass
class Stack:
    """The daemon (ACD + CRM + desktop) on the real Asterisk, and an HTTP client."""

    daemon: Daemon
    http: aiohttp.ClientSession
    admin: str
    ami: AmiClient
    seen: list[Message] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.http_port}"

    async def api(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            ctype = resp.headers.get("Content-Type", "")
            data = await resp.json() if "json" in ctype else await resp.text()
            return resp.status, data

    async def agent(self, name: str, ext: str, queue: str = "support") -> str:
        """An ACD agent on a simulated phone (Local/<ext>@cti-sim-agents), logged in
        (available); returns its token (token name = agent name = MemberName)."""
        status, body = await self.api(
            "PUT", f"/api/v1/acd/agents/{name}", self.admin,
            {"devices": [{"kind": "local", "address": ext}], "skills": {queue: 0}},
        )  # fmt: skip
        assert status == 200, body
        token = await create_token(self.daemon.db, name, "agent")
        status, body = await self.api(
            "POST", f"/api/v1/acd/agents/{name}/status", token, {"status": "available"}
        )
        assert status == 200, body
        return token

    async def person(self, login: str, role: str = "agent", agent: str | None = None) -> str:
        """An account that signs in on the pages with PAGE_PASSWORD; returns its login."""
        status, body = await self.api(
            "POST", "/api/v1/users", self.admin,
            {"login": login, "password": PAGE_PASSWORD, "role": role, "agent": agent},
        )  # fmt: skip
        assert status in (201, 409), body
        return login

    def events(self, name: str, linkedid: str) -> list[Message]:
        return [m for m in self.seen if m.event == name and m.get("Linkedid") == linkedid]

    async def rang_while(self, linkedid: str, seen_at: float) -> None:
        """Assert that at ``seen_at`` (time.time()) the phone was ringing: Asterisk's own
        timestamps (same clock) put AgentCalled before it and AgentConnect after it. (This
        test's AMI connection may lag the daemon's, so we wait for the events.)"""

        async def connected() -> list[Message]:
            return self.events("AgentConnect", linkedid)

        answer = (await wait_for(connected, timeout=30, what="the answer"))[0]
        ring = self.events("AgentCalled", linkedid)[0]
        assert float(ring["Timestamp"]) <= seen_at + 0.002, "shown before the ring?"
        assert seen_at < float(answer["Timestamp"]), "shown only after the answer"


@asynccontextmanager
async def running_stack(
    asterisk: ChrootAsterisk, settings: Settings, ami: AmiClient, *extra: Feature
) -> AsyncIterator[Stack]:
    features: list[Feature] = [AcdFeature(), CrmFeature(), DesktopFeature(), *extra]
    daemon = Daemon(settings, features=features)
    await daemon.start()
    await daemon.ami.wait_connected(timeout=15)
    seen: list[Message] = []

    def on_event(msg: Message) -> None:
        if msg.event in ("AgentCalled", "AgentConnect", "AgentComplete", "QueueCallerJoin"):
            seen.append(msg)

    ami.add_event_handler(on_event)
    http = aiohttp.ClientSession()
    try:
        admin = await create_token(daemon.db, "admin", "admin")
        yield Stack(daemon, http, admin, ami, seen)
    finally:
        ami.remove_event_handler(on_event)
        await http.close()
        await daemon.stop()
        (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
        await ami.send_action("QueueReload", {"Parameters": "yes"})
        await asyncio.to_thread(asterisk.cli, "channel request hangup all")


@pytest.fixture
async def stack(asterisk: ChrootAsterisk, db_url: str, ami: AmiClient) -> AsyncIterator[Stack]:
    """ACD + CRM + desktop on the real Asterisk (no IVR: calls reach the support queue)."""
    settings = daemon_settings(asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)})
    async with running_stack(asterisk, settings, ami) as s:
        yield s


@pytest.fixture
async def ivr_stack(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The same with the IVR in front (tests/acceptance/test_ivr_harness.py menus)."""
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS)
    base = ivr_settings(asterisk, f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", menus)
    settings = Settings(**base.model_dump(), acd={"asterisk_etc_dir": str(asterisk.etc_dir)})
    async with running_stack(asterisk, settings, ami, IvrFeature()) as s:
        yield s


async def set_sim(ami: AmiClient, ring: float, talk: float) -> None:
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": str(ring)})
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(talk)})


async def desktop(stack: Stack, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await stack.http.ws_connect(stack.base.replace("http", "ws") + "/ws")
    await ws.send_str(json.dumps({"type": "auth", "token": token}))
    hello = json.loads((await ws.receive(timeout=5)).data)
    assert hello["type"] == "hello"
    return ws


async def next_of(
    ws: aiohttp.ClientWebSocketResponse, linkedid: str, timeout: float = 20, **match: Any
) -> dict[str, Any]:
    """The next message about ``linkedid`` matching ``match`` (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data: dict[str, Any] = json.loads(msg.data)
            if data.get("linkedid") == linkedid and all(data.get(k) == v for k, v in match.items()):
                return data


@SQLITE_ONLY
async def test_real_call_pops_the_customer_card_while_ringing(stack: Stack, ami: AmiClient) -> None:
    status, body = await stack.api(
        "POST", "/api/v1/customers", stack.admin,
        {"name": "王芳", "company": "Huaxin", "tier": "vip", "tags": ["key", "north"],
         "notes": "prefers WeChat", "birthday": "1985-03-08", "phones": ["13800138000"],
         "owner": "a101"},
    )  # fmt: skip
    assert status == 201, body
    t101 = await stack.agent("a101", "101")
    t102 = await stack.agent("a102", "102", queue="sales")  # never offered a support call
    ws101 = await desktop(stack, t101)
    ws102 = await desktop(stack, t102)
    await set_sim(ami, ring=4, talk=3)
    linkedid = await originate_call(ami, caller="13800138000", caller_name="Wang", hold_s=30)

    pop = await next_of(ws101, linkedid, type="pop")
    popped_at = time.time()
    assert pop["state"] == "ringing" and pop["kind"] == "queue" and pop["agent"] == "a101"
    assert pop["caller"] == {
        "raw": "13800138000", "e164": "+8613800138000", "name": "Wang",
        "region": {"zh": "北京市", "en": "Beijing"},  # 号码归属地 (cti.phone.region)
    }  # fmt: skip
    card = pop["customer"]
    if card is None:  # the CRM answered later than the ring (a loaded machine): an update
        assert pop["customer_pending"] is True
        card = (await next_of(ws101, linkedid, type="call.update", customer_pending=False))[
            "customer"
        ]
    assert card["name"] == "王芳" and card["company"] == "Huaxin" and card["tier"] == "vip"
    assert card["tags"] == ["key", "north"] and card["owner"] == "a101"
    assert card["birthday"] == "1985-03-08" and card["notes"] == "prefers WeChat"
    assert pop["queue"] == "support" and pop["wait_s"] is not None and pop["wait_s"] >= 0
    assert pop["dnis"] == "4008001234"

    # the phone was still ringing: Asterisk connected the call only later
    await stack.rang_while(linkedid, popped_at)
    answered = await next_of(ws101, linkedid, type="call.update", state="answered")
    assert answered["answered_at"]
    ended = await next_of(ws101, linkedid, type="call.update", state="ended", timeout=30)
    assert ended["reason"] == "answered"
    # a102 (sales) never saw anything of this call
    with pytest.raises(TimeoutError):
        await next_of(ws102, linkedid, timeout=1)
    # a reload of the page gets the card back (with its final state)
    await ws101.close()
    ws101 = await desktop(stack, t101)
    snap = await next_of(ws101, linkedid, type="pop", timeout=5)
    assert snap["resync"] is True and snap["state"] == "ended"
    assert snap["customer"]["name"] == "王芳"
    # and today's calls list it

    async def listed() -> bool:
        status, body = await stack.api("GET", "/api/v1/desktop/calls/today", t101)
        return status == 200 and linkedid in [c["linkedid"] for c in body["calls"]]

    await wait_for(listed, timeout=15, what="the call in today's calls")
    await ws101.close()
    await ws102.close()


@SQLITE_ONLY
async def test_unknown_caller_pops_without_card(stack: Stack, ami: AmiClient) -> None:
    token = await stack.agent("a103", "103")
    ws = await desktop(stack, token)
    await set_sim(ami, ring=3, talk=1)
    linkedid = await originate_call(ami, caller="01065529988", hold_s=20)
    pop = await next_of(ws, linkedid, type="pop")
    popped_at = time.time()
    assert pop["customer"] is None
    assert pop["caller"]["e164"] == "+861065529988"
    await stack.rang_while(linkedid, popped_at)
    await ws.close()


async def test_pop_shows_what_the_caller_did_in_the_ivr(ivr_stack: Stack, ami: AmiClient) -> None:
    stack = ivr_stack
    token = await stack.agent("a104", "104", queue="sales")
    ws = await desktop(stack, token)
    await set_sim(ami, ring=3, talk=1)
    # menu "main", option 3: enter an account number (a short one first, refused), then
    # the call goes to sales
    linkedid = await call(ami, dtmf="3wwww12#wwww123456#", hold_s=30)
    pop = await next_of(ws, linkedid, type="pop", timeout=40)
    popped_at = time.time()
    assert pop["ivr"]["collected"] == {"account": "123456"}
    assert pop["ivr"]["path"][0] == "main"
    assert pop["queue"] == "sales" and pop["state"] == "ringing"
    assert pop["caller"]["e164"] == "+8613700137000"
    await stack.rang_while(linkedid, popped_at)
    await ws.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_card_slow_to_read_is_on_the_pop_because_the_ivr_step_waits_for_it(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient, tmp_path: Path
) -> None:
    """No menus: the IVR's AGI step sends the call straight on to the default queue, and
    the agent's phone rings a few milliseconds later. The card's read is held back 1 s
    (another PostgreSQL session locks the customers' table) while the call enters: the IVR
    step waits for the card (up to ``[ivr] lookup_timeout_s``) before the call goes on, so
    the ring comes after the card and the pop carries it (issue #19: without the wait the
    pop went out "looking up" and the card came in a later update)."""
    import asyncpg

    base = ivr_settings(asterisk, db_url, tmp_path / "no-menus.toml")
    settings = Settings(**base.model_dump(), acd={"asterisk_etc_dir": str(asterisk.etc_dir)})
    async with running_stack(asterisk, settings, ami, IvrFeature()) as stack:
        status, body = await stack.api(
            "POST", "/api/v1/customers", stack.admin,
            {"name": "李娜", "tier": "gold", "phones": ["13900139000"]},
        )  # fmt: skip
        assert status == 201, body
        token = await stack.agent("a104", "104")
        ws = await desktop(stack, token)
        await set_sim(ami, ring=3, talk=1)
        locker = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            held = locker.transaction()
            await held.start()
            await locker.execute("LOCK TABLE crm_customers IN ACCESS EXCLUSIVE MODE")
            linkedid = await originate_call(ami, caller="13900139000", hold_s=20)
            await asyncio.sleep(1.0)
            assert not stack.events("AgentCalled", linkedid), "rang before the card was read"
            await held.rollback()
        finally:
            await locker.close()
        pop = await next_of(ws, linkedid, type="pop")
        assert pop["customer_pending"] is False, pop
        assert pop["customer"]["name"] == "李娜" and pop["customer"]["tier"] == "gold"
        await ws.close()
