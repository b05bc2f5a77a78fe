"""The IVR against the real Asterisk: callers press real DTMF (SendDTMF on a Local
channel) and the dialplan acts on what the FastAGI handler decided."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.daemon import Daemon
from cti.events import DomainEvent, IvrAbandoned, IvrChoiceMade, IvrCompleted
from cti.services import CustomerCard
from ivr.feature import IvrFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import wait_for

MENUS = """\
[defaults]
menu = "main"
operator = "support"

[prompts]
beep = { file = "beep" }
sub = { text = "Support menu.", voice = "en" }
zh = { text = "您好", voice = "cmn" }

[menus.main]
greeting = "beep"
timeout = 2
retries = 1
invalid = "beep"
fallback = { action = "queue", target = "support" }

[menus.main.options]
"1" = { action = "queue", target = "sales" }
"2" = { action = "menu", target = "sub" }
"3" = { action = "collect", target = "account" }
"0" = { action = "operator" }

[menus.sub]
greeting = "sub"
timeout = 3
options."1" = { action = "queue", target = "support" }
options."*" = { action = "back" }

[collect.account]
prompt = "beep"
min_length = 4
max_length = 8
timeout = 3
retries = 2
invalid = "beep"
then = { action = "queue", target = "sales" }

[schedules.office]
timezone = "Asia/Shanghai"
holidays = "CN"
mon = ["09:00-18:00"]
tue = ["09:00-18:00"]
wed = ["09:00-18:00"]
thu = ["09:00-18:00"]
fri = ["09:00-18:00"]
closed = { action = "external", target = "+8613900000001", prompt = "zh" }
holiday = { action = "hangup", prompt = "beep" }

[numbers."4008009999"]
schedule = "office"

[recognition]
owner_routing = true
tiers.vip = { action = "queue", target = "sales" }
"""

OFFICE_DNIS = "4008009999"


class DictDirectory:
    """A CustomerDirectory backed by a dict (the lead swaps in crm_bridge's when it lands)."""

    def __init__(self, cards: dict[str, CustomerCard]) -> None:
        self.cards = cards
        self.asked: list[str] = []

    async def lookup_number(self, e164: str) -> CustomerCard | None:
        self.asked.append(e164)
        return self.cards.get(e164)

    async def recent_interactions(
        self, customer_id: int, limit: int = 5
    ) -> list[dict[str, object]]:
        return []


class Ivr:
    """A running daemon with the IVR feature and what it published."""

    def __init__(self, daemon: Daemon, feature: IvrFeature) -> None:
        self.daemon = daemon
        self.feature = feature
        self.events: list[DomainEvent] = []
        for cls in (IvrCompleted, IvrAbandoned, IvrChoiceMade):
            daemon.bus.subscribe(cls, self.events.append)

    def of(self, cls: type[Any], linkedid: str) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls) and e.linkedid == linkedid]

    async def completed(self, linkedid: str, timeout: float = 20) -> IvrCompleted:
        async def done() -> list[IvrCompleted]:
            return self.of(IvrCompleted, linkedid)

        (event,) = await wait_for(done, timeout=timeout, what=f"IvrCompleted of {linkedid}")
        return event

    def choices(self, linkedid: str) -> list[tuple[str, str, str]]:
        return [(e.menu, e.choice, e.digits) for e in self.of(IvrChoiceMade, linkedid)]


IvrFactory = Callable[..., Awaitable[Ivr]]


def ivr_settings(asterisk: ChrootAsterisk, db_url: str, menus: Path, **ivr: Any) -> Settings:
    data = daemon_settings(asterisk, db_url).model_dump()
    data["ivr"] = {
        "menus": str(menus),
        "prompt_dir": str(asterisk.base / "lib" / "sounds" / "cti"),
        "prompt_dir_asterisk": f"{asterisk.inner}/lib/sounds/cti",
        "forward_dial": "Local/{digits}@cti-sim-agents/n",
        **ivr,
    }
    return Settings(**data)


@pytest.fixture
async def start_ivr(asterisk: ChrootAsterisk, tmp_path: Path) -> AsyncIterator[IvrFactory]:
    """The IVR needs no particular database: one SQLite file (the store's own tests cover
    PostgreSQL)."""
    started: list[Daemon] = []
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"

    async def factory(menus: str = MENUS, **ivr: Any) -> Ivr:
        path = tmp_path / "menus.toml"
        path.write_text(menus)
        feature = IvrFeature()
        daemon = Daemon(ivr_settings(asterisk, db_url, path, **ivr), features=[feature])
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        assert daemon.agi.port == asterisk.spec.agi_port
        return Ivr(daemon, feature)

    yield factory
    for daemon in started:
        await daemon.stop()


async def call(
    ami: AmiClient,
    *,
    dtmf: str = "",
    hold_s: float = 20,
    caller: str = "13700137000",
    dnis: str = "4008001234",
    dtmf_delay: float = 1.5,
) -> str:
    linkedid = f"t-{secrets.token_hex(6)}"
    variables = [f"CTI_SIM_HOLD={hold_s}", f"CTI_SIM_DTMF_DELAY={dtmf_delay}"]
    if dtmf:
        variables.append(f"CTI_SIM_DTMF={dtmf}")
    await ami.send_action(
        "Originate",
        {
            "Channel": f"Local/{dnis}@cti-inbound", "Context": "cti-sim-caller", "Exten": "s",
            "Priority": "1", "CallerID": caller, "Variable": variables, "Async": "true",
            "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
        },
    )  # fmt: skip
    return linkedid


