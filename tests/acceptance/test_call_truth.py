"""Issue #12's acceptance: every call row tells the truth, through every fault.

A scripted mix of SIP calls (SIPp as the carrier's callers, steered by the test with
in-dialog MESSAGEs) goes through the IVR into two queues of this test, answered by two
ACD agents on simulated phones: answered calls (one with in-call hold), short and long
abandons, queue timeouts, a caller who presses the callback key, an IVR hang-up, an IVR
callback request. During the traffic:

1. the daemon's AMI link is cut for 8 s (tests/acceptance/proxy.py);
2. the daemon, a real ``cti run`` process, is killed with SIGKILL and restarted (calls
   start and end while it is away; a call answered before and one timing out after);
3. Asterisk is restarted (calls in progress are ended by it);
4. on PostgreSQL, the database (an instance the test owns) is stopped for 6 s while calls
   end and interactions are written.

The site's time zone is a fixed-offset zone written for the run so that local midnight
falls between the daemon restart and the Asterisk restart: the statistics have calls on
both local days.

Checked afterwards, against Asterisk's own records read here independently (CDR file,
queue_log): every call has exactly one row; each row's disposition, queue, agent, wait,
talk and answered time are what the records say, started_at within 1 s of the CDR; the
calls the script made mean what the script meant (timeouts are ``timeout``, the IVR
callback is ``callback``, ...); each queue's daily figures equal an independent
computation over queue_log; timeouts are lost callers with reason ``timeout``; every call
has its CRM interaction (none lost to the database outage); the wallboard never counted a
timeout as an abandon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from acd import store as acd_store
from acd.models import CallbackRow, LostCallerRow
from acd.queues_conf import FILE_NAME, QueueParams
from crm_bridge.models import Interaction
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from tests.acceptance.harness import (
    free_port,
    no_channels,
    restart_test_asterisk,
    wait_for,
)
from tests.acceptance.proxy import CuttableProxy
from tests.acceptance.traffic import (
    Caller,
    Callers,
    DaemonProcess,
    QueueLog,
    Truth,
    own_postgres,
    read_truth,
    zone_with_midnight_at,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TO_A, TO_B, IVR_WAIT, IVR_CALLBACK = "4001", "4002", "4003", "4004"
ZONE = "Cti/Test"
MENUS = """\
[defaults]
menu = "to_a"

[prompts]
beep = {{ file = "beep" }}

[menus.to_a]
greeting = "beep"
timeout = 1
retries = 0
fallback = {{ action = "queue", target = "{a}" }}

[menus.to_b]
greeting = "beep"
timeout = 1
retries = 0
fallback = {{ action = "queue", target = "{b}" }}

[menus.wait]
greeting = "beep"
timeout = 30
retries = 0
fallback = {{ action = "queue", target = "{a}" }}

[menus.callback]
greeting = "beep"
timeout = 1
retries = 0
fallback = {{ action = "callback", target = "{a}" }}

[numbers."{to_b}"]
menu = "to_b"

[numbers."{wait}"]
menu = "wait"

[numbers."{cb}"]
menu = "callback"
"""


async def set_globals(ami: AmiClient, queue_a: str) -> None:
    """Simulated phones: agents answer after 1 s and never hang up first; the callback's
    customer answers after 1 s and talks 2 s. Calls the IVR cannot route go to queue A."""
    for name, value in (
        ("CTI_DEFAULT_QUEUE", queue_a), ("CTI_SIM_RING", "1"), ("CTI_SIM_TALK", "600"),
        ("CTI_SIM_OUTBOUND", "1"), ("CTI_SIM_CUSTOMER_RING", "1"),
        ("CTI_SIM_CUSTOMER_TALK", "2"),
    ):  # fmt: skip
        await ami.send_action("Setvar", {"Variable": name, "Value": value})


class Wallboard:
    """A supervisor's websocket to the daemon, reconnected after its restarts."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.replace("http://", "ws://")
        self.token = token
        self.frames: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with (
                    aiohttp.ClientSession() as http,
                    http.ws_connect(f"{self.base}/ws", headers=headers) as ws,
                ):
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            data = json.loads(msg.data)
                            if data.get("type") == "wallboard":
                                self.frames.append(data)
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def of(self, queue: str) -> list[dict[str, Any]]:
        return [q["today"] for f in self.frames for q in f["queues"] if q["queue"] == queue]


