"""Demo traffic: simulated callers through the shipped dialplan, so a fresh install has
calls to show. Callers are Local channels into ``cti-inbound`` (the IVR, then a queue)
whose other half waits in ``cti-sim-caller`` and presses a menu key; the agents are the
ACD's (``make up`` creates agent101/agent102 with ``local:`` devices, i.e.
``Local/<ext>@cti-sim-agents/n``, and logs them in). Some callers hang up before an agent
is free, so abandons show up too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected

log = logging.getLogger(__name__)

# the example menus' always-open English line: 1 sales, 2 support, 3 callback
DEMO_DNIS = "4008005678"
# (name, number): recurring callers, so the CRM and screen pops have someone to know
DEMO_CALLERS = (
    ("张伟", "13800138000"),
    ("Alice Martin", "+33612345678"),
    ("李娜", "13912345678"),
    ("Bob Smith", "+14155550123"),
)


class DemoTraffic:
    def __init__(self, ami: AmiClient, *, interval_s: float = 6.0, seed: int | None = None) -> None:
        self.ami = ami
        self.interval_s = interval_s
        self.rng = random.Random(seed)

    async def setup(self) -> None:
        await self.ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": "2"})
        await self.ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "12"})
        # click-to-call and callbacks from the desktop reach a simulated customer
        for var, value in (
            ("CTI_SIM_OUTBOUND", "1"),
            ("CTI_SIM_CUSTOMER_RING", "3"),
            ("CTI_SIM_CUSTOMER_TALK", "20"),
        ):
            await self.ami.send_action("Setvar", {"Variable": var, "Value": value})

    async def place_call(self) -> None:
        if self.rng.random() < 0.6:
            name, number = self.rng.choice(DEMO_CALLERS)
        else:
            name, number = "", "1" + "".join(self.rng.choice("0123456789") for _ in range(10))
        hold = self.rng.choice((4, 10, 25, 35))
        await self.ami.send_action(
            "Originate",
            {
                "Channel": f"Local/{DEMO_DNIS}@cti-inbound",
                "Context": "cti-sim-caller", "Exten": "s", "Priority": "1",
                "CallerID": f'"{name}" <{number}>' if name else number,
                "Variable": [
                    f"CTI_SIM_HOLD={hold}", f"CTI_SIM_DTMF={self.rng.choice('1222')}",
                    "CTI_SIM_DTMF_DELAY=3",
                ],
                "Async": "true",
            },
        )  # fmt: skip
        log.info("demo call placed", extra={"caller": number, "hold_s": hold})

    async def run(self) -> None:
        await self.ami.wait_connected(timeout=60)
        await self.setup()
        while True:
            try:
                await self.place_call()
            except (NotConnected, AmiActionError, TimeoutError) as exc:
                log.warning("demo call not placed: %s", exc)
                with contextlib.suppress(NotConnected, AmiActionError, TimeoutError):
                    await self.ami.wait_connected(timeout=60)
                    await self.setup()
            await asyncio.sleep(self.interval_s * self.rng.uniform(0.5, 1.5))
