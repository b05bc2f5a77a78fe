"""Demo traffic: simulated callers through the shipped dialplan, so a fresh install has
calls to show. Callers are Local channels into ``cti-inbound`` (the IVR, then a queue)
whose other half is ``cti-sim-caller,listen``: a caller like a real one, who listens to
the menu, presses a key (again when the menu is read again: a key pressed during a
greeting is lost) until the call is queued, then waits for an agent up to their patience
and, once answered, stays until the agent hangs up. The agents are the ACD's (``make up``
creates agent101/agent102 with ``local:`` devices, i.e. ``Local/<ext>@cti-sim-agents/n``,
and logs them in). Calls arrive a little slower than two agents answer them, so callers
wait at times; most are answered, and the few impatient ones abandon in the queue.
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


# the agents' simulated phones: ring, then talk this long (the agent hangs up)
AGENT_RING_S = 2
AGENT_TALK_S = 10
# a caller's patience in the queue: most wait long enough to be answered, a few do not
PATIENT_S = (60, 180)
IMPATIENT_S = (4, 15)
IMPATIENT_SHARE = 0.15
# seconds of the menu a caller listens to before pressing (the example English menu says
# "for sales press 1, for support press 2" within them)
LISTEN_S = (4.0, 6.0)


class DemoTraffic:
    """Places a simulated inbound call every ``interval_s`` on average (0.5-1.5 x)."""

    def __init__(self, ami: AmiClient, *, interval_s: float = 8.0, seed: int | None = None) -> None:
        self.ami = ami
        self.interval_s = interval_s
        self.rng = random.Random(seed)

    async def setup(self) -> None:
        await self.ami.send_action(
            "Setvar", {"Variable": "CTI_SIM_RING", "Value": str(AGENT_RING_S)}
        )
        await self.ami.send_action(
            "Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(AGENT_TALK_S)}
        )
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
        impatient = self.rng.random() < IMPATIENT_SHARE
        patience = self.rng.randint(*(IMPATIENT_S if impatient else PATIENT_S))
        listen = round(self.rng.uniform(*LISTEN_S), 1)
        await self.ami.send_action(
            "Originate",
            {
                "Channel": f"Local/{DEMO_DNIS}@cti-inbound",
                "Context": "cti-sim-caller", "Exten": "listen", "Priority": "1",
                "CallerID": f'"{name}" <{number}>' if name else number,
                "Variable": [
                    f"CTI_SIM_PATIENCE={patience}", f"CTI_SIM_DTMF={self.rng.choice('1222')}",
                    f"CTI_SIM_DTMF_DELAY={listen}",
                ],
                "Async": "true",
            },
        )  # fmt: skip
        log.info("demo call placed", extra={"caller": number, "patience_s": patience})

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