@contextlib.contextmanager
def store_for(kind: str, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(database URL, the PostgreSQL instance or None)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", None
        return
    with own_postgres() as pg:
        yield pg.url, pg


@pytest.fixture
async def queues(ami: AmiClient, asterisk: ChrootAsterisk) -> AsyncIterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    a, b = f"cta{tag}", f"ctb{tag}"
    try:
        yield a, b
    finally:
        with contextlib.suppress(Exception):
            await ami.wait_connected(timeout=30)
            for name, value in (("CTI_DEFAULT_QUEUE", "support"), ("CTI_SIM_OUTBOUND", "")):
                await ami.send_action("Setvar", {"Variable": name, "Value": value})
            (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
            await ami.send_action("QueueReload", {"Parameters": "yes"})
            await asyncio.to_thread(asterisk.cli, "channel request hangup all")


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_every_call_row_tells_the_truth_through_every_fault(
    kind: str,
    asterisk: ChrootAsterisk,
    ami: AmiClient,
    proxy: CuttableProxy,
    queues: tuple[str, str],
    tmp_path: Path,
) -> None:
    qa, qb = queues
    qlog = QueueLog(asterisk.queue_log)
    with store_for(kind, tmp_path) as (db_url, pg):
        await asyncio.to_thread(upgrade, db_url)
        db = Database.from_url(db_url)
        try:
            await run_and_check(kind, asterisk, ami, proxy, qa, qb, qlog, db, db_url, pg, tmp_path)
        finally:
            await db.dispose()


async def seed(db: Database, qa: str, qb: str) -> str:
    """Queues, two logged-in agents on simulated phones, a supervisor token."""
    await acd_store.put_queue(
        db, QueueParams(qa, strategy="linear", service_level_s=10, callback_key="1")
    )
    await acd_store.put_queue(db, QueueParams(qb, max_wait_s=8, service_level_s=10))
    now = datetime.now(UTC)
    for name, ext in (("ct-a1", "3101"), ("ct-a2", "3102")):
        await acd_store.put_agent(db, name, name, [("local", ext)], {qa: 0})
        await acd_store.record_status(
            db, name, "available", "", f"Local/{ext}@cti-sim-agents/n", now, "test"
        )
    return await create_token(db, "ct-supervisor", "supervisor")


def write_config(
    path: Path, asterisk: ChrootAsterisk, proxy: CuttableProxy, db_url: str, http_port: int,
    menus: Path,
) -> None:  # fmt: skip
    spec = asterisk.spec
    path.write_text(
        f'[site]\ntimezone = "{ZONE}"\n'
        f'[ami]\nport = {proxy.port}\nusername = "{spec.ami_user}"\nsecret = "{spec.ami_secret}"\n'
        "ping_interval = 1.0\naction_timeout = 3.0\nreconnect_max_s = 0.5\n"
        f'[asterisk]\ninstance = "{spec.name}"\nlog_dir = "{asterisk.log_dir}"\n'
        f'etc_dir = "{asterisk.etc_dir}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f"[http]\nport = {http_port}\n[agi]\nport = {spec.agi_port}\n"
        f'[ivr]\nmenus = "{menus}"\nprompt_dir = "{asterisk.base / "lib" / "sounds" / "cti"}"\n'
        f'prompt_dir_asterisk = "{asterisk.inner}/lib/sounds/cti"\n'
        "[acd]\ncallback_retry_s = 2\n[stats]\ntail_interval_s = 1\n"
    )


async def run_and_check(
    kind: str, asterisk: ChrootAsterisk, ami: AmiClient, proxy: CuttableProxy, qa: str,
    qb: str, qlog: QueueLog, db: Database, db_url: str, pg: Any, tmp_path: Path,
) -> None:  # fmt: skip
    token = await seed(db, qa, qb)
    tzdir = tmp_path / "zoneinfo"
    http_port = free_port()
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS.format(a=qa, b=qb, to_b=TO_B, wait=IVR_WAIT, cb=IVR_CALLBACK))
    # local midnight ~55 s from now: after the daemon restart, before the Asterisk restart
    midnight = datetime.now(UTC) + timedelta(seconds=55)
    offset = zone_with_midnight_at(midnight, tzdir, ZONE)
    config = tmp_path / "cti.toml"
    write_config(config, asterisk, proxy, db_url, http_port, menus)
    env = dict(
        os.environ,
        PYTHONTZPATH=f"{tzdir}{os.pathsep}/usr/share/zoneinfo",
    )
    daemon = DaemonProcess(config, tmp_path / "cti.log", env, http_port)
    board = Wallboard(daemon.base, token)
    callers = Callers(ami, asterisk.spec.sip_port, tmp_path)
    try:
        await set_globals(ami, qa)
        await daemon.start()
        await members_present(ami, qa, 2)
        board.start()
        started = datetime.now(UTC)
        await traffic(kind, asterisk, ami, proxy, qa, qlog, daemon, callers, pg, midnight)
        await settle(asterisk, db)
        await check(db, asterisk, callers, qa, qb, started, offset, daemon, token, board)
    except BaseException:
        print("daemon log tail:\n" + daemon.tail(120))
        raise
    finally:
        callers.close()
        await callers.stop_all()
        await board.close()
        await daemon.stop()


async def members_present(ami: AmiClient, queue: str, n: int) -> None:
    async def present() -> bool:
        _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
        return sum(1 for i in items if i.get("Event") == "QueueMember") >= n

    await wait_for(present, timeout=30, what=f"{n} agents in {queue}")


# --- the traffic ---------------------------------------------------------------------------


async def traffic(
    kind: str, asterisk: ChrootAsterisk, ami: AmiClient, proxy: CuttableProxy, qa: str,
    qlog: QueueLog, daemon: DaemonProcess, callers: Callers, pg: Any, midnight: datetime,
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks: list[asyncio.Task[None]] = []  # calls the script means to end as scripted
    touched: list[asyncio.Task[None]] = []  # calls a fault may end early

    async def at(s: float) -> None:
        await asyncio.sleep(max(0.0, t0 + s - loop.time()))

    def run(
        label: str, dnis: str, steps: list[str], expect: str | None,
        then: Callable[[Caller], Awaitable[None]],
    ) -> None:  # fmt: skip
        async def go() -> None:
            c = await callers.place(label, dnis, steps, expect)
            try:
                await then(c)
            except AssertionError:
                if expect is not None:  # a call no fault touches must go as scripted
                    raise

        (tasks if expect is not None else touched).append(asyncio.create_task(go(), name=label))

    def answered(talk: float, hold: tuple[float, float] | None = None) -> Callable[
        [Caller], Awaitable[None]
    ]:  # fmt: skip
        async def then(c: Caller) -> None:
            await qlog.wait(c.uniqueid, ("CONNECT",), timeout=120)
            spent = 0.0
            if hold is not None:
                await asyncio.sleep(hold[0])
                await callers.send(c, "hold")
                await asyncio.sleep(hold[1])
                await callers.send(c, "resume")
                spent = hold[0] + hold[1]
            await asyncio.sleep(talk - spent)
            await callers.send(c, "bye")

        return then

    def after_queued(seconds: float, command: str) -> Callable[[Caller], Awaitable[None]]:
        async def then(c: Caller) -> None:
            await qlog.wait(c.uniqueid, ("ENTERQUEUE",), timeout=30)
            await asyncio.sleep(seconds)
            await callers.send(c, command)

        return then

    def after(seconds: float) -> Callable[[Caller], Awaitable[None]]:
        async def then(c: Caller) -> None:
            await asyncio.sleep(seconds)
            await callers.send(c, "bye")

        return then

    async def asterisk_ends(c: Caller) -> None:
        pass  # Asterisk hangs up (queue timeout, IVR callback, after the callback key)

    # phase 1: both agents busy; callers wait, abandon, time out, ask for callbacks
    run("A1", TO_A, ["hold", "resume", "bye"], "answered", answered(26, (4, 3)))
    run("A2", TO_A, ["bye"], "answered", answered(22))
    await at(3)
    run("X1", TO_A, ["bye"], "abandoned", after_queued(2, "bye"))  # a short abandon
    await at(4)
    run("T1", TO_B, ["bye"], "timeout", asterisk_ends)
    await at(5)
    run("K1", TO_A, ["key1", "bye"], "callback", after_queued(3, "key1"))
    await at(6)
    run("I1", IVR_WAIT, ["bye"], "ivr_abandon", after(2.5))
    await at(7)
    run("C1", IVR_CALLBACK, ["bye"], "callback", asterisk_ends)
    await at(9)
    run("X2", TO_A, ["bye"], "abandoned", after_queued(8, "bye"))
    # fault 1: the AMI link is cut; calls enter, time out, abandon and end meanwhile
    await at(11)
    proxy.cut()
    await at(12)
    run("T2", TO_B, ["bye"], "timeout", asterisk_ends)
    await at(13)
    run("X3", TO_A, ["bye"], "abandoned", after_queued(3, "bye"))
    await at(19)
    proxy.restore()
    # fault 2: the daemon is killed; a call answered before it ends after the restart, a
    # queue timeout falls after the restart, calls come and go while it is away
    await at(21)
    run("A3", TO_A, ["bye"], "answered", answered(16))
    await at(24)
    run("T3", TO_B, ["bye"], "timeout", asterisk_ends)
    await at(27)
    run("T4", TO_B, ["bye"], "timeout", asterisk_ends)
    await at(30)
    # T3 and T4 are in queue B before the IVR goes away (under load the menu may take
    # longer: killed mid-menu, a call falls to the default queue and is answered)
    await queued(callers, qlog, "T3", "T4")
    await daemon.kill()
    await at(31)
    run("A4", TO_A, ["bye"], None, answered(8))  # the IVR is away: the default queue
    await at(32)
    run("X4", TO_A, ["bye"], None, after_queued(1.5, "bye"))
    await at(34)
    await daemon.start()
    # local midnight passes; then calls that Asterisk's restart ends
    await asyncio.sleep(max(0.0, (midnight - datetime.now(UTC)).total_seconds() + 1))
    for task in tasks:  # the calls meant to end as scripted are over: now Asterisk's
        await task  # restart ends only the calls placed for it
    t1 = loop.time() - t0
    run("A5", TO_A, ["bye"], None, answered(60))
    await at(t1 + 1)
    run("A6", TO_A, ["bye"], None, answered(60))
    await at(t1 + 3)
    run("X5", TO_A, ["bye"], None, after_queued(60, "bye"))
    await at(t1 + 8)
    await asyncio.to_thread(restart_test_asterisk, asterisk)  # fault 3
    await ami.wait_connected(timeout=30)
    await set_globals(ami, qa)
    await members_present(ami, qa, 2)  # the ACD restored its agents on reconnect
    # after the restart: answered (one with hold), a short abandon, a timeout, an IVR
    # hang-up; on PostgreSQL the database goes away while they end (fault 4)
    t2 = loop.time() - t0
    run("A7", TO_A, ["hold", "resume", "bye"], "answered", answered(12, (3, 3)))
    run("A8", TO_A, ["bye"], "answered", answered(10))
    await at(t2 + 2)
    run("X6", TO_A, ["bye"], "abandoned", after_queued(1.5, "bye"))
    run("T6", TO_B, ["bye"], "timeout", asterisk_ends)
    run("I2", IVR_WAIT, ["bye"], "ivr_abandon", after(2.0))
    if pg is not None:
        await at(t2 + 8)
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(6)
        await asyncio.to_thread(pg.start)
    for task in tasks:
        await task
    if touched:  # once their calls are over (Asterisk's restart ended most), nothing left to do
        await calls_over([c for c in callers.calls if c.expect is None], timeout=30)
        for task in touched:
            task.cancel()
        await asyncio.gather(*touched, return_exceptions=True)


async def queued(callers: Callers, qlog: QueueLog, *labels: str) -> None:
    """Until the calls of ``labels`` (placed) have entered their queue."""

    async def placed() -> list[Caller]:
        calls = [c for c in callers.calls if c.label in labels and c.uniqueid]
        return calls if len(calls) == len(labels) else []

    for c in await wait_for(placed, timeout=30, what=f"{', '.join(labels)} placed"):
        await qlog.wait(c.uniqueid, ("ENTERQUEUE",), timeout=30)


async def calls_over(calls: list[Caller], timeout: float) -> None:
    """Until every one of ``calls`` is over (its SIPp has exited), at most ``timeout`` s.
    (Their scripts may still be sleeping towards a step: a call Asterisk ended has none.)"""
    procs = [c.proc for c in calls if c.proc is not None]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), timeout)


