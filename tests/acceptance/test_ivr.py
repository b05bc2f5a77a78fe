"""The IVR against the real Asterisk: callers press real DTMF (SendDTMF on a Local
channel) and the dialplan acts on what the FastAGI handler decided. Helpers and the
``start_ivr`` fixture: tests/acceptance/test_ivr_harness.py."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_bridge.access import SYSTEM
from crm_bridge.schemas import CustomerIn
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.events import IvrAbandoned, IvrCompleted
from cti.store.models import Call
from tests.acceptance.harness import wait_for
from tests.acceptance.test_ivr_harness import (
    MENUS,
    OFFICE_DNIS,
    IvrFactory,
    call,
    ivr_daemons,
    sim_agent_channel,
    wait_in_queue,
)


@pytest.fixture
async def start_ivr(asterisk: ChrootAsterisk, tmp_path: Path) -> AsyncIterator[IvrFactory]:
    async with ivr_daemons(asterisk, tmp_path) as factory:
        yield factory


async def test_option_to_queue(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid, done = await ivr.route(ami, dtmf="1")
    assert (done.action, done.target, done.reason) == ("queue", "sales", "choice")
    assert done.path == ("main",)
    assert done.dnis == "4008001234" and done.caller_num == "+8613700137000"
    assert ivr.choices(linkedid) == [("main", "queue", "1")]
    await wait_in_queue(asterisk, "sales", done.channel)


async def test_submenu_and_back_with_a_spoken_prompt(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid, done = await ivr.route(ami, dtmf="2wwww*wwww1")
    assert done.path == ("main", "sub", "main")
    assert (done.action, done.target) == ("queue", "sales")
    assert [c[:2] for c in ivr.choices(linkedid)] == [
        ("main", "menu"),
        ("sub", "back"),
        ("main", "queue"),
    ]
    # the text prompt was rendered where Asterisk reads it (8 kHz mono WAV)
    wavs = list((asterisk.base / "lib" / "sounds" / "cti").glob("*.wav"))
    assert wavs and all(w.stat().st_size > 1000 for w in wavs)
    await wait_in_queue(asterisk, "sales", done.channel)


async def test_invalid_digit_then_success(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid, done = await ivr.route(ami, dtmf="7wwww1")
    assert ivr.choices(linkedid) == [("main", "invalid", "7"), ("main", "queue", "1")]
    assert (done.action, done.target, done.reason) == ("queue", "sales", "choice")
    await wait_in_queue(asterisk, "sales", done.channel)


async def test_timeouts_then_fallback(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid, done = await ivr.route(ami)
    assert ivr.choices(linkedid) == [("main", "timeout", ""), ("main", "timeout", "")]
    assert (done.action, done.target, done.reason) == ("queue", "support", "fallback")
    await wait_in_queue(asterisk, "support", done.channel)


async def test_digit_collection_invalid_then_valid(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid, done = await ivr.route(ami, dtmf="3wwww12#wwww123456#")
    assert ivr.choices(linkedid) == [
        ("main", "collect", "3"),
        ("account", "invalid", "12"),
        ("account", "collected", "123456"),
    ]
    assert done.collected == (("account", "123456"),)
    assert (done.action, done.target, done.reason) == ("queue", "sales", "collected")
    await wait_in_queue(asterisk, "sales", done.channel)
    got = await ami.send_action("Getvar", {"Channel": done.channel, "Variable": "CTI_IVR_ACCOUNT"})
    assert got.get("Value") == "123456"


async def test_after_hours_forwarding(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    # Sunday 03:00 in Shanghai: closed -> forward to the on-duty mobile
    ivr = await start_ivr(now_override="2026-11-22T03:00:00+08:00")
    _, done = await ivr.route(ami, dnis=OFFICE_DNIS)
    assert (done.action, done.reason) == ("dial", "closed")
    assert done.target == "Local/8613900000001@cti-sim-agents/n"
    assert done.path == ()
    await wait_for(
        lambda: sim_agent_channel(asterisk, "8613900000001"), timeout=10,
        what="the forwarded leg",
    )  # fmt: skip
    # same number during business hours: the menu runs (clock injected on the feature)
    ivr.feature.now_override = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
    _, done = await ivr.route(ami, dnis=OFFICE_DNIS, dtmf="1")
    assert (done.action, done.target, done.reason) == ("queue", "sales", "choice")


async def test_holiday_message_and_hang_up(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    # National Day, a Thursday, 10:00: would be open but it is a public holiday
    ivr = await start_ivr(now_override="2026-10-01T10:00:00+08:00")
    linkedid, done = await ivr.route(ami, dnis=OFFICE_DNIS, hold_s=30)
    assert (done.action, done.reason) == ("hangup", "holiday")

    async def gone() -> bool:
        out = await asyncio.to_thread(asterisk.cli, "core show channels concise")
        return linkedid not in out and "cti-inbound" not in out

    await wait_for(gone, timeout=10, what="the call to be hung up")


async def test_known_caller_routed_by_tier(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    # the CRM feature's real directory over the store recognises the caller
    ivr = await start_ivr(crm=True)
    crm = ivr.daemon.features[0]
    store = crm.services.store  # type: ignore[attr-defined]
    customer = await store.create_customer(
        CustomerIn(name="张三", tier="vip", owner="agent101", phones=["+86 138 0013 8000"]),
        SYSTEM,
    )
    _, done = await ivr.route(ami, caller="13800138000")
    assert (done.action, done.target, done.reason) == ("queue", "sales", "tier")
    assert done.customer_id == customer["id"] and done.owner_agent == "agent101"
    await wait_in_queue(asterisk, "sales", done.channel)
    for var, value in (("CTI_OWNER_AGENT", "agent101"), ("CTI_CUSTOMER_TIER", "vip")):
        got = await ami.send_action("Getvar", {"Channel": done.channel, "Variable": var})
        assert got.get("Value") == value
    # an unknown caller gets the menu
    _, done = await ivr.route(ami, caller="13900139000", dtmf="0")
    assert (done.action, done.target, done.customer_id) == ("queue", "support", None)


async def test_hang_up_in_the_menu_is_an_ivr_abandon(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid = await call(ami, dtmf="2", hold_s=2.5)

    async def abandoned() -> list[IvrAbandoned]:
        return ivr.of(IvrAbandoned, linkedid)

    (event,) = await wait_for(abandoned, timeout=10, what="IvrAbandoned")
    assert event.path == ("main", "sub") and event.menu == "sub"
    assert not ivr.of(IvrCompleted, linkedid)
    # the call's row in the store says so, and keeps the call's own facts

    async def row() -> list[Call]:
        async with ivr.daemon.db.session() as session:
            found = await session.scalars(select(Call).where(Call.linkedid == linkedid))
            return [c for c in found if c.source == "ami"]

    (stored,) = await wait_for(row, timeout=15, what="the call's row")
    assert stored.disposition == "ivr_abandon" and stored.queue == ""
    assert stored.caller_num_e164 == "+8613700137000" and stored.dnis == "4008001234"


async def test_daemon_down_calls_still_reach_the_default_queue(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    linkedid = await call(ami)

    async def queued() -> str:
        out = await asyncio.to_thread(asterisk.cli, "queue show support")
        return linkedid if "cti-inbound" in out else ""

    await wait_for(queued, timeout=10, what="the call in the default queue")


async def test_reload_refuses_an_invalid_file_and_keeps_serving(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory, tmp_path: Path
) -> None:
    import aiohttp

    from cti.store.tokens import create_token
    from ivr.menus import MenuError

    ivr = await start_ivr()
    menus = Path(ivr.feature.config.menus)
    good_line = '"1" = { action = "queue", target = "sales" }'
    line_no = MENUS.splitlines().index(good_line) + 1
    bad = MENUS.replace(good_line, '"1" = { action = "menu", target = "nowhere" }')
    await asyncio.to_thread(menus.write_text, bad)
    with pytest.raises(MenuError, match="unknown menu 'nowhere'"):
        await ivr.feature.reload()
    token = await create_token(ivr.daemon.db, "admin1", "admin")
    url = f"http://127.0.0.1:{ivr.daemon.http_port}/api/v1/ivr/reload"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 422
            body = await r.json()
            assert body["problems"] == [
                f"{menus}:{line_no}: menus.main.options.1.target: unknown menu 'nowhere'"
            ]
        # the old menus still route digit 1 to sales
        _, done = await ivr.route(ami, dtmf="1")
        assert done.target == "sales"
        # a valid edit is taken without restart
        good = MENUS.replace(good_line, '"1" = { action = "queue", target = "support" }')
        await asyncio.to_thread(menus.write_text, good)
        async with http.post(url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
        agent = await create_token(ivr.daemon.db, "agent1", "agent")
        async with http.post(url, headers={"Authorization": f"Bearer {agent}"}) as r:
            assert r.status == 403
    _, done = await ivr.route(ami, dtmf="1")
    assert done.target == "support"
    # SIGHUP reloads too (an invalid file is refused the same way)
    await asyncio.to_thread(menus.write_text, bad)
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.5)
    assert ivr.feature.loaded is not None
    assert ivr.feature.loaded.data.menus["main"].options["1"].target == "support"
    await asyncio.to_thread(menus.write_text, MENUS)

    async def reloaded() -> bool:
        loaded = ivr.feature.loaded
        return loaded is not None and loaded.data.menus["main"].options["1"].target == "sales"

    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(reloaded, timeout=5, what="the SIGHUP reload")
