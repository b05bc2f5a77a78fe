"""The desktop page in real headless Chromium (Debian's, driven by Playwright) against the
daemon and the real Asterisk: the pop appears while the phone rings, notes and the
disposition typed in the page land in the store, pause in the page stops calls, and a
hostile caller ID name is shown as text.

Only the notes-and-disposition test runs on PostgreSQL too; the others are the page's
behaviour (harness.SQLITE_ONLY)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from cti.ami.client import AmiClient
from cti.phone import region
from tests.acceptance.harness import SQLITE_ONLY, originate_call, sign_in_page, wait_for
from tests.acceptance.test_pop import Stack, set_sim, stack

__all__ = ["stack"]  # the fixture, shared with test_pop

HOSTILE = "<img src=x onerror=alert(1)>"


class Desk:
    """One agent's desktop page, with what went wrong in it (errors, dialogs)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.http_errors: list[str] = []  # e.g. a 404 of an endpoint another issue adds
        page.on("console", self._console)

        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        if msg.text.startswith("Failed to load resource"):
            self.http_errors.append(msg.text)
        else:  # script errors, CSP refusals
            self.errors.append(msg.text)

    def card(self, linkedid: str) -> str:
        return f'article.card[data-linkedid="{linkedid}"]'


@pytest.fixture
async def open_desk(browser: Browser, stack: Stack) -> AsyncIterator[Any]:
    contexts = []

    async def factory(token: str, lang: str = "en") -> Desk:
        context = await browser.new_context(locale="zh-CN" if lang == "zh" else "en-GB")
        contexts.append(context)
        page = await context.new_page()
        desk = Desk(page)
        status, me = await stack.api("GET", "/api/v1/me", token)
        assert status == 200, me
        login = await stack.person(me["name"], "agent", agent=me["name"])
        await page.goto(stack.base + "/desktop/")
        await sign_in_page(page, login)
        await page.wait_for_selector("#app:not([hidden])")
        await page.wait_for_selector("#conn.open")
        return desk

    yield factory
    for context in contexts:
        await context.close()


async def hang_up(ami: AmiClient, uniqueid: str) -> None:
    """Hang up the channel whose Uniqueid is ``uniqueid`` (a simulated caller's own half:
    originate_call's ChannelId)."""
    _, items = await ami.send_list_action("CoreShowChannels")
    (channel,) = [i["Channel"] for i in items if i.get("Uniqueid") == uniqueid]
    await ami.send_action("Hangup", {"Channel": channel})


async def test_pop_in_page_while_ringing_then_notes_land_in_store(
    stack: Stack, ami: AmiClient, open_desk: Any
) -> None:
    status, body = await stack.api(
        "POST", "/api/v1/customers", stack.admin,
        {"name": "李娜", "company": "Yangtze Ltd", "tier": "vip", "phones": ["13900139000"]},
    )  # fmt: skip
    assert status == 201, body
    token = await stack.agent("a201", "201")
    desk = await open_desk(token)
    page = desk.page
    await page.wait_for_selector('#status-value[data-status="available"]')
    await set_sim(ami, ring=5, talk=8)
    linkedid = await originate_call(ami, caller="13900139000", caller_name="Li", hold_s=40)

    card = desk.card(linkedid)
    await page.wait_for_selector(card + '[data-state="ringing"]', timeout=20_000)
    shown_at = time.time()
    await page.wait_for_selector(card + " .customer-name", timeout=10_000)
    assert await page.text_content(card + " .customer-name") == "李娜"
    assert await page.text_content(card + " .caller-num") == "13900139000"
    assert "Yangtze Ltd" in (await page.text_content(card + " .company") or "")
    # 号码归属地 of the caller's number, from the pop (cti.phone.region, English page)
    assert await page.text_content(card + " .caller-region") == region("+8613900139000", "en")

    await stack.rang_while(linkedid, shown_at)  # the card was there while the phone rang
    await page.wait_for_selector(card + '[data-state="answered"]', timeout=20_000)
    await page.fill(card + " textarea.notes", "客户要求周五回电 / call back Friday")
    await page.wait_for_selector(
        card + ' select.disposition option[value="follow_up"]', state="attached"
    )
    options = await page.eval_on_selector_all(
        card + " select.disposition option", "os => os.map(o => o.value).filter(Boolean)"
    )
    assert "follow_up" in options, options
    await page.select_option(card + " select.disposition", "follow_up")
    await page.click(card + " button.save")
    await page.wait_for_selector(card + " .save-status.ok", timeout=10_000)

    async def stored() -> Any:
        status, body = await stack.api(
            "GET", f"/api/v1/interactions/by-call/{linkedid}", stack.admin
        )
        return body if status == 200 else None

    row = await wait_for(stored, timeout=10, what="the interaction")
    assert row["notes"] == "客户要求周五回电 / call back Friday"
    assert row["disposition"] == "follow_up"
    # the call ends (the caller hangs up now the notes are in, rather than the agent after
    # its 8 s of talk); what the agent wrote survives the CallCompleted upsert
    await hang_up(ami, linkedid)
    await page.wait_for_selector(card + '[data-state="ended"]', timeout=30_000)

    async def finished() -> Any:
        body = await stored()
        return body if body and body.get("ended_at") else None

    row = await wait_for(finished, timeout=15, what="the interaction closed")
    assert row["notes"] == "客户要求周五回电 / call back Friday"
    assert row["disposition"] == "follow_up"
    # a reload of the page keeps the card; today's calls show the call
    await page.reload()
    await page.wait_for_selector(card + '[data-state="ended"]', timeout=10_000)
    await page.click("#today-refresh")
    await page.wait_for_selector(f'#today tr[data-linkedid="{linkedid}"]', timeout=10_000)
    assert desk.errors == [] and desk.dialogs == []


