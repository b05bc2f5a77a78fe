"""The console's phones panel in real Chromium: an admin adds a desk phone to an agent,
sees its password once, the phone registers with it (SIPp) and shows as registered,
new credentials replace the old ones, removing it takes it out of Asterisk. Its label
(typed by a person, shown to others) stays text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from tests.acceptance.harness import wait_for
from tests.acceptance.sip_phones import sipp_register
from tests.acceptance.test_console_browser import Center
from tests.acceptance.test_console_browser import center as center
from tests.acceptance.test_console_browser import open_console as open_console

HOSTILE = "<img src=x onerror=alert(1)>"


async def endpoints(ami: AmiClient) -> set[str]:
    _, items = await ami.send_list_action("PJSIPShowEndpoints")
    return {i["ObjectName"] for i in items}


async def test_admin_provisions_rotates_and_removes_a_desk_phone_in_the_console(
    center: Center, ami: AmiClient, asterisk: ChrootAsterisk, open_console: Any, tmp_path: Path
) -> None:
    status, body = await center.api(
        "PUT", "/api/v1/acd/agents/bob", center.admin,
        {"devices": [{"kind": "local", "address": "502"}], "skills": {"support": 0}},
    )  # fmt: skip
    assert status == 200, body
    c = await open_console("root")
    page = c.page
    await c.section("agents")
    await page.click('#agents-table tr[data-agent="bob"] button.edit')
    await page.wait_for_selector("#phones-table")
    await page.select_option('#phone-form [name="kind"]', "sip")
    await page.fill('#phone-form [name="label"]', HOSTILE)
    await page.click("#phone-form button[type=submit]")
    cell = '#phone-credentials tr[data-cred="password"] td'
    await page.wait_for_selector(cell)
    password = await page.text_content(cell)
    username = await page.text_content('#phone-credentials tr[data-cred="username"] td')
    assert password and username == "bob-sip1" and len(password) >= 24
    assert "bob-sip1" in await endpoints(ami)
    label = await page.text_content('#phones-table tr[data-phone="bob-sip1"] td:nth-child(3)')
    assert label == HOSTILE and not await page.query_selector("#phones-table img")

    ok, _, out = await sipp_register(asterisk, username, password, cwd=tmp_path)
    assert ok, out

    async def shown_registered() -> bool:
        await c.section("agents")  # a click on the section shown reloads it
        await page.click('#agents-table tr[data-agent="bob"] button.edit')
        await page.wait_for_selector('#phones-table tr[data-phone="bob-sip1"]')
        pill = await page.text_content('#phones-table tr[data-phone="bob-sip1"] .pill')
        return pill == "registered"

    await wait_for(shown_registered, timeout=15, what="the phone shown registered", every=0.5)
    devices = await page.text_content('#agents-table tr[data-agent="bob"] td.devices')
    assert devices is not None and "bob-sip1 (registered)" in devices

    await page.click('#phones-table tr[data-phone="bob-sip1"] button.rotate')
    await page.wait_for_function(
        "old => { const td = document.querySelector("
        "'#phone-credentials tr[data-cred=\"password\"] td');"
        " return td && td.textContent !== old; }",
        arg=password,
    )
    new_password = await page.text_content(cell)
    assert new_password and new_password != password
    ok, _, _ = await sipp_register(asterisk, username, password, cwd=tmp_path)
    assert not ok
    ok, _, out = await sipp_register(asterisk, username, new_password, cwd=tmp_path)
    assert ok, out

    remove = '#phones-table tr[data-phone="bob-sip1"] button.danger'
    await page.click(remove)
    await page.click(remove)  # a second click confirms
    await page.wait_for_selector('#phones-table tr[data-phone="bob-sip1"]', state="detached")
    assert "bob-sip1" not in await endpoints(ami)
    assert not c.errors and not c.dialogs, (c.errors, c.dialogs)
