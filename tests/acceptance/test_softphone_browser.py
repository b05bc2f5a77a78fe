"""The browser phone in the agent desktop, in real Chromium against the real Asterisk.

The agent has a provisioned WebRTC phone (phones/); signing in to the desktop registers
it over Asterisk's WebSocket (SIP.js from npm). A SIPp caller (talking: Debian's G.711
sample) reaches the queue, the queue rings the browser phone, the page shows it ringing
with the pop, the agent answers in the page, and audio flows both ways:

- browser -> caller: Asterisk's copy of what it reads from the browser's leg (MixMonitor
  ``r()``) carries the browser's fake microphone, a 1000 Hz tone (Goertzel);
- caller -> browser: Asterisk writes the caller's audio to the browser's leg (MixMonitor
  ``t()``, not silence) and the page's own WebRTC statistics count audio energy received.

No caller lost to a browser: a page reloaded mid-call registers again and the daemon rings
the same caller back on it by itself, the page's own request cut off (one call row, one
recording); a browser that does not come back leaves its caller hearing music, then back
at the front of the queue after the grace (and its agent's late request is a 409).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route
from sqlalchemy import select

from acd import store as acd_store
from acd.queues_conf import QueueParams
from callcontrol.feature import CallControlFeature
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.events import CallCallerKept, RecordingStopped
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from phones.feature import PhonesFeature
from recordings.feature import RecordingsFeature
from tests.acceptance.conftest import FAKE_MIC_HZ, daemon_settings
from tests.acceptance.harness import sign_in_page, start_sipp, wait_for
from tests.acceptance.test_pop import Stack, running_stack

SCENARIO = Path(__file__).parent / "sipp" / "uac_talk.xml"
GRACE_S = 8  # how long a caller waits for its agent's browser phone (default 30)


@pytest.fixture
async def phone_stack(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> AsyncIterator[tuple[Stack, str]]:
    """ACD + CRM + desktop + phones + call control on SQLite; callers reach a queue of
    this test only."""
    queue = f"sp{secrets.token_hex(4)}"
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    base = daemon_settings(asterisk, url).model_dump()
    base["acd"] = {"asterisk_etc_dir": str(asterisk.etc_dir)}
    base["callcontrol"] = {"reconnect_grace_s": GRACE_S}
    base["recordings"] = {
        "root": str(asterisk.monitor_dir), "reconcile_interval_s": 0, "grace_s": 0,
    }  # fmt: skip
    await ami.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": queue})
    features = (PhonesFeature(), CallControlFeature(), RecordingsFeature())
    try:
        async with running_stack(asterisk, Settings(**base), ami, *features) as stack:
            await acd_store.put_queue(stack.daemon.db, QueueParams(queue, timeout_s=30))
            acd = stack.daemon.services.extra["acd"]
            assert await acd.apply_queues()  # type: ignore[attr-defined]
            yield stack, queue
    finally:
        await ami.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": "support"})


async def agent_with_browser_phone(stack: Stack, name: str, queue: str) -> tuple[str, str]:
    """An ACD agent with a provisioned browser phone and a person signing in as it;
    returns (login, the phone's endpoint name)."""
    status, body = await stack.api(
        "PUT", f"/api/v1/acd/agents/{name}", stack.admin,
        {"devices": [{"kind": "local", "address": "599"}], "skills": {queue: 0}},
    )  # fmt: skip
    assert status == 200, body
    status, body = await stack.api(
        "POST", f"/api/v1/agents/{name}/phones", stack.admin, {"kind": "webrtc"}
    )
    assert status == 201, body
    return await stack.person(name, "agent", agent=name), body["phone"]["name"]


def tone_share(path: Path, hz: float) -> tuple[float, float]:
    """(share of the signal's power at ``hz``, RMS) of a 16-bit mono WAV (Goertzel over
    20 ms blocks, summed)."""
    with wave.open(str(path)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    block = rate // 50
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    at_hz = total = 0.0
    for start in range(0, len(samples) - block, block):
        s1 = s2 = 0.0
        chunk = samples[start : start + block]
        for x in chunk:
            s1, s2 = x + coeff * s1 - s2, s1
        at_hz += (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2 / block
        total += sum(x * x for x in chunk)
    rms = math.sqrt(total / max(1, len(samples)))
    return (at_hz / total if total else 0.0), rms


async def test_the_browser_phone_registers_rings_answers_and_carries_audio_both_ways(
    phone_stack: tuple[Stack, str], ami: AmiClient, asterisk: ChrootAsterisk,
    browser: Browser, tmp_path: Path,
) -> None:  # fmt: skip
    stack, queue = phone_stack
    login, endpoint = await agent_with_browser_phone(stack, "s501", queue)
    seen: list[Message] = []
    ami.add_event_handler(seen.append)
    context = await browser.new_context(locale="en-GB")
    page: Page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    proc = None
    try:
        await page.goto(stack.base + "/desktop/")
        await sign_in_page(page, login)
        await page.wait_for_selector("#conn.open")
        # signing in registered the browser phone
        await page.wait_for_selector('#phone-reg[data-state="registered"]', timeout=20_000)
        await page.click("#btn-available")
        await page.wait_for_selector('#status-value[data-status="available"]')

        async def member() -> list[str]:
            _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
            return [i.get("StateInterface", "") for i in items if i.get("Event") == "QueueMember"]

        assert await wait_for(member, timeout=10, what="the member") == [f"PJSIP/{endpoint}"]

        proc = await start_sipp(asterisk, SCENARIO, "-m", "1", "-set", "caller", "13800138031",
                                cwd=tmp_path, timeout_s=90)  # fmt: skip

        def of(name: str, **match: str) -> list[Message]:
            return [m for m in seen if m.event == name
                    and all(m.get(k) == v for k, v in match.items())]  # fmt: skip

        async def joined() -> list[Message]:
            return of("QueueCallerJoin", Queue=queue)

        linkedid = (await wait_for(joined, timeout=30, what="the caller in the queue"))[0][
            "Linkedid"
        ]
        card = f'article.card[data-linkedid="{linkedid}"]'
        # the pop and the ringing arrive together
        await page.wait_for_selector(card + '[data-state="ringing"]', timeout=20_000)
        await page.wait_for_selector('#phone-call[data-state="ringing"]', timeout=20_000)
        await page.click("#phone-answer")
        await page.wait_for_selector('#phone-call[data-state="talking"]', timeout=15_000)
        await page.wait_for_selector(card + '[data-state="answered"]', timeout=15_000)

        async def connected() -> list[Message]:
            return of("AgentConnect", Queue=queue, Linkedid=linkedid)

        agent_channel = (await wait_for(connected, timeout=15, what="AgentConnect"))[0][
            "DestChannel"
        ]
        assert agent_channel.startswith(f"PJSIP/{endpoint}-")
        tag = secrets.token_hex(4)
        resp = await ami.send_action("MixMonitor", {
            "Channel": agent_channel, "File": f"sp-{tag}-mix.wav",
            "Options": f"r(sp-{tag}-from-browser.wav)t(sp-{tag}-to-browser.wav)",
        })  # fmt: skip
        assert resp.get("Response") == "Success", dict(resp)
        await asyncio.sleep(8)

        stats: Any = await page.evaluate("window.CTIPhone.stats()")
        assert stats and stats["inbound"] and stats["outbound"], stats
        assert stats["outbound"]["packets"] > 100, stats  # the microphone is sent
        assert stats["inbound"]["packets"] > 100, stats
        assert stats["inbound"]["energy"] > 0.001, stats  # and what comes back is not silence
        await ami.send_action("StopMixMonitor", {"Channel": agent_channel})
        await asyncio.sleep(1)

        from_browser = asterisk.monitor_dir / f"sp-{tag}-from-browser.wav"
        to_browser = asterisk.monitor_dir / f"sp-{tag}-to-browser.wav"
        share, rms = tone_share(from_browser, FAKE_MIC_HZ)
        print(f"from the browser: {share:.2f} of the power at {FAKE_MIC_HZ} Hz, RMS {rms:.0f}")
        assert share > 0.5 and rms > 300, (share, rms)  # the browser's 1000 Hz tone
        share, rms = tone_share(to_browser, FAKE_MIC_HZ)
        print(f"to the browser: {share:.2f} at {FAKE_MIC_HZ} Hz, RMS {rms:.0f}; page: {stats}")
        assert rms > 100 and share < 0.5, (share, rms)  # the caller talking, not the tone
        assert not errors, errors
    finally:
        ami.remove_event_handler(seen.append)
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await context.close()


class Desk:
    """An agent's desktop page with its browser phone registered and the agent available,
    and the AMI events the test saw."""

    def __init__(self, stack: Stack, queue: str, ami: AmiClient, page: Page) -> None:
        self.stack, self.queue, self.ami, self.page = stack, queue, ami, page
        self.seen: list[Message] = []
        self.errors: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        ami.add_event_handler(self.seen.append)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def of(self, name: str, **match: str) -> list[Message]:
        return [m for m in self.seen if m.event == name
                and all(m.get(k) == v for k, v in match.items())]  # fmt: skip

    async def one(self, name: str, timeout: float = 30, **match: str) -> Message:
        async def got() -> list[Message]:
            return self.of(name, **match)

        return (await wait_for(got, timeout=timeout, what=f"{name} {match}"))[0]

    async def answered_call(self, tmp_path: Path, asterisk: ChrootAsterisk) -> tuple[str, str]:
        """A SIPp caller of the queue, answered in the page: (linkedid, caller channel)."""
        self.proc = await start_sipp(asterisk, SCENARIO, "-m", "1", "-set", "caller",
                                     "13800138032", cwd=tmp_path, timeout_s=120)  # fmt: skip
        join = await self.one("QueueCallerJoin", Queue=self.queue)
        linkedid = join["Linkedid"]
        await self.page.wait_for_selector('#phone-call[data-state="ringing"]', timeout=20_000)
        await self.page.click("#phone-answer")
        await self.page.wait_for_selector('#phone-call[data-state="talking"]', timeout=15_000)
        await self.one("AgentConnect", Queue=self.queue, Linkedid=linkedid)
        return linkedid, join["Channel"]


@pytest.fixture
async def desk(
    phone_stack: tuple[Stack, str], ami: AmiClient, browser: Browser
) -> AsyncIterator[Desk]:
    stack, queue = phone_stack
    login, _ = await agent_with_browser_phone(stack, "s511", queue)
    context = await browser.new_context(locale="en-GB")
    d = Desk(stack, queue, ami, await context.new_page())
    await d.page.goto(stack.base + "/desktop/")
    await sign_in_page(d.page, login)
    await d.page.wait_for_selector('#phone-reg[data-state="registered"]', timeout=20_000)
    await d.page.click("#btn-available")
    await d.page.wait_for_selector('#status-value[data-status="available"]')
    try:
        yield d
    finally:
        ami.remove_event_handler(d.seen.append)
        if d.proc is not None and d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()
        await context.close()


async def test_a_reload_mid_call_gives_the_same_caller_back_to_the_same_agent(
    desk: Desk, ami: AmiClient, asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    stopped: list[RecordingStopped] = []
    kept: list[CallCallerKept] = []
    desk.stack.daemon.bus.subscribe(RecordingStopped, stopped.append)
    desk.stack.daemon.bus.subscribe(CallCallerKept, kept.append)
    linkedid, caller = await desk.answered_call(tmp_path, asterisk)
    # call control protects the caller (a fraction of a second after the answer)
    await wait_for(lambda: asyncio.sleep(0, [k for k in kept if k.linkedid == linkedid]),
                   timeout=10, what="the caller kept")  # fmt: skip
    card = f'article.card[data-linkedid="{linkedid}"]'
    first = (await desk.one("AgentConnect", Linkedid=linkedid))["DestChannel"]

    # the daemon itself reconnects when the phone registers again: the reloaded page's own
    # request (its fallback for a dead leg Asterisk has not noticed yet) is cut off here
    asked: list[str] = []

    async def refuse(route: Route) -> None:
        asked.append(route.request.url)
        await route.abort()

    await desk.page.route("**/api/v1/calls/*/reconnect", refuse)
    await desk.page.reload()
    # the page signs in again, its phone registers and the caller is rung back on it
    await desk.page.wait_for_selector('#phone-reg[data-state="registered"]', timeout=20_000)
    await desk.page.wait_for_selector('#phone-call[data-state="talking"]', timeout=30_000)
    await desk.page.wait_for_selector(card + '[data-state="answered"]', timeout=15_000)
    again = await desk.one("DialEnd", Linkedid=linkedid, DialStatus="ANSWER",
                           Context="cti-cc-reconnect")  # fmt: skip
    assert again["DestChannel"].startswith(first.rsplit("-", 1)[0] + "-")  # the same phone
    assert again["DestChannel"] != first
    assert not desk.of("Hangup", Channel=caller), "the caller was hung up"
    assert len(desk.of("DialBegin", Linkedid=linkedid, Context="cti-cc-reconnect")) == 1
    print(f"the page's own reconnect requests (refused): {len(asked)}")

    # the caller ends the call: one call row, one recording
    await ami.send_action("Hangup", {"Channel": caller})

    async def row() -> list[Any]:
        async with desk.stack.daemon.db.session() as s:
            return list((await s.execute(
                select(CallRow).where(CallRow.linkedid == linkedid))).scalars())  # fmt: skip

    rows = await wait_for(row, timeout=30, what="the call row")
    assert len(rows) == 1 and rows[0].agent == "s511", rows

    async def recorded() -> list[RecordingStopped]:
        return [e for e in stopped if e.linkedid == linkedid]

    assert len(await wait_for(recorded, timeout=30, what="the recording")) == 1
    await asyncio.sleep(1)
    assert len([e for e in stopped if e.linkedid == linkedid]) == 1
    assert not desk.errors, desk.errors


async def test_a_browser_that_does_not_come_back_sends_its_caller_to_the_queue_front(
    desk: Desk, ami: AmiClient, asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    linkedid, caller = await desk.answered_call(tmp_path, asterisk)
    await desk.page.context.close()  # the browser is gone (crash, network)
    # Asterisk notices (BYE, or no more RTP: rtp_timeout), the caller hears music...
    moh = await desk.one("MusicOnHoldStart", timeout=40, Channel=caller)
    # ...and, nobody coming back within the grace period, is at the queue's front again
    joins = await wait_for(
        lambda: _joins(desk, linkedid, 2), timeout=GRACE_S + 20, what="back in the queue"
    )
    again = joins[1]
    assert again["Channel"] == caller and again["Position"] == "1"
    waited = float(again["Timestamp"]) - float(moh["Timestamp"])
    assert waited >= GRACE_S - 1, waited
    assert not desk.of("Hangup", Channel=caller)
    # the agent's page, back too late, is told so (not an error)
    token = await create_token(desk.stack.daemon.db, "s511", "agent")
    status, body = await desk.stack.api("POST", f"/api/v1/calls/{linkedid}/reconnect", token)
    assert status == 409 and body["code"] == "requeued", (status, body)


async def _joins(desk: Desk, linkedid: str, n: int) -> list[Message]:
    joins = desk.of("QueueCallerJoin", Linkedid=linkedid)
    return joins if len(joins) >= n else []


async def test_two_browser_agents_hold_and_transfer_from_the_page(
    phone_stack: tuple[Stack, str], ami: AmiClient, asterisk: ChrootAsterisk,
    browser: Browser, tmp_path: Path,
) -> None:  # fmt: skip
    stack, queue = phone_stack
    other = queue + "b"  # agent B's queue: the test's caller never reaches it by itself
    await acd_store.put_queue(stack.daemon.db, QueueParams(other, timeout_s=30))
    assert await stack.daemon.services.extra["acd"].apply_queues()  # type: ignore[attr-defined]
    login_a, _ = await agent_with_browser_phone(stack, "s521", queue)
    login_b, phone_b = await agent_with_browser_phone(stack, "s522", other)
    pages: list[Desk] = []
    try:
        for login in (login_a, login_b):
            context = await browser.new_context(locale="en-GB")
            d = Desk(stack, queue, ami, await context.new_page())
            pages.append(d)
            await d.page.goto(stack.base + "/desktop/")
            await sign_in_page(d.page, login)
            await d.page.wait_for_selector('#phone-reg[data-state="registered"]', timeout=20_000)
            await d.page.click("#btn-available")
            await d.page.wait_for_selector('#status-value[data-status="available"]')
        a, b = pages
        linkedid, caller = await a.answered_call(tmp_path, asterisk)
        card = f'article.card[data-linkedid="{linkedid}"]'
        await a.page.wait_for_selector(card + ' .controls[data-mode="talking"]', timeout=15_000)

        # hold from the card: the caller hears music, the browser phone stays in the call
        await a.page.click(card + " button.hold")
        await a.page.wait_for_selector(card + ' .controls[data-mode="held"]', timeout=10_000)
        await a.one("MusicOnHoldStart", Channel=caller)
        await a.page.click(card + " button.resume")
        await a.page.wait_for_selector(card + ' .controls[data-mode="talking"]', timeout=10_000)
        await a.one("MusicOnHoldStop", Channel=caller)
        assert await a.page.get_attribute("#phone-call", "data-state") == "talking"

        # blind transfer to B with the notes: B's browser phone rings with the card
        await a.page.fill(card + " textarea.notes", "wants the invoice")
        await a.page.select_option(card + " select.cc-kind", "agent")
        await a.page.fill(card + " input.cc-target", "s522")
        await a.page.click(card + " button.blind")
        await b.page.wait_for_selector('#phone-call[data-state="ringing"]', timeout=20_000)
        await b.page.wait_for_selector(card + " .notes-from", timeout=10_000)
        await b.page.click("#phone-answer")
        await b.page.wait_for_selector('#phone-call[data-state="talking"]', timeout=15_000)
        await b.page.wait_for_selector(card + ' .controls[data-mode="talking"]', timeout=15_000)
        await a.page.wait_for_selector('#phone-call[data-state="idle"]', timeout=15_000)
        dial = await a.one("DialEnd", Linkedid=linkedid, DialStatus="ANSWER",
                           Context="cti-cc-agent")  # fmt: skip
        assert dial["DestChannel"].startswith(f"PJSIP/{phone_b}-")
        assert not a.of("Hangup", Channel=caller)
        # B hangs up from the card: the call ends (A's deliberate transfer kept nobody)
        await b.page.click(card + " button.hangup")
        gone = await a.one("Hangup", Channel=caller, timeout=15)
        assert gone["Context"] == "cti-cc-agent", "the caller was kept waiting for B"
        assert not a.errors and not b.errors, a.errors + b.errors
    finally:
        for d in pages:
            ami.remove_event_handler(d.seen.append)
            if d.proc is not None and d.proc.returncode is None:
                d.proc.kill()
                await d.proc.wait()
            await d.page.context.close()


async def test_a_reload_while_the_phone_rings_brings_the_ring_and_the_pop_back(
    desk: Desk, ami: AmiClient, asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    desk.proc = await start_sipp(asterisk, SCENARIO, "-m", "1", "-set", "caller",
                                 "13800138033", cwd=tmp_path, timeout_s=120)  # fmt: skip
    linkedid = (await desk.one("QueueCallerJoin", Queue=desk.queue))["Linkedid"]
    card = f'article.card[data-linkedid="{linkedid}"]'
    await desk.page.wait_for_selector('#phone-call[data-state="ringing"]', timeout=20_000)
    await desk.page.wait_for_selector(card + '[data-state="ringing"]', timeout=10_000)
    await desk.page.reload()
    # the card comes back from the snapshot, the phone registers again and rings again
    await desk.page.wait_for_selector(card, timeout=15_000)
    await desk.page.wait_for_selector('#phone-reg[data-state="registered"]', timeout=20_000)
    await desk.page.wait_for_selector('#phone-call[data-state="ringing"]', timeout=40_000)
    await desk.page.click("#phone-answer")
    await desk.page.wait_for_selector('#phone-call[data-state="talking"]', timeout=15_000)
    await desk.page.wait_for_selector(card + '[data-state="answered"]', timeout=15_000)
    connect = await desk.one("AgentConnect", Queue=desk.queue, Linkedid=linkedid)
    assert connect["MemberName"] == "s511"
    assert not desk.errors, desk.errors