async def settle(asterisk: ChrootAsterisk, db: Database) -> None:
    """Every call over: no channel left and every callback request closed."""

    async def quiet() -> bool:
        if not await no_channels(asterisk):
            return False
        async with db.session() as s:
            rows = (await s.scalars(select(CallbackRow))).all()
        return all(r.status in ("done", "unreached") for r in rows)

    await wait_for(quiet, timeout=120, what="every call and callback to end", every=0.5)


# --- the checks ----------------------------------------------------------------------------


async def rows_by_linkedid(db: Database) -> dict[str, list[CallRow]]:
    async with db.session() as s:
        rows = (await s.scalars(select(CallRow))).all()
    out: dict[str, list[CallRow]] = {}
    for r in rows:
        out.setdefault(r.linkedid, []).append(r)
    return out


async def check(
    db: Database, asterisk: ChrootAsterisk, callers: Callers, qa: str, qb: str,
    started: datetime, offset: int, daemon: DaemonProcess, token: str, board: Wallboard,
) -> None:  # fmt: skip
    truth = read_truth(asterisk.cdr_csv, asterisk.queue_log, started.timestamp() - 1)
    mine = {c.uniqueid for c in callers.calls}
    assert mine <= set(truth), "every SIP call placed is in the CDR"

    async def all_written() -> bool:
        rows = await rows_by_linkedid(db)
        return set(truth) <= set(rows)

    await wait_for(all_written, timeout=60, what="a row for every call in the CDR")
    await asyncio.sleep(3)  # anything that would write twice has had its chance
    rows = await rows_by_linkedid(db)
    problems: list[str] = []
    for linkedid, t in sorted(truth.items()):
        got = rows.get(linkedid, [])
        if len(got) != 1:
            problems.append(f"{linkedid}: {len(got)} rows")
            continue
        problems += row_problems(got[0], t)
    for c in callers.calls:
        if c.expect is not None:
            row = rows[c.uniqueid][0]
            if row.disposition != c.expect:
                problems.append(f"{c.label} ({c.uniqueid}): {row.disposition}, meant {c.expect}")
    assert not problems, "\n".join(problems)
    summary: dict[str, int] = {}
    for r in rows.values():
        key = f"{r[0].disposition}/{r[0].source}"
        summary[key] = summary.get(key, 0) + 1
    print(f"{len(truth)} calls checked against the records:", dict(sorted(summary.items())))
    assert any(k.endswith("/cdr") for k in summary), "some rows came from Asterisk's records"
    await check_statistics(daemon, token, asterisk, qa, qb, started, offset)
    await check_lost_and_interactions(db, callers, truth, rows)
    timeouts_board = board.of(qb)
    assert timeouts_board, "the wallboard showed the timeout queue"
    assert all(t["abandoned"] == 0 for t in timeouts_board), "a timeout shown as an abandon"
    assert max(t["timed_out_or_exited"] for t in timeouts_board) >= 1


