"""Shared IVR acceptance helpers (no tests here): the menus the tests use, a daemon with the
IVR feature (and, when asked, the CRM feature: its real StoreDirectory recognises callers)
on the session's real Asterisk, and simulated callers pressing real DTMF."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from crm_bridge.feature import CrmFeature
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.daemon import Daemon
from cti.events import DomainEvent, IvrAbandoned, IvrChoiceMade, IvrCompleted
from cti.features import Feature
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

    async def route(self, ami: AmiClient, **kw: Any) -> tuple[str, IvrCompleted]:
        """Place a simulated call (:func:`call` arguments) and wait for the IVR's decision."""
        linkedid = await call(ami, **kw)
        return linkedid, await self.completed(linkedid)

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


@asynccontextmanager
async def ivr_daemons(asterisk: ChrootAsterisk, tmp_path: Path) -> AsyncIterator[IvrFactory]:
    """What a test module's ``start_ivr`` fixture yields: a factory starting a daemon with
    the IVR (``crm=True``: and the CRM feature) on one SQLite file (the store's own tests
    cover PostgreSQL); every daemon it started is stopped on exit."""
    started: list[Daemon] = []
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"

    async def factory(menus: str = MENUS, *, crm: bool = False, **ivr: Any) -> Ivr:
        path = tmp_path / "menus.toml"
        path.write_text(menus)
        feature = IvrFeature()
        features: list[Feature] = [CrmFeature(), feature] if crm else [feature]
        daemon = Daemon(ivr_settings(asterisk, db_url, path, **ivr), features=features)
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        assert daemon.agi.port == asterisk.spec.agi_port
        return Ivr(daemon, feature)

    try:
        yield factory
    finally:
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


async def sim_agent_channel(asterisk: ChrootAsterisk, number: str) -> bool:
    out = await asyncio.to_thread(asterisk.cli, "core show channels concise")
    return f"Local/{number}@cti-sim-agents" in out
