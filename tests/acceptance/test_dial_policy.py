"""Issue 13 item 5 against the real Asterisk: toll fraud through the paths that dial.

A SIPp caller presenting +1 900 (premium rate, and abroad for this Chinese site) who asks
the IVR to be called back is told "sorry" and waits in the queue; nothing ever dials it.
A caller pressing the queue's callback key is refused the same way and keeps its place;
the refused request is kept, closed with the reason. Click-to-call refuses premium and
foreign numbers and stops an agent at its daily limit, with the policy's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acd import callback_store as cbs
from acd.feature import AcdFeature
from acd.service import AcdService
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.dialpolicy import StoreDialPolicy
from cti.events import IvrCallbackRequested, IvrCompleted
from cti.store.tokens import create_token
from ivr.feature import IvrFeature
from tests.acceptance.harness import start_sipp, wait_for
from tests.acceptance.test_acd import Events, setup_queue
from tests.acceptance.test_acd_routing import call, routing  # noqa: F401 (fixture)
from tests.acceptance.test_ivr_harness import in_queue, ivr_settings

PREMIUM = "+19005550123"
MENUS = """\
[defaults]
menu = "main"
operator = "support"

[prompts]
beep = { file = "beep" }
later = { file = "auth-thankyou" }

[menus.main]
greeting = "beep"
timeout = 4
retries = 1
fallback = { action = "queue", target = "support" }

