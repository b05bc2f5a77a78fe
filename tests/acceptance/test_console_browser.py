"""The console in real headless Chromium against the whole daemon (every feature) and the
real Asterisk: an admin creates an agent, a queue and an IVR menu in the pages, and a
real call then follows that menu into that queue and rings that agent. Errors the API
refuses are shown in the page; hostile text stays text."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser

from acd.queues_conf import FILE_NAME
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.daemon import Daemon
from cti.store.tokens import create_token
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import sign_in_page, wait_for
from tests.acceptance.sip_phones import sipp_register, start_desk_phone
from tests.acceptance.test_desktop_browser import Desk
from tests.acceptance.test_ivr_harness import call
from tests.acceptance.test_pop import Stack, set_sim

HOSTILE = "<img src=x onerror=alert(1)>"


@dataclass
class Center(Stack):
    """The whole daemon (every registered feature) and a supervisor's token."""

    supervisor: str = ""


@pytest.fixture
async def center(asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path) -> AsyncIterator[Center]:
    """The daemon with every registered feature (as ``cti run``), on SQLite."""
    sounds = asterisk.base / "lib" / "sounds" / "cti"
    settings: Settings = daemon_settings(
        asterisk, f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}",
        acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
        ivr={"menus": str(tmp_path / "no-menus.toml"), "prompt_dir": str(sounds),
             "prompt_dir_asterisk": f"{asterisk.inner}/lib/sounds/cti",
             "forward_dial": "Local/{digits}@cti-sim-agents/n"},
    )  # fmt: skip
    daemon = Daemon(settings)
    await daemon.start()
    await daemon.ami.wait_connected(timeout=15)
    seen: list[Message] = []

    def on_event(msg: Message) -> None:
        if msg.event in ("AgentCalled", "AgentConnect", "QueueCallerJoin"):
            seen.append(msg)

    ami.add_event_handler(on_event)
    http = aiohttp.ClientSession()
    try:
        center = Center(
            daemon, http, await create_token(daemon.db, "root", "admin"), ami, seen,
            supervisor=await create_token(daemon.db, "lihua", "supervisor"),
        )  # fmt: skip
        # the people who sign in on the pages (their audit entries carry their login)
        await center.person("root", "admin")
        await center.person("lihua", "supervisor")
        yield center
    finally:
        ami.remove_event_handler(on_event)
        await http.close()
        await daemon.stop()
        (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
        await ami.send_action("QueueReload", {"Parameters": "yes"})
        await asyncio.to_thread(asterisk.cli, "channel request hangup all")


class Console(Desk):
    """One signed-in console page, with what went wrong in it (errors, dialogs)."""

    async def section(self, name: str) -> None:
        await self.page.click(f"#nav-{name}")
        await self.page.wait_for_selector(f'#view [data-section="{name}"]')


@pytest.fixture
async def open_console(browser: Browser, center: Center) -> AsyncIterator[Any]:
    contexts = []

    async def factory(login: str, lang: str = "en") -> Console:
        context = await browser.new_context(locale="zh-CN" if lang == "zh" else "en-GB")
        contexts.append(context)
        page = await context.new_page()
        console = Console(page)
        await page.goto(center.base + "/console/")
        await sign_in_page(page, login)
        await page.wait_for_selector("#app:not([hidden])")
        await page.wait_for_selector("#view [data-section]")
        return console

    yield factory
    for context in contexts:
        await context.close()


async def test_admin_builds_agent_queue_and_menu_then_a_call_follows_them(
    center: Center, ami: AmiClient, asterisk: ChrootAsterisk, open_console: Any, tmp_path: Path
) -> None:
    c = await open_console("root")
    page = c.page
    # --- an agent, and a desk phone for it (SIPp registers with what the page shows once) -----
    await c.section("agents")
    await page.click("#new-agent")
    await page.fill('#agent-form [name="name"]', "alice")
    await page.fill('#agent-form [name="display_name"]', "爱丽丝 Alice")
    await page.click("#add-device")
    await page.select_option('#agent-form .device [name="kind"]', "local")
    await page.fill('#agent-form .device [name="address"]', "501")
    await page.click("#agent-form button[type=submit]")
    await page.wait_for_selector('#agents-table tr[data-agent="alice"]')
    await page.click('#agents-table tr[data-agent="alice"] button.edit')
    await page.wait_for_selector("#phones-table")
    await page.select_option('#phone-form [name="kind"]', "sip")
    await page.fill('#phone-form [name="label"]', "desk")
    await page.click("#phone-form button[type=submit]")
    cell = '#phone-credentials tr[data-cred="password"] td'
    await page.wait_for_selector(cell)
    password = await page.text_content(cell) or ""
    username = await page.text_content('#phone-credentials tr[data-cred="username"] td') or ""
    registered, port, out = await sipp_register(asterisk, username, password, cwd=tmp_path)
    assert registered, out
    desk_phone = await start_desk_phone(port, cwd=tmp_path, timeout_s=120)
    # --- a queue, its members ----------------------------------------------------------------
    await c.section("queues")
    await page.click("#new-queue")
    await page.fill('#queue-form [name="name"]', "billing")
    await page.select_option('#queue-form [name="strategy"]', "ringall")
    await page.fill('#queue-form [name="service_level_s"]', "15")
    await page.click("#queue-form button[type=submit]")
    row = '#queues-table tr[data-queue="billing"]'
    await page.wait_for_selector(row)
    conf = (asterisk.etc_dir / FILE_NAME).read_text()
    assert "[billing]\nstrategy = ringall" in conf and "servicelevel = 15" in conf
    await page.click(row + " button.edit")
    await page.wait_for_selector('#members-table tr[data-agent="alice"]')
    await page.check('#members-table tr[data-agent="alice"] [name="member"]')
    await page.click("#save-members")
    await page.wait_for_selector("#queue-editor .notice:has-text('Saved')")
    # --- the agent logs in (a supervisor's button) ---------------------------------------------
    await c.section("agents")
    await page.click('#agents-table tr[data-agent="alice"] button.login')
    await page.wait_for_selector('#agents-table tr[data-agent="alice"] .pill.available')
    # --- an IVR prompt (Chinese text to speech, listened to first) and a menu -----------------
    await c.section("ivr")
    await page.fill('#prompt-form [name="name"]', "welcome")
    await page.fill('#prompt-form [name="text"]', "您好。账单查询请按一。")
    await page.select_option('#prompt-form [name="voice"]', "cmn")
    await page.click("#tts-preview")
    await page.wait_for_selector('#prompt-player[src^="blob:"]', state="attached")
    await page.click("#prompt-form button[type=submit]")
    await page.wait_for_selector('#prompts-table tr[data-prompt="welcome"]')
    await page.click("#new-menu")
    await page.fill('#menu-form [name="name"]', "main")
    await page.select_option('#menu-form [name="greeting"]', "welcome")
    await page.click("#add-option")
    opt = "#menu-form tr.option"
    await page.select_option(opt + ' [name="key"]', "1")
    await page.select_option(opt + " .action-kind", "queue")
    await page.select_option(opt + " .action-target", "billing")
    await page.click("#menu-form button[type=submit]")
    await page.wait_for_selector('#menu-list button[data-menu="main"]')
    # --- a real call follows the menu into the queue and rings alice ---------------------------
    await set_sim(ami, ring=3, talk=2)
    linkedid = await call(ami, dtmf="1", dtmf_delay=1.0, hold_s=20)

    async def rang() -> list[Message]:
        return [
            m for m in center.seen
            if m.event == "AgentCalled" and m.get("Linkedid") == linkedid
        ]  # fmt: skip

    (ring,) = await wait_for(rang, timeout=30, what="alice's phone ringing")
    assert ring["Queue"] == "billing" and ring["MemberName"] == "alice"
    assert ring["Interface"] == f"PJSIP/{username}"  # her desk phone, not a simulated one

    async def answered() -> list[Message]:
        return [
            m for m in center.seen
            if m.event == "AgentConnect" and m.get("Linkedid") == linkedid
        ]  # fmt: skip

    (connect,) = await wait_for(answered, timeout=30, what="alice answering on her desk phone")
    assert connect["MemberName"] == "alice" and connect["Interface"] == f"PJSIP/{username}"
    # the caller hangs up once answered (not when the call's 20 s hold runs out: ~13 s
    # of nothing to see): the desk phone gets its BYE and ends its scenario
    await ami.send_action("Hangup", {"Channel": connect["Channel"]})
    phone_out, _ = await asyncio.wait_for(desk_phone.communicate(), 60)
    assert desk_phone.returncode == 0, phone_out.decode(errors="replace")[-2000:]
    # --- alice gets a sign-in of her own (a person linked to the agent) ------------------------
    await c.section("users")
    await page.click("#new-user")
    await page.fill('#user-form [name="login"]', "alice.wang")
    await page.select_option('#user-form [name="role"]', "agent")
    await page.select_option('#user-form [name="agent"]', "alice")
    await page.fill('#user-form [name="digest_email"]', "alice.wang@example.cn")
    await page.click("#gen-password")
    password = await page.input_value('#user-form [name="password"]')
    await page.click("#user-form button[type=submit]")
    await page.wait_for_selector('#users-table tr[data-login="alice.wang"]')
    # her daily digest goes to the address the form set (messaging)
    status, body = await center.api("GET", "/api/v1/digest/addresses", center.admin)
    assert status == 200 and [(a["login"], a["email"]) for a in body["addresses"]] == [
        ("alice.wang", "alice.wang@example.cn")
    ], body
    async with center.http.post(
        center.base + "/api/v1/auth/sign-in", json={"login": "alice.wang", "password": password}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["user"]["agent"] == "alice"
    # --- the audit log shows each change: who, what, before -> after ---------------------------
    await c.section("audit")
    await page.wait_for_selector("#audit-table tbody tr[data-action]")
    actions = await page.eval_on_selector_all(
        "#audit-table tbody tr[data-action]", "rows => rows.map(r => r.dataset.action)"
    )
    for expected in ("acd.agent.create", "acd.queue.create", "acd.queue.members",
                     "ivr.prompts.create", "ivr.menus.create",
                     "ivr.defaults.update", "user.create"):  # fmt: skip
        assert expected in actions, (expected, actions)
    members = '#audit-table tr[data-action="acd.queue.members"]'
    assert "root" in (await page.text_content(members + " td:nth-child(2)") or "")
    assert '"alice": 0' in (await page.text_content(members + " .diff") or "")
    await page.fill('#audit-filter [name="action"]', "ivr.")
    await page.click("#audit-filter button[type=submit]")
    await page.wait_for_selector('#audit-table tbody tr[data-action="acd.queue.create"]',
                                 state="detached")  # fmt: skip
    actions = await page.eval_on_selector_all(
        "#audit-table tbody tr[data-action]", "rows => rows.map(r => r.dataset.action)"
    )
    assert actions and all(a.startswith("ivr.") for a in actions), actions
    async with page.expect_download() as download:
        await page.click("#audit-export")
    saved = Path(await (await download.value).path())
    exported = await asyncio.to_thread(saved.read_text, encoding="utf-8-sig")
    assert "ivr.menus.create" in exported and "acd.queue.create" not in exported
    assert c.errors == [] and c.dialogs == []


#: opens the microphone in the page and waits until it delivers sound (at most 10 s)
MIC_OPEN = """async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  window.ctiTestMic = { stream, ctx };
  for (let i = 0; i < 200; i++) {
    analyser.getFloatTimeDomainData(buf);
    if (buf.some((x) => Math.abs(x) > 0.05)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the microphone gave no sound within 10 s");
}"""

#: the sound the microphone has given the page so far, in ms (its track's statistics)
MIC_HEARD_MS = "() => window.ctiTestMic.stream.getAudioTracks()[0].stats.deliveredFramesDuration"


async def test_a_prompt_recorded_in_the_page_is_uploaded_and_converted(
    center: Center, open_console: Any, asterisk: ChrootAsterisk
) -> None:
    c = await open_console("root")
    page = c.page
    await c.section("ivr")
    await page.fill('#prompt-form [name="name"]', "recorded")
    await page.select_option('#prompt-form [name="kind"]', "upload")
    # the browser's (fake) microphone opened first and heard (its tone), kept open while the
    # page records: a capture device opened late (a loaded browser, or one that was just
    # playing audio for another page) cut the page's recording short (0.96 s of 2.5 s)
    await page.evaluate(MIC_OPEN)
    await page.click("#record")
    await page.wait_for_selector('#record-state[data-state="recording"]')
    # the page says "recording" once its recorder started; then 2.5 s of the microphone's
    # sound, not of the clock: a capture starved on a loaded machine (the browser's audio
    # service stopped 1.5 s: 1.1 s of sound in 2.5 s of the clock) skips what it missed
    heard = await page.evaluate(MIC_HEARD_MS)
    await page.wait_for_function(
        f"() => ({MIC_HEARD_MS})() >= {heard + 2500}", polling=50, timeout=30_000
    )
    await page.click("#record")
    await page.wait_for_selector('#record-state[data-state="recorded"]')
    await page.click("#prompt-form button[type=submit]")
    await page.wait_for_selector('#prompts-table tr[data-prompt="recorded"]')
    status, body = await center.api("GET", "/api/v1/ivr/prompts", center.admin)
    assert status == 200, body
    (prompt,) = [p for p in body["prompts"] if p["name"] == "recorded"]
    assert prompt["kind"] == "upload"
    wav = asterisk.base / "lib" / "sounds" / "cti" / (Path(prompt["playable"]).name + ".wav")
    # what Asterisk plays: 8 kHz mono, about as long (the whole upload: the server kept
    # its first 16 KiB, 0.96 s, when the body came in parts: cti.web.body.read_body)
    with wave.open(str(wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert 2.0 < w.getnframes() / 8000 < 4.0
    await page.click('#prompts-table tr[data-prompt="recorded"] button.listen')
    await page.wait_for_selector('#prompt-player[src^="blob:"]', state="attached")
    assert c.errors == [] and c.dialogs == []


async def test_refused_input_is_shown_in_the_page(center: Center, open_console: Any) -> None:
    c = await open_console("root", lang="zh")
    page = c.page
    await c.section("queues")
    await page.click("#new-queue")
    await page.fill('#queue-form [name="name"]', "vip")
    await page.select_option('#queue-form [name="overflow_action"]', "voicemail")
    await page.click("#queue-form button[type=submit]")
    error = await page.wait_for_selector("#queue-form .error strong")
    assert "overflow_action voicemail needs overflow_mailbox" in (await error.text_content() or "")
    # an IVR menu pointing at a menu that does not exist: each problem named by its key
    status, _ = await center.api(
        "PUT", "/api/v1/ivr/prompts/hi", center.admin, {"text": "hi", "voice": "en"}
    )
    assert status == 200
    await c.section("ivr")
    await page.click("#new-menu")
    await page.fill('#menu-form [name="name"]', "main")
    await page.click("#add-option")
    await page.select_option("#menu-form tr.option .action-kind", "extension")
    await page.fill("#menu-form tr.option .action-target", "12ab&PJSIP/x")
    await page.click("#menu-form button[type=submit]")
    problem = await page.wait_for_selector("#menu-form .error li")
    text = await problem.text_content() or ""
    assert text.startswith("menus.main.options.1: target of extension must be"), text
    status, body = await center.api("GET", "/api/v1/ivr/document", center.admin)
    assert "main" not in body["document"]["menus"]  # nothing was saved
    assert c.errors == [] and c.dialogs == []


async def test_hostile_text_is_text(center: Center, open_console: Any) -> None:
    admin = center.admin
    assert (await center.api("PUT", "/api/v1/acd/agents/mallory", admin,
                             {"display_name": HOSTILE, "devices": []}))[0] == 200  # fmt: skip
    assert (await center.api("PUT", "/api/v1/ivr/prompts/evil", admin,
                             {"text": HOSTILE, "voice": "en"}))[0] == 200  # fmt: skip
    office = {"mon": ["09:00-18:00"], "closed": {"action": "hangup"}}
    assert (await center.api("PUT", "/api/v1/ivr/schedules/office", admin, office))[0] == 200
    status, body = await center.api(
        "PUT", "/api/v1/ivr/schedules/office/override", center.supervisor,
        {"mode": "night", "note": HOSTILE},
    )  # fmt: skip
    assert status == 200, body
    status, body = await center.api(
        "PUT", "/api/v1/dispositions", admin,
        {"dispositions": [{"code": "x", "label_en": HOSTILE, "label_zh": HOSTILE}]},
    )  # fmt: skip
    assert status == 200, body
    c = await open_console("lihua")
    page = c.page
    await c.section("agents")
    cell = await page.wait_for_selector('#agents-table tr[data-agent="mallory"] td:nth-child(2)')
    assert await cell.text_content() == HOSTILE
    await c.section("ivr")
    cell = await page.wait_for_selector('#prompts-table tr[data-prompt="evil"] td:nth-child(3)')
    assert await cell.text_content() == HOSTILE
    await c.section("hours")
    note = await page.wait_for_selector('[data-schedule="office"] .override')
    assert HOSTILE in (await note.text_content() or "")
    await c.section("dispositions")
    await page.wait_for_selector("#dispositions-form tr.disposition")
    assert await page.input_value('#dispositions-form [name="label_en"]') == HOSTILE
    assert await page.locator("img").count() == 0
    await page.wait_for_timeout(300)  # an onerror would have fired by now
    assert c.errors == [] and c.dialogs == []


async def test_queue_changes_apply_live_without_dropping_calls(
    center: Center, ami: AmiClient, asterisk: ChrootAsterisk
) -> None:
    admin = center.admin
    body = {"strategy": "ringall", "timeout_s": 15, "wrapup_s": 0}
    assert (await center.api("PUT", "/api/v1/acd/queues/live_q", admin, body))[0] == 200
    device = {"devices": [{"kind": "local", "address": "601"}]}
    assert (await center.api("PUT", "/api/v1/acd/agents/bea", admin, device))[0] == 200
    status, _ = await center.api(
        "PUT", "/api/v1/acd/queues/live_q/members", admin, {"members": {"bea": 0}}
    )
    assert status == 200
    assert (await center.api("POST", "/api/v1/acd/agents/bea/status", admin,
                             {"status": "available"}))[0] == 200  # fmt: skip
    # no menu: every call goes through the IVR straight to the operator queue, live_q
    status, body = await center.api("PUT", "/api/v1/ivr/defaults", admin, {"operator": "live_q"})
    assert status == 200, body
    await set_sim(ami, ring=1, talk=60)
    talking = await call(ami, hold_s=60)

    async def connected() -> bool:
        return any(m.event == "AgentConnect" and m.get("Linkedid") == talking
                   for m in center.seen)  # fmt: skip

    await wait_for(connected, timeout=20, what="the first call answered")
    waiting = await call(ami, hold_s=60)

    async def queued() -> bool:
        out = await asyncio.to_thread(asterisk.cli, "queue show live_q")
        return "Callers: " in out and "1. " in out

    await wait_for(queued, timeout=20, what="the second call waiting")
    # an admin changes the queue while one call talks and one waits
    body = {"strategy": "leastrecent", "timeout_s": 20, "wrapup_s": 5, "max_wait_s": 600,
            "announce_position": True, "service_level_s": 30}  # fmt: skip
    status, answer = await center.api("PUT", "/api/v1/acd/queues/live_q", admin, body)
    assert status == 200 and answer["applied"] is True, answer
    status, _ = await center.api(
        "PUT", "/api/v1/acd/queues/live_q/members", admin, {"members": {"bea": 3}}
    )
    assert status == 200

    async def reloaded() -> str:
        out = await asyncio.to_thread(asterisk.cli, "queue show live_q")
        return out if "in 'leastrecent' strategy" in out and "penalty 3" in out else ""

    out = await wait_for(reloaded, timeout=10, what="app_queue reloaded")
    assert "within 30s" in out and "(in call)" in out, out  # bea still talking
    assert "Callers: \n      1. Local/4008001234@cti-inbound" in out, out  # still waiting
    channels = await asyncio.to_thread(asterisk.cli, "core show channels concise")
    assert talking in channels and waiting in channels, channels


async def test_supervisor_flips_night_and_the_next_call_gets_the_closed_action(
    center: Center, ami: AmiClient, open_console: Any
) -> None:
    admin = center.admin
    always = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    hours = {**always, "timezone": "Asia/Shanghai", "holidays": "",
             "closed": {"action": "queue", "target": "sales"},
             "emergency": {"action": "hangup"}}  # fmt: skip
    assert (await center.api("PUT", "/api/v1/ivr/schedules/center", admin, hours))[0] == 200
    status, body = await center.api(
        "PUT", "/api/v1/ivr/defaults", admin, {"operator": "support", "schedule": "center"}
    )
    assert status == 200, body

    async def queue_of(linkedid: str) -> str:
        async def joined() -> list[Message]:
            return [m for m in center.seen
                    if m.event == "QueueCallerJoin" and m.get("Linkedid") == linkedid]  # fmt: skip

        return (await wait_for(joined, timeout=20, what=f"{linkedid} in a queue"))[0]["Queue"]

    assert await queue_of(await call(ami, hold_s=5)) == "support"  # open: the operator queue
    c = await open_console("lihua", lang="zh")
    page = c.page
    await c.section("hours")
    state = '[data-schedule="center"]'
    await page.wait_for_selector(state + '[data-state="open"]')
    await page.fill(state + ' [name="note"]', "台风停业")
    await page.click(state + ' button[data-mode="night"]')
    await page.wait_for_selector(state + '[data-state="closed"]')
    assert "台风停业" in (await page.text_content(state + " .override") or "")
    assert await queue_of(await call(ami, hold_s=5)) == "sales"  # night: the closed action
    await page.click(state + ' button[data-mode="auto"]')
    await page.wait_for_selector(state + '[data-state="open"]')
    assert await queue_of(await call(ami, hold_s=5)) == "support"
    assert c.errors == [] and c.dialogs == []