async def in_queue(asterisk: ChrootAsterisk, queue: str, channel: str) -> bool:
    out = await asyncio.to_thread(asterisk.cli, f"queue show {queue}")
    return channel in out


async def wait_in_queue(asterisk: ChrootAsterisk, queue: str, channel: str) -> None:
    await wait_for(
        lambda: in_queue(asterisk, queue, channel), timeout=10, what=f"{channel} in {queue}"
    )


async def test_option_to_queue(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid = await call(ami, dtmf="1")
    done = await ivr.completed(linkedid)
    assert (done.action, done.target, done.reason) == ("queue", "sales", "choice")
    assert done.path == ("main",)
    assert done.dnis == "4008001234" and done.caller_num == "+8613700137000"
    assert ivr.choices(linkedid) == [("main", "queue", "1")]
    await wait_in_queue(asterisk, "sales", done.channel)


async def test_submenu_and_back_with_a_spoken_prompt(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid = await call(ami, dtmf="2wwww*wwww1")
    done = await ivr.completed(linkedid)
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
    linkedid = await call(ami, dtmf="7wwww1")
    done = await ivr.completed(linkedid)
    assert ivr.choices(linkedid) == [("main", "invalid", "7"), ("main", "queue", "1")]
    assert (done.action, done.target, done.reason) == ("queue", "sales", "choice")
    await wait_in_queue(asterisk, "sales", done.channel)


async def test_timeouts_then_fallback(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid = await call(ami)
    done = await ivr.completed(linkedid, timeout=20)
    assert ivr.choices(linkedid) == [("main", "timeout", ""), ("main", "timeout", "")]
    assert (done.action, done.target, done.reason) == ("queue", "support", "fallback")
    await wait_in_queue(asterisk, "support", done.channel)


async def test_digit_collection_invalid_then_valid(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    linkedid = await call(ami, dtmf="3wwww12#wwww123456#")
    done = await ivr.completed(linkedid)
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


async def sim_agent_channel(asterisk: ChrootAsterisk, number: str) -> bool:
    out = await asyncio.to_thread(asterisk.cli, "core show channels concise")
    return f"Local/{number}@cti-sim-agents" in out


async def test_after_hours_forwarding(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    # Sunday 03:00 in Shanghai: closed -> forward to the on-duty mobile
    ivr = await start_ivr(now_override="2026-11-22T03:00:00+08:00")
    linkedid = await call(ami, dnis=OFFICE_DNIS)
    done = await ivr.completed(linkedid)
    assert (done.action, done.reason) == ("dial", "closed")
    assert done.target == "Local/8613900000001@cti-sim-agents/n"
    assert done.path == ()
    await wait_for(
        lambda: sim_agent_channel(asterisk, "8613900000001"), timeout=10,
        what="the forwarded leg",
    )  # fmt: skip
    # same number during business hours: the menu runs (clock injected on the feature)
    ivr.feature.now_override = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
    linkedid = await call(ami, dnis=OFFICE_DNIS, dtmf="1")
    done = await ivr.completed(linkedid)
    assert (done.action, done.target, done.reason) == ("queue", "sales", "choice")


async def test_holiday_message_and_hang_up(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    # National Day, a Thursday, 10:00: would be open but it is a public holiday
    ivr = await start_ivr(now_override="2026-10-01T10:00:00+08:00")
    linkedid = await call(ami, dnis=OFFICE_DNIS, hold_s=30)
    done = await ivr.completed(linkedid)
    assert (done.action, done.reason) == ("hangup", "holiday")

    async def gone() -> bool:
        out = await asyncio.to_thread(asterisk.cli, "core show channels concise")
        return linkedid not in out and "cti-inbound" not in out

    await wait_for(gone, timeout=10, what="the call to be hung up")


async def test_known_caller_routed_by_tier(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory
) -> None:
    ivr = await start_ivr()
    directory = DictDirectory(
        {"+8613800138000": CustomerCard(7, "张三", tier="vip", owner_agent="agent101")}
    )
    ivr.daemon.services.customer_directory = directory
    linkedid = await call(ami, caller="13800138000")
    done = await ivr.completed(linkedid)
    assert (done.action, done.target, done.reason) == ("queue", "sales", "tier")
    assert done.customer_id == 7 and done.owner_agent == "agent101"
    assert directory.asked == ["+8613800138000"]
    await wait_in_queue(asterisk, "sales", done.channel)
    for var, value in (("CTI_OWNER_AGENT", "agent101"), ("CTI_CUSTOMER_TIER", "vip")):
        got = await ami.send_action("Getvar", {"Channel": done.channel, "Variable": var})
        assert got.get("Value") == value
    # an unknown caller gets the menu
    linkedid = await call(ami, caller="13900139000", dtmf="0")
    done = await ivr.completed(linkedid)
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
        linkedid = await call(ami, dtmf="1")
        done = await ivr.completed(linkedid)
        assert done.target == "sales"
        # a valid edit is taken without restart
        good = MENUS.replace(good_line, '"1" = { action = "queue", target = "support" }')
        await asyncio.to_thread(menus.write_text, good)
        async with http.post(url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
        agent = await create_token(ivr.daemon.db, "agent1", "agent")
        async with http.post(url, headers={"Authorization": f"Bearer {agent}"}) as r:
            assert r.status == 403
    linkedid = await call(ami, dtmf="1")
    done = await ivr.completed(linkedid)
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