def row_problems(row: CallRow, t: Truth) -> list[str]:
    out: list[str] = []
    tag = f"{t.linkedid}"
    if abs(row.started_at.timestamp() - t.started_at) > 1.0:
        out.append(f"{tag}: started_at {row.started_at} vs CDR {t.started_at}")
    exp = t.expected()
    if not exp:
        return out
    for key in ("disposition", "queue"):
        if getattr(row, key) != exp[key]:
            out.append(f"{tag}: {key} {getattr(row, key)!r}, records say {exp[key]!r}")
    if "agent" in exp and row.agent != exp["agent"]:
        out.append(f"{tag}: agent {row.agent!r}, records say {exp['agent']!r}")
    if exp.get("wait_s") is not None and (
        row.wait_s is None or abs(row.wait_s - exp["wait_s"]) > 1.0
    ):
        out.append(f"{tag}: wait {row.wait_s}, records say {exp['wait_s']}")
    if exp.get("talk_s") is not None and (
        row.talk_s is None or abs(row.talk_s - exp["talk_s"]) > 1.0
    ):
        out.append(f"{tag}: talk {row.talk_s}, records say {exp['talk_s']}")
    if exp.get("answered_at") is not None and (
        row.answered_at is None or abs(row.answered_at.timestamp() - exp["answered_at"]) > 1.5
    ):
        out.append(f"{tag}: answered_at {row.answered_at}, CONNECT at {exp['answered_at']}")
    return out