@SQLITE_ONLY
async def test_hostile_caller_name_is_text(stack: Stack, ami: AmiClient, open_desk: Any) -> None:
    token = await stack.agent("a202", "202")
    desk = await open_desk(token, lang="zh")
    page = desk.page
    await set_sim(ami, ring=4, talk=1)
    linkedid = await originate_call(ami, caller="13700137000", caller_name=HOSTILE, hold_s=20)
    card = desk.card(linkedid)
    await page.wait_for_selector(card, timeout=20_000)
    assert await page.text_content(card + " .caller-name") == HOSTILE
    assert await page.locator("img").count() == 0
    # unknown number: the new-customer form, prefilled, in Chinese
    form = card + " form.customer-form"
    assert await page.input_value(form + ' input[name="number"]') == "+8613700137000"
    assert await page.input_value(form + ' input[name="name"]') == HOSTILE
    assert "新建客户" in (await page.text_content(form + " h3") or "")
    await page.wait_for_timeout(300)  # an onerror would have fired by now
    assert desk.dialogs == [] and desk.errors == []


@SQLITE_ONLY
async def test_duplicate_warning_when_creating_customer(
    stack: Stack, ami: AmiClient, open_desk: Any
) -> None:
    status, body = await stack.api(
        "POST", "/api/v1/customers", stack.admin,
        {"name": "赵强", "company": "Acme", "phones": ["13600136000"]},
    )  # fmt: skip
    assert status == 201, body
    token = await stack.agent("a203", "203")
    desk = await open_desk(token)
    page = desk.page
    await set_sim(ami, ring=6, talk=1)
    linkedid = await originate_call(ami, caller="13500135000", hold_s=20)  # unknown number
    card = desk.card(linkedid)
    form = card + " form.customer-form"
    await page.wait_for_selector(form, timeout=20_000)
    await page.fill(form + ' input[name="name"]', "赵强")
    await page.fill(form + ' input[name="company"]', "Acme")
    await page.fill(form + ' input[name="number"]', "136 0013 6000")
    await page.click(form + " button[type=submit]")
    await page.wait_for_selector(form + " .dupes .candidate", timeout=10_000)
    assert "赵强" in (await page.text_content(form + " .dupes .candidate .cand-name") or "")
    await page.click(form + " .dupes .candidate button")
    await page.wait_for_selector(card + " .customer .customer-name", timeout=10_000)
    assert await page.text_content(card + " .customer .customer-name") == "赵强"


@SQLITE_ONLY
async def test_pause_in_page_stops_calls(stack: Stack, ami: AmiClient, open_desk: Any) -> None:
    token = await stack.agent("a301", "301")
    await stack.agent("a302", "302")
    desk = await open_desk(token)
    page = desk.page
    await page.wait_for_selector('#pause-reason option[value="break"]', state="attached")
    reasons = await page.eval_on_selector_all("#pause-reason option", "os => os.map(o => o.value)")
    assert "break" in reasons
    await page.select_option("#pause-reason", "break")
    await page.click("#btn-pause")
    await page.wait_for_selector('#status-value[data-status="paused"]')
    assert (await page.text_content("#status-reason")) == "(break)"
    await set_sim(ami, ring=1, talk=1)
    for _ in range(3):
        linkedid = await originate_call(ami, caller="13800138001", hold_s=15)

        async def connected(lid: str = linkedid) -> Any:
            return stack.events("AgentConnect", lid)

        msgs = await wait_for(connected, timeout=20, what="the call answered")
        assert msgs[0].get("MemberName") == "a302"
        offered_to = {m.get("MemberName") for m in stack.events("AgentCalled", linkedid)}
        assert offered_to == {"a302"}
        assert await page.locator(desk.card(linkedid)).count() == 0
    # back to available: calls reach the page again
    await page.click("#btn-available")
    await page.wait_for_selector('#status-value[data-status="available"]')
    status, body = await stack.api(
        "POST", "/api/v1/acd/agents/a302/status", stack.admin, {"status": "logged_out"}
    )
    assert status == 200, body
    await set_sim(ami, ring=3, talk=1)
    linkedid = await originate_call(ami, caller="13800138002", hold_s=15)
    await page.wait_for_selector(desk.card(linkedid), timeout=20_000)


