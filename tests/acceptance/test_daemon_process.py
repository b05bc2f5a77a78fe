"""`cti run` as a process: SIGTERM right after a call ends still leaves its row; a
SIGKILL during the very first calls of a new store loses none of them."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from sqlalchemy import select

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import RECOVERY_MARGIN
from cti.store.db import Database
from cti.store.models import Call as CallRow
from tests.acceptance.harness import add_sim_agent, no_channels, originate_call, wait_for
from tests.checkout import checkout_env


def write_conf(asterisk: ChrootAsterisk, tmp_path: Path) -> tuple[Path, str]:
    """The daemon's configuration for the session Asterisk, with a new SQLite store."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    conf = tmp_path / "cti.toml"
    spec = asterisk.spec
    conf.write_text(
        f'[ami]\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
        f'secret = "{spec.ami_secret}"\n'
        f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{asterisk.log_dir}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f"[http]\nport = 0\n[agi]\nport = {spec.agi_port}\n"
        '[log]\nformat = "json"\n'
    )
    return conf, db_url


async def start_cti(conf: Path) -> asyncio.subprocess.Process:
    """``cti run``, once its first AMI connection is synced (recovery done)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti.cli", "--config", str(conf), "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=checkout_env(),
    )  # fmt: skip
    assert proc.stderr is not None
    try:

        async def connected() -> bool:
            line = await asyncio.wait_for(proc.stderr.readline(), 15)  # type: ignore[union-attr]
            return b"AMI connected" in line

        await wait_for(connected, timeout=20, what="the daemon to connect", every=0)
    except BaseException:
        await stop_cti(proc)
        raise
    return proc


async def stop_cti(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def stored_rows(db_url: str) -> list[CallRow]:
    db = Database.from_url(db_url)
    try:
        async with db.session() as session:
            return list((await session.execute(select(CallRow))).scalars())
    finally:
        await db.dispose()


async def test_sigterm_flushes_the_call_that_just_ended(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> None:
    conf, db_url = write_conf(asterisk, tmp_path)
    proc = await start_cti(conf)
    try:
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "1"})
        await add_sim_agent(ami, "103")
        linkedid = await originate_call(ami, caller="13800138000", hold_s=30)

        await wait_for(
            lambda: no_channels(asterisk), timeout=20, what="the call to end", every=0.05
        )
        proc.send_signal(signal.SIGTERM)  # inside the model's close grace period
        await asyncio.wait_for(proc.wait(), 20)
        assert proc.returncode == 0
        # the daemon's log from its connect on (shown when the row is missing)
        stopping = (await proc.stderr.read()).decode(errors="replace")  # type: ignore[union-attr]
    finally:
        await stop_cti(proc)

    rows = [r for r in await stored_rows(db_url) if r.linkedid == linkedid]
    assert len(rows) == 1, stopping
    assert rows[0].disposition == "answered" and rows[0].agent == "agent103"


async def test_sigkill_during_the_first_call_of_a_new_store_loses_nothing(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> None:
    """No call row yet: the window of the restart is from when the daemon first watched
    the server (cti.calls.watchmark), not nothing, and not Asterisk's whole CDR."""
    await add_sim_agent(ami, "103")
    # a call before any daemon watched this server: never recorded
    unwatched = await originate_call(ami, caller="13900000001", hold_s=1)
    await wait_for(lambda: no_channels(asterisk), timeout=15, what="the unwatched call to end")
    await asyncio.sleep(RECOVERY_MARGIN.total_seconds())  # ended before any window opens

    conf, db_url = write_conf(asterisk, tmp_path)
    proc = await start_cti(conf)
    try:
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": "1"})
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "3"})
        linkedid = await originate_call(ami, caller="13800138000", hold_s=30)

        async def answered() -> bool:
            out = await asyncio.to_thread(asterisk.cli, "core show channels concise")
            return re.search(r"^Local/103@cti-sim-agents[^!]*!.*!Up!", out, re.M) is not None

        await wait_for(answered, timeout=15, what="the agent to answer", every=0.05)
        proc.kill()
        await proc.wait()
        assert not await no_channels(asterisk), "the call ended before the kill"
        await wait_for(lambda: no_channels(asterisk), timeout=15, what="the call to end")
        assert await stored_rows(db_url) == [], "the killed daemon wrote the call"

        proc = await start_cti(conf)  # recovery is done when it says "AMI connected"

        async def recorded() -> list[CallRow]:
            return await stored_rows(db_url)

        await wait_for(recorded, timeout=15, what="the recovered call's row")
        await asyncio.sleep(1.5)  # anything that would write it twice has had its chance
    finally:
        await stop_cti(proc)

    rows = await stored_rows(db_url)
    assert [r.linkedid for r in rows] == [linkedid], (unwatched, rows)
    row = rows[0]
    assert row.source == "cdr"
    assert row.disposition == "answered"
    assert row.agent == "agent103"
    assert row.queue == "support"
    assert row.caller_num_e164 == "+8613800138000"
    assert row.dnis == "4008001234"
    assert row.answered_at is not None and row.answered_at < row.ended_at
    assert row.talk_s is not None and row.talk_s >= 2