def independent_daily(
    queue_log: Path, queues: set[str], since: float, offset: int
) -> dict[tuple[str, str], dict[str, float]]:
    """Per (queue, local day of entry): counts and waits from queue_log lines alone."""
    lines = QueueLog(queue_log).lines()
    entered: dict[tuple[str, str], str] = {}  # (callid, queue) -> local day
    out: dict[tuple[str, str], dict[str, float]] = {}
    for p in sorted(lines, key=lambda p: int(p[0])):
        if p[2] not in queues or int(p[0]) < since:
            continue
        key = (p[1], p[2])
        if p[4] == "ENTERQUEUE":
            day = datetime.fromtimestamp(int(p[0]) + offset, UTC).date().isoformat()
            entered[key] = day
        day_of = entered.get(key)
        if day_of is None:
            continue
        f = out.setdefault(
            (p[2], day_of),
            {"offered": 0, "answered": 0, "abandoned": 0, "short_abandoned": 0,
             "timed_out": 0, "exit_key": 0, "handled": 0, "answered_wait": 0.0},
        )  # fmt: skip
        if p[4] == "ENTERQUEUE":
            f["offered"] += 1
        elif p[4] == "CONNECT":
            f["answered"] += 1
            f["answered_wait"] += float(p[5])
        elif p[4] in ("COMPLETEAGENT", "COMPLETECALLER"):
            f["handled"] += 1
        elif p[4] == "ABANDON":
            f["abandoned"] += 1
            f["short_abandoned"] += float(p[7]) < 5
        elif p[4] == "EXITWITHTIMEOUT":
            f["timed_out"] += 1
        elif p[4] == "EXITWITHKEY":
            f["exit_key"] += 1
    return out


