"""`cti run` as a process: SIGTERM right after a call ends still leaves its row; a
SIGKILL during the very first calls of a new store loses none of them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from sqlalchemy import select

from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.config import DaemonConfig
from cti.daemon import RECOVERY_MARGIN
from cti.store.db import Database
from cti.store.models import Call as CallRow
from tests.acceptance.harness import add_sim_agent, no_channels, originate_call, wait_for
from tests.checkout import checkout_env

#: bounds for a loaded machine (load 15 on 2 cores): a Python process's start, and a stop
#: (the recorder's drain alone may take RECORDER_GRACE_S)
STARTUP_S = 60.0
STOP_S = 60.0


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
    """``cti run``, once its first AMI connection is synced (recovery done). A loaded
    machine can take many seconds to start a Python process: the bound is generous."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti.cli", "--config", str(conf), "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=checkout_env(),
    )  # fmt: skip
    assert proc.stderr is not None
    try:

        async def connected() -> None:
            while b"AMI connected" not in await proc.stderr.readline():  # type: ignore[union-attr]
                if proc.stderr.at_eof():  # type: ignore[union-attr]
                    raise AssertionError("the daemon exited before it connected")

        await asyncio.wait_for(connected(), STARTUP_S)
    except BaseException:
        await stop_cti(proc)
        raise
    return proc


def nice_of(pid: int) -> int:
    """A process's niceness (its main thread's: /proc/<pid>/stat's 19th field)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[16])


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


class CallEnd:
    """The test's view of when Asterisk has sent the last events of a queue call: every
    channel of it hung up (a Hangup per Newchannel) and app_queue's AgentComplete, in any
    of its forms (without the caller's fields, or without either channel's: see
    cti.calls.model._AGENT_EVENTS). Its channels leaving ``core show channels`` is
    earlier: Asterisk unlinks a channel before the snapshot that makes its Hangup event."""

    EVENTS = ("Newchannel", "Hangup", "AgentComplete")

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.linkedid = ""
        self.seen: list[Message] = []  # its events may come before Originate's response

    def on_event(self, msg: Message) -> None:
        self.seen.append(msg)

    async def over(self) -> bool:
        lid = self.linkedid
        mine = [m for m in self.seen if m.get("Linkedid") == lid]
        legs = {m.get("Uniqueid") for m in mine if m.event == "Newchannel"}
        gone = {m.get("Uniqueid") for m in mine if m.event == "Hangup"}
        completed = any(
            m.event == "AgentComplete"
            and (
                lid in (m.get("Linkedid"), m.get("DestLinkedid"))
                or (not m.get("Linkedid") and not m.get("DestLinkedid")
                    and m.get("Interface") == self.interface)
            )
            for m in self.seen
        )  # fmt: skip
        return completed and bool(legs) and legs <= gone


async def test_sigterm_flushes_the_call_that_just_ended(
    asterisk: ChrootAsterisk, ami: AmiClient, tmp_path: Path
) -> None:
    """SIGTERM as soon as Asterisk has sent the answered call's last events, inside the
    model's close grace: the stop finalises the call and its row is written."""
    conf, db_url = write_conf(asterisk, tmp_path)
    proc = await start_cti(conf)
    # its CPU priority, [daemon] nice (cti.priority): root may lower it
    assert nice_of(proc.pid) == (
        DaemonConfig().nice if os.geteuid() == 0 else os.getpriority(os.PRIO_PROCESS, 0)
    )
    end = CallEnd(await add_sim_agent(ami, "103"))
    ami.add_event_handler(end.on_event, events=CallEnd.EVENTS)
    try:
        await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "1"})
        end.linkedid = await originate_call(ami, caller="13800138000", hold_s=30)
        await wait_for(end.over, timeout=30, what="the call's last events", every=0.02)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), STOP_S)
        assert proc.returncode == 0
    finally:
        ami.remove_event_handler(end.on_event)
        await stop_cti(proc)
        # the daemon's log from its connect on: pytest shows it when the test failed
        print((await proc.stderr.read()).decode(errors="replace"))  # type: ignore[union-attr]

    rows = [r for r in await stored_rows(db_url) if r.linkedid == end.linkedid]
    assert len(rows) == 1
    assert rows[0].disposition == "answered" and rows[0].agent == "agent103"
    assert rows[0].source == "ami" and rows[0].talk_s is not None  # from its events


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