@SQLITE_ONLY
async def test_lost_caller_worklist(stack: Stack, ami: AmiClient, open_desk: Any) -> None:
    # an agent of the caller's queue (only they and supervisors may close its lost
    # callers), paused: nobody answers support
    token = await stack.agent("a401", "401")
    status, body = await stack.api(
        "POST", "/api/v1/acd/agents/a401/status", token, {"status": "paused", "reason": "break"}
    )
    assert status == 200, body
    desk = await open_desk(token)
    page = desk.page
    linkedid = await originate_call(ami, caller="13300133000", caller_name="Lost", hold_s=2)

    async def lost() -> Any:
        _, body = await stack.api("GET", "/api/v1/acd/lost-callers", token)
        return [r for r in body["lost_callers"] if r["linkedid"] == linkedid]

    await wait_for(lost, timeout=20, what="the lost caller")
    row = f'#lost tr[data-linkedid="{linkedid}"]'
    await page.click("#work-refresh")
    await page.wait_for_selector(row, timeout=10_000)
    assert await page.text_content(row + " .lost-number") == "13300133000"
    assert await page.text_content(row + " .lost-name") == "Lost"
    await page.click(row + " button.close")
    await page.wait_for_selector(row, state="detached", timeout=10_000)
    assert await lost() == []  # no longer open
    _, body = await stack.api("GET", "/api/v1/acd/lost-callers?open=0", stack.admin)
    closed = [r for r in body["lost_callers"] if r["linkedid"] == linkedid]
    assert closed and closed[0]["closed_by"] == "manual"
    assert desk.errors == []


@SQLITE_ONLY
async def test_click_to_call_pops_outbound_card(
    stack: Stack, ami: AmiClient, open_desk: Any
) -> None:
    """Needs the ACD's POST /api/v1/acd/agents/{name}/dial (contracts.md)."""
    token = await stack.agent("a402", "402")
    desk = await open_desk(token)
    page = desk.page
    await set_sim(ami, ring=1, talk=3)
    await page.fill("#dial-number", "010 6552 9988")
    await page.click("#dial-form button[type=submit]")
    await page.wait_for_selector(
        'article.card[data-state="dialing"], article.card[data-state="answered"]', timeout=20_000
    )
    kinds = await page.eval_on_selector_all(
        "article.card .kind", "ns => ns.map(n => n.textContent)"
    )
    assert "Outbound call" in kinds
    number = await page.text_content("article.card .caller-num") or ""
    assert number.replace(" ", "").endswith("1065529988"), number  # as dialled, or E.164


@SQLITE_ONLY
async def test_callback_worklist_dial_pops_callback_card(
    stack: Stack, ami: AmiClient, open_desk: Any
) -> None:
    """A callback request waits in the queue (the only agent is paused); the agent takes
    it from the worklist: the system dials and the page pops a callback card."""
    token = await stack.agent("a501", "501")
    status, body = await stack.api(
        "POST", "/api/v1/acd/agents/a501/status", token, {"status": "paused", "reason": "break"}
    )
    assert status == 200, body
    acd = stack.daemon.features[0]
    callbacks = acd.callbacks  # type: ignore[attr-defined]
    row = await callbacks.request(number="13200132000", queue="support", source="test")
    desk = await open_desk(token)
    page = desk.page
    cb_row = f'#callbacks tr[data-id="{row["id"]}"]'
    await page.wait_for_selector(cb_row, timeout=10_000)
    assert await page.text_content(cb_row + " .cb-number") == "+8613200132000"
    await set_sim(ami, ring=1, talk=3)
    await page.click(cb_row + " button.cb-dial")
    card = 'article.card[data-state="dialing"], article.card[data-state="answered"]'
    await page.wait_for_selector(card, timeout=20_000)
    kinds = await page.eval_on_selector_all(
        "article.card .kind", "ns => ns.map(n => n.textContent)"
    )
    assert "Callback" in kinds
    assert desk.errors == []
