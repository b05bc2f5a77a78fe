"""`make up`'s demo traffic (``cti run --demo``, cti.demo) on the real Asterisk, set up as
``make up`` sets it up: every feature, the example IVR menus, the demo customers (so some
callers are recognised and hear a greeting before the menu) and the two demo agents on
simulated phones. The callers wait through the menu and press their key, so they reach a
queue and are answered; none hangs up in the IVR."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
from sqlalchemy import select

from crm_bridge.access import Actor
from crm_bridge.importexport import import_rows, read_csv
from crm_bridge.store import CrmStore
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.daemon import Daemon
from cti.events import IvrAbandoned, IvrChoiceMade
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from tests.acceptance.harness import no_channels, wait_for
from tests.acceptance.test_ivr_harness import ivr_settings
from tests.checkout import PROJECT

# what make up gives them (scripts/up.sh): agent102 takes support calls only
AGENTS = (("agent101", "101", {"support": 0, "sales": 1}), ("agent102", "102", {"support": 0}))
DEMO_GLOBALS = ("CTI_SIM_OUTBOUND", "CTI_SIM_CUSTOMER_RING", "CTI_SIM_CUSTOMER_TALK")


async def make_up_store(url: str) -> None:
    """The store as make up leaves it: migrated, the demo customers imported."""
    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    try:
        rows = read_csv((PROJECT / "scripts" / "demo" / "customers.csv").read_bytes())
        report = await import_rows(CrmStore(db, "CN"), rows, Actor("demo", "admin"))
        assert not report["errors"], report
    finally:
        await db.dispose()


async def test_demo_callers_go_through_the_menu_and_are_answered(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> None:
    menus = tmp_path / "menus.toml"
    shutil.copy(PROJECT / "ivr" / "menus.example.toml", menus)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await make_up_store(url)
    settings = ivr_settings(asterisk, url, menus).model_dump()
    settings["site"] = {"timezone": "Asia/Shanghai"}
    settings["acd"] = {"asterisk_etc_dir": str(asterisk.etc_dir)}
    daemon = Daemon(Settings(**settings), demo=True)  # every feature, as `cti run --demo`
    choices: list[IvrChoiceMade] = []
    gave_up: list[IvrAbandoned] = []
    daemon.bus.subscribe(IvrChoiceMade, choices.append)
    daemon.bus.subscribe(IvrAbandoned, gave_up.append)
    await daemon.start()
    try:
        await daemon.ami.wait_connected(timeout=15)
        admin = await create_token(daemon.db, "admin", "admin")
        base = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/agents"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
            for name, ext, skills in AGENTS:  # cti acd agent-set, then logged in by up.sh
                body = {"devices": [{"kind": "local", "address": ext}], "skills": skills}
                async with http.put(f"{base}/{name}", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                async with http.post(f"{base}/{name}/status", json={"status": "available"}) as resp:
                    assert resp.status == 200, await resp.text()

        async def rows() -> list[CallRow]:
            async with daemon.db.session() as session:
                return list((await session.execute(select(CallRow))).scalars())

        async def three_answered() -> list[CallRow]:
            done = await rows()
            return done if sum(r.disposition == "answered" for r in done) >= 3 else []

        done = await wait_for(three_answered, timeout=150, what="three demo calls answered")
        summary = [(r.disposition, r.caller_num_raw, r.queue, r.agent, r.wait_s) for r in done]
        assert not [r for r in done if r.disposition == "ivr_abandon"], summary
        assert not gave_up, gave_up
        assert all(r.queue in ("sales", "support") for r in done), summary
        # the callers who heard the menu chose by pressing their key (the recognised VIPs
        # go to sales without it)
        assert choices and all(c.digits in ("1", "2") for c in choices), choices
        answered = [r for r in done if r.disposition == "answered"]
        assert all(r.agent in ("agent101", "agent102") for r in answered), summary
    finally:
        await asyncio.to_thread(asterisk.cli, "channel request hangup all")
        await wait_for(lambda: no_channels(asterisk), timeout=20, what="the demo calls to end")
        await daemon.stop()
        for var in DEMO_GLOBALS:  # the demo's simulated customers: not for the next tests
            await ami.send_action("Setvar", {"Variable": var, "Value": ""})