async def check_statistics(
    daemon: DaemonProcess, token: str, asterisk: ChrootAsterisk, qa: str, qb: str,
    started: datetime, offset: int,
) -> None:  # fmt: skip
    expected = independent_daily(asterisk.queue_log, {qa, qb}, started.timestamp() - 1, offset)
    days = sorted({d for _, d in expected})
    assert len(days) == 2, f"the traffic spans local midnight: {days}"
    url = f"{daemon.base}/api/v1/stats/daily?from={days[0]}&to={days[-1]}"
    headers = {"Authorization": f"Bearer {token}"}

    async def report() -> dict[tuple[str, str], dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            assert resp.status == 200
            body = await resp.json()
        got = {(r["queue"], r["day"]): r for r in body["rows"] if r["queue"] in (qa, qb)}
        ok = all(
            got.get(k, {}).get("offered") == v["offered"]
            and got.get(k, {}).get("handled") == v["handled"]
            for k, v in expected.items()
        )
        return got if ok else {}

    got = await wait_for(report, timeout=30, what="the statistics to catch up")
    for key, exp in expected.items():
        row = got[key]
        for name in ("offered", "answered", "abandoned", "short_abandoned", "timed_out",
                     "exit_key", "handled"):  # fmt: skip
            assert row[name] == exp[name], (key, name, row[name], exp[name])
        if exp["answered"]:
            asa = exp["answered_wait"] / exp["answered"]
            assert row["asa_s"] == pytest.approx(asa), (key, "asa_s")


async def check_lost_and_interactions(
    db: Database, callers: Callers, truth: dict[str, Truth], rows: dict[str, list[CallRow]]
) -> None:
    async with db.session() as s:
        lost = {r.linkedid: r for r in (await s.scalars(select(LostCallerRow))).all()}
    for c in callers.calls:
        if c.expect in ("timeout", "abandoned"):
            assert c.uniqueid in lost, f"{c.label} is a lost caller"
            assert lost[c.uniqueid].reason == c.expect, (c.label, lost[c.uniqueid].reason)

    async def every_interaction() -> dict[str, Interaction]:
        async with db.session() as s:
            found = {i.linkedid: i for i in (await s.scalars(select(Interaction))).all()}
        want = set(truth)
        done = {k for k, i in found.items() if i.ended_at is not None}
        return found if want <= done else {}

    interactions = await wait_for(every_interaction, timeout=60, what="every call's interaction")
    for linkedid in truth:
        assert interactions[linkedid].outcome == rows[linkedid][0].disposition, linkedid
