"""`cti run` as a process: SIGTERM right after a call ends still leaves its row."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from sqlalchemy import select

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.models import Call as CallRow
from tests.acceptance.harness import add_sim_agent, no_channels, originate_call, wait_for


async def test_sigterm_flushes_the_call_that_just_ended(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> None:
    db_file = tmp_path / "cti.db"
    conf = tmp_path / "cti.toml"
    spec = asterisk.spec
    conf.write_text(
        f'[ami]\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
        f'secret = "{spec.ami_secret}"\n'
        f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{asterisk.log_dir}"\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{db_file}"\n'
        f"[http]\nport = 0\n[agi]\nport = {spec.agi_port}\n"
        '[log]\nformat = "json"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti.cli", "--config", str(conf), "run",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:

        async def connected() -> bool:
            line = await asyncio.wait_for(proc.stderr.readline(), 15)  # type: ignore[union-attr]
            return b"AMI connected" in line

        await wait_for(connected, timeout=20, what="the daemon to connect", every=0)
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "1"})
        await add_sim_agent(ami, "103")
        linkedid = await originate_call(ami, caller="13800138000", hold_s=30)

        await wait_for(
            lambda: no_channels(asterisk), timeout=20, what="the call to end", every=0.05
        )
        proc.send_signal(signal.SIGTERM)  # inside the model's close grace period
        await asyncio.wait_for(proc.wait(), 20)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    db = Database.from_url(f"sqlite+aiosqlite:///{db_file}")
    try:
        async with db.session() as session:
            rows = list(
                (
                    await session.execute(select(CallRow).where(CallRow.linkedid == linkedid))
                ).scalars()
            )
    finally:
        await db.dispose()
    assert len(rows) == 1
    assert rows[0].disposition == "answered" and rows[0].agent == "agent103"