[menus.main.options]
"9" = { action = "callback", target = "support", prompt = "later" }
"""
# the contexts that would dial a customer: a callback placeholder, the outbound leg
DIALLING = ("cti-acd-callback-slot", "cti-outbound", "cti-sim-customer")
PCAPS = Path("/usr/share/sip-tester")
SCENARIO = Path(__file__).parent / "sipp" / "uac_press.xml"


pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def stack(
    asterisk: ChrootAsterisk,
    routing: Callable[..., Awaitable[Daemon]],  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> Callable[..., Awaitable[Daemon]]:
    """Daemons with the ACD, and the IVR (``MENUS``) unless ``ivr=False``; ``dial``:
    the ``[dial]`` section. Outbound calls go to the simulated customer."""
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS)
    ivr_section = ivr_settings(asterisk, "sqlite://", menus).model_dump()["ivr"]

    async def factory(*, ivr: bool = True, **dial: Any) -> Daemon:
        if not ivr:
            return await routing(sections={"dial": dial})
        return await routing(
            features=[IvrFeature(), AcdFeature()], sections={"ivr": ivr_section, "dial": dial}
        )

    return factory


def acd(daemon: Daemon) -> AcdService:
    f = next(f for f in daemon.features if isinstance(f, AcdFeature))
    assert f.service is not None
    return f.service


async def sip_caller_presses(
    asterisk: ChrootAsterisk, number: str, digit: str, tmp: Path
) -> asyncio.subprocess.Process:
    """A SIPp caller from ``number`` who presses ``digit`` (RFC 2833) in the IVR and stays
    on the line; the caller hangs up when the process is killed."""
    scenario = tmp / f"press_{digit}.xml"
    scenario.write_text(
        SCENARIO.read_text().replace("@PCAP@", str(PCAPS / f"dtmf_2833_{digit}.pcap"))
    )
    return await start_sipp(asterisk, scenario, "-m", "1", "-set", "caller", number, cwd=tmp)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def press_in_queue(ami: AmiClient, events: Events, linkedid: str, digit: str) -> None:
    """Once the caller waits in a queue, it presses ``digit`` (DTMF received on its
    channel, as from its phone): no race between the key and the queue join."""

    async def joined() -> list[Message]:
        return events.of("QueueCallerJoin", linkedid)

    (join,) = await wait_for(joined, timeout=20, what="the caller waiting in the queue")
    await ami.send_action(
        "PlayDTMF", {"Channel": join["Channel"], "Digit": digit, "Receive": "true"}
    )


def dialled(events: Events) -> list[Message]:
    return [m for m in events.of("Newchannel") if m.get("Context") in DIALLING]


async def test_ivr_callback_to_a_premium_number_is_never_dialled(
    asterisk: ChrootAsterisk, ami: AmiClient, stack: Callable[..., Awaitable[Daemon]],
    tmp_path: Path,
) -> None:  # fmt: skip
    daemon = await stack()
    await setup_queue(acd(daemon), "support", {})  # nobody answers
    completed: list[IvrCompleted] = []
    requested: list[IvrCallbackRequested] = []
    daemon.bus.subscribe(IvrCompleted, completed.append)
    daemon.bus.subscribe(IvrCallbackRequested, requested.append)
    with Events(ami, {"Newchannel", "QueueCallerJoin"}) as events:
        hostile = await sip_caller_presses(asterisk, PREMIUM, "9", tmp_path)
        try:

            async def answered() -> list[IvrCompleted]:
                return [e for e in completed if e.caller_num == PREMIUM]

            (done,) = await wait_for(answered, timeout=20, what="the IVR's answer to the caller")
            assert (done.action, done.target, done.reason) == ("queue", "support", "dial_refused")
            assert done.path == ("main",)
            await wait_for(
                lambda: in_queue(asterisk, "support", done.channel),
                timeout=10, what="the premium caller waiting in the queue",
            )  # fmt: skip
            await asyncio.sleep(2)  # anything that would dial it has had its chance
            assert requested == []
            assert await cbs.with_status(daemon.db, cbs.OPEN) == []
            assert dialled(events) == []
        finally:
            await stop(hostile)

        # the same option works for a caller the policy allows: a callback is queued
        honest = await sip_caller_presses(asterisk, "13912345678", "9", tmp_path)
        try:

            async def queued() -> list[dict[str, Any]]:
                return await cbs.with_status(daemon.db, ("queued",))

            (row,) = await wait_for(queued, timeout=20, what="the honest caller's callback")
            assert row["number"] == "+8613912345678"
            assert [r.number for r in requested] == ["+8613912345678"]
        finally:
            await stop(honest)


async def test_queue_key_callback_to_a_premium_number_is_refused_politely(
    asterisk: ChrootAsterisk, ami: AmiClient, stack: Callable[..., Awaitable[Daemon]]
) -> None:
    daemon = await stack(ivr=False)  # no menus: calls reach the queue at once
    await setup_queue(acd(daemon), "support", {}, callback_key="1")
    with Events(ami, {"Newchannel", "QueueCallerJoin", "QueueCallerLeave"}) as events:
        # through the inbound context (it answers, so a key reaches app_queue): support
        lid = await call(ami, "", caller=PREMIUM, hold_s=30)

        await press_in_queue(ami, events, lid, "1")

        async def refused() -> list[dict[str, Any]]:
            rows = await cbs.list_callbacks(daemon.db, status="all", queues=None, agent="",
                                            limit=10)  # fmt: skip
            return [r for r in rows if r["linkedid"] == lid]

        (row,) = await wait_for(refused, timeout=20, what="the refused request")
        # kept for the supervisors, closed with the reason, never retried
        assert (row["status"], row["outcome"], row["number"]) == (
            "done", "refused_country", PREMIUM
        )  # fmt: skip

        async def back_in_queue() -> bool:
            return len(events.of("QueueCallerJoin", lid)) == 2  # "sorry", and its place again

        await wait_for(back_in_queue, timeout=15, what="the caller back in the queue")
        await asyncio.sleep(2)
        assert dialled(events) == []
        again = await cbs.get(daemon.db, row["id"])
        assert again is not None and again["status"] == "done"


async def test_click_to_call_refuses_toll_fraud_with_the_reason(
    ami: AmiClient, stack: Callable[..., Awaitable[Daemon]]
) -> None:
    daemon = await stack(agent_daily_limit=1, deny=["+86139123456XX"])
    await setup_queue(acd(daemon), "acd_dpc", {"101": 0})
    token = await create_token(daemon.db, "a101", "agent")
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/agents/a101/dial"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def dial(number: str) -> tuple[int, dict[str, Any]]:
            async with http.post(url, json={"number": number}) as resp:
                return resp.status, await resp.json()

        with Events(ami, {"Newchannel"}) as events:
            for number, code, words in (
                (PREMIUM, "dial-country", "calls to US may not be dialled"),
                ("+44 909 879 0000", "dial-country", "calls to GB may not be dialled"),
                ("+86 400 123 4567", "dial-type", "shared-cost numbers may not be dialled"),
                ("139 1234 5678", "dial-denied", "numbers starting +86139123456XX"),
            ):
                status, body = await dial(number)
                assert (status, body["code"]) == (403, code), body
                assert words in body["error"]
            await asyncio.sleep(1)
            assert events.of("Newchannel") == []  # nothing was originated
            status, body = await dial("010 6552 9988")
            assert status == 202, body
            status, body = await dial("010 6552 9989")
            assert (status, body["code"]) == (429, "dial-limit")
            assert body["details"]["reason"] == "a101 reached the daily limit of 1 calls"

        # dialling a callback by hand: over the limit it stays open for someone else;
        # a number the policy refuses is closed with the reason
        f = next(f for f in daemon.features if isinstance(f, AcdFeature))
        assert f.callbacks is not None
        await acd(daemon).set_status("a101", "paused", "break", by="test")  # no slot answered
        ok = await f.callbacks.request(number="13800138000", queue="acd_dpc", source="ivr")
        base = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/callbacks"
        async with http.post(f"{base}/{ok['id']}/dial") as resp:
            assert (resp.status, (await resp.json())["code"]) == (429, "dial-limit")
        again = await cbs.get(daemon.db, ok["id"])
        assert again is not None and again["status"] in cbs.OPEN
        policy = daemon.services.dial_policy
        assert isinstance(policy, StoreDialPolicy)
        policy.config.deny.append("+8613800138000")
        policy.config.agent_limits["a101"] = 0
        async with http.post(f"{base}/{ok['id']}/dial") as resp:
            assert (resp.status, (await resp.json())["code"]) == (403, "dial-denied")
        closed = await cbs.get(daemon.db, ok["id"])
        assert closed is not None and (closed["status"], closed["outcome"]) == (
            "done", "refused_denied"
        )  # fmt: skip


async def test_a_waiting_callback_the_policy_no_longer_allows_is_closed_undialled(
    ami: AmiClient, stack: Callable[..., Awaitable[Daemon]]
) -> None:
    """The number goes on the deny list (or a do-not-call list) while the callback waits
    in the queue: when an agent answers its placeholder, the customer is not dialled, and
    the request is closed with the reason instead of being retried."""
    daemon = await stack(ivr=False)
    svc = acd(daemon)
    await setup_queue(svc, "support", {"101": 0}, callback_key="1")
    await svc.set_status("a101", "paused", "break", by="test")
    with Events(ami, {"Newchannel", "AgentConnect", "QueueCallerJoin"}) as events:
        await press_in_queue(ami, events, await call(ami, "", hold_s=30), "1")

        async def queued() -> list[dict[str, Any]]:
            return await cbs.with_status(daemon.db, ("queued",))

        (row,) = await wait_for(queued, timeout=20, what="the queued callback")
        policy = daemon.services.dial_policy
        assert isinstance(policy, StoreDialPolicy)
        policy.config.deny.append("+8613912345678")  # an admin's change, while it waits
        await svc.set_status("a101", "available", by="test")

        async def closed() -> dict[str, Any] | None:
            got = await cbs.get(daemon.db, row["id"])
            return got if got is not None and got["status"] == "done" else None

        done = await wait_for(closed, timeout=20, what="the callback closed")
        assert done["outcome"] == "refused_denied"
        assert events.of("AgentConnect", row["call_linkedid"])  # the agent took the slot
        await asyncio.sleep(2)
        assert [m for m in events.of("Newchannel") if m.get("Context") in DIALLING[1:]] == []
        assert await cbs.with_status(daemon.db, cbs.OPEN) == []  # not retried
