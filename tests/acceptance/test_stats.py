"""Statistics against the real Asterisk: a scripted mix of queue calls (answered within and
outside T at known ring times, abandoned early and late, a queue timeout) and an IVR
hang-up. Every figure must equal (1) the value computed by hand for the script and (2) an
independent computation over the instance's own queue_log written here; then the same with
the daemon stopped in the middle of the script (catch-up on restart, then `cti stats
rebuild`). The wallboard must count the calls from AMI alone (queue_log tail disabled).

In-call hold is not scripted here: Local channels cannot be put on hold (no Hold/Unhold
without a SIP re-INVITE). A SIPp caller holds a real queue call in
tests/acceptance/test_hold_transfer.py, which checks hold count, time and AHT.

Durations come from Asterisk's whole-second clock (queue_log holdtime = time() - start), so
the hand-computed waits and talk times are checked within 1-2 s, counts and every
classification (within T, short abandon) exactly (the script keeps clear of thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acd import store as acd_store
from acd.feature import AcdFeature
from acd.queues_conf import FILE_NAME, QueueParams
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.config import Settings
from cti.daemon import Daemon
from cti.events import IvrAbandoned
from cti.store.tokens import create_token
from ivr.feature import IvrFeature
from stats import cli as stats_cli
from stats.feature import StatsFeature
from stats.service import StatsService
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import add_sim_agent, wait_for

T_S = 4  # the queue's service-level threshold for this test
RING_FAST, RING_SLOW, TALK = 1, 7, 2

MENUS = """\
[defaults]
menu = "main"

[prompts]
beep = {{ file = "beep" }}

[menus.main]
greeting = "beep"
timeout = 1
retries = 0
fallback = {{ action = "queue", target = "{queue}" }}
"""


@dataclass
class Script:
    queue: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    ivr_linkedids: list[str] = field(default_factory=list)


class QueueEvents:
    """Waits for the script's steps in Asterisk's own queue_log (not AMI: a test-side AMI
    connection cut under load would lose events; the log loses nothing)."""

    def __init__(self, queue_log: Path, queue: str) -> None:
        self.queue_log = queue_log
        self.queue = queue

    def close(self) -> None:
        pass

    def _lines(self, linkedid: str, events: tuple[str, ...]) -> list[list[str]]:
        out = []
        for line in self.queue_log.read_text().splitlines():
            p = line.split("|")
            if len(p) >= 5 and p[1] == linkedid + "-2" and p[2] == self.queue and p[4] in events:
                out.append(p)
        return out

    async def wait(self, events: tuple[str, ...], linkedid: str, timeout: float = 30) -> None:
        async def seen() -> list[list[str]]:
            return await asyncio.to_thread(self._lines, linkedid, events)

        await wait_for(seen, timeout=timeout, what=f"{'/'.join(events)} of {linkedid}")


async def channel_of(ami: AmiClient, uniqueid: str) -> str:
    _, items = await ami.send_list_action("CoreShowChannels")
    return next((i["Channel"] for i in items if i.get("Uniqueid") == uniqueid), "")


async def caller(ami: AmiClient, hold_s: float = 60) -> str:
    linkedid = f"s-{secrets.token_hex(6)}"
    await ami.send_action(
        "Originate",
        {
            "Channel": "Local/4008001234@cti-inbound", "Context": "cti-sim-caller",
            "Exten": "s", "Priority": "1", "CallerID": "13700137000",
            "Variable": [f"CTI_SIM_HOLD={hold_s}"], "Async": "true",
            "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
        },
    )  # fmt: skip
    return linkedid


async def setvar(ami: AmiClient, name: str, value: str) -> None:
    await ami.send_action("Setvar", {"Variable": name, "Value": value})


async def answered_call(ami: AmiClient, ev: QueueEvents, ring: int) -> None:
    await setvar(ami, "CTI_SIM_RING", str(ring))
    linkedid = await caller(ami)
    await ev.wait(("COMPLETEAGENT", "COMPLETECALLER"), linkedid, timeout=40)


async def abandoned_call(
    ami: AmiClient, ev: QueueEvents, after_s: float,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> None:  # fmt: skip
    linkedid = await caller(ami)
    await ev.wait(("ENTERQUEUE",), linkedid)
    started = asyncio.get_running_loop().time()
    if meanwhile is not None:
        await meanwhile()
    await asyncio.sleep(max(0.0, after_s - (asyncio.get_running_loop().time() - started)))
    channel = await channel_of(ami, linkedid + "-2")
    assert channel, "the waiting caller's channel"
    await ami.send_action("Hangup", {"Channel": channel})
    await ev.wait(("ABANDON",), linkedid)


async def timed_out_call(ami: AmiClient, ev: QueueEvents, max_wait: int) -> None:
    # the queue's max wait: CTI_MAXWAIT_<queue> (the ACD sets it), else CTI_QUEUE_MAXWAIT
    names = ("CTI_QUEUE_MAXWAIT", f"CTI_MAXWAIT_{ev.queue}")
    for name in names:
        await setvar(ami, name, str(max_wait))
    try:
        linkedid = await caller(ami)
        await ev.wait(("ENTERQUEUE",), linkedid)
    finally:
        for name in names:
            await setvar(ami, name, "300")
    await ev.wait(("EXITWITHTIMEOUT",), linkedid, timeout=max_wait + 20)


def during_the_long_abandon(
    ami: AmiClient, ev: QueueEvents, daemon: Daemon | None = None, script: Script | None = None
) -> list[asyncio.Task[None]]:
    """The queue timeout (and with a daemon, the IVR hang-up), started once the 7 s
    abandon's caller waits in the queue (it keeps the maximum wait it entered with): the
    script's figures are the same, the test ~5 s shorter."""
    tasks = [asyncio.create_task(timed_out_call(ami, ev, 3))]
    if daemon is not None and script is not None:
        tasks.append(asyncio.create_task(ivr_hangup(daemon, ami, script)))
    return tasks


# --- expected: by hand, and from queue_log by an independent reading -------------------


def hand_expected() -> dict[str, Any]:
    """The script: answered at ~RING_FAST (within T) and ~RING_SLOW (outside), abandoned
    after ~1.5 s (short) and ~7 s, one queue timeout after 3 s, one IVR hang-up."""
    return {
        "offered": 5, "answered": 2, "abandoned": 2, "short_abandoned": 1,
        "timed_out": 1, "timed_out_or_exited": 1, "refused": 0, "handled": 2,
        "call_loss_rate": 3 / 5, "abandon_rate": (2 - 1) / (5 - 1),
        "service_level": 1 / 2, "service_level_inclusive": 1 / (5 - 1),
    }  # fmt: skip


def from_queue_log(path: Path, queue: str, short_s: float, t_s: float) -> dict[str, Any]:
    """Deliberately simple and separate from stats: count the queue's lines."""
    waits_answered: list[float] = []
    waits_abandoned: list[float] = []
    talk: list[float] = []
    offered = timeouts = 0
    waits_all: list[float] = []
    for line in path.read_text().splitlines():
        p = line.split("|")
        if len(p) < 5 or p[2] != queue:
            continue
        ev, d = p[4], p[5:]
        if ev == "ENTERQUEUE":
            offered += 1
        elif ev == "CONNECT":
            waits_answered.append(float(d[0]))
            waits_all.append(float(d[0]))
        elif ev in ("COMPLETEAGENT", "COMPLETECALLER"):
            talk.append(float(d[1]))
        elif ev == "ABANDON":
            waits_abandoned.append(float(d[2]))
            waits_all.append(float(d[2]))
        elif ev == "EXITWITHTIMEOUT":
            timeouts += 1
            waits_all.append(float(d[2]))
    answered, abandoned = len(waits_answered), len(waits_abandoned)
    short = sum(1 for w in waits_abandoned if w < short_s)
    within = sum(1 for w in waits_answered if w <= t_s)
    return {
        "offered": offered, "answered": answered, "abandoned": abandoned,
        "short_abandoned": short, "timed_out": timeouts, "handled": len(talk),
        "call_loss_rate": (offered - answered) / offered,
        "abandon_rate": (abandoned - short) / (offered - short),
        "service_level": within / answered,
        "service_level_inclusive": within / (offered - short),
        "asa_s": sum(waits_answered) / answered,
        "avg_abandon_wait_s": sum(waits_abandoned) / abandoned,
        "avg_wait_s": sum(waits_all) / offered,
        "max_wait_s": max(waits_all),
        "aht_s": sum(talk) / len(talk),  # no hold, wrap-up 0 in this queue
    }  # fmt: skip


# --- the daemon ------------------------------------------------------------------------

DaemonFactory = Callable[..., Awaitable[Daemon]]
RUNNING: list[Daemon] = []  # daemons the running test started (stopped at teardown)


@pytest.fixture
async def stats_daemon(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient, tmp_path: Path
) -> AsyncIterator[tuple[DaemonFactory, Script]]:
    script = Script(queue=f"st{secrets.token_hex(4)}")
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS.format(queue=script.queue))
    base = daemon_settings(asterisk, db_url).model_dump()
    base["site"] = {"timezone": "UTC"}
    base["acd"] = {"asterisk_etc_dir": str(asterisk.etc_dir)}
    base["ivr"] = {
        "menus": str(menus), "prompt_dir": str(asterisk.base / "lib" / "sounds" / "cti"),
        "prompt_dir_asterisk": f"{asterisk.inner}/lib/sounds/cti",
    }  # fmt: skip
    running = RUNNING
    running.clear()

    async def factory(tail_interval_s: float = 300) -> Daemon:
        settings = Settings(**base, stats={"tail_interval_s": tail_interval_s})
        daemon = Daemon(settings, features=[AcdFeature(), IvrFeature(), StatsFeature()])
        await daemon.start()
        running.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        return daemon

    await setvar(ami, "CTI_DEFAULT_QUEUE", script.queue)  # when the daemon (AGI) is down
    await setvar(ami, "CTI_SIM_TALK", str(TALK))
    try:
        yield factory, script
    finally:
        # shown by pytest when the test failed: what Asterisk logged for this queue
        for line in asterisk.queue_log.read_text().splitlines():
            if f"|{script.queue}|" in line:
                print("queue_log:", line)
        for d in running:
            await d.stop()
        await setvar(ami, "CTI_DEFAULT_QUEUE", "support")
        await setvar(ami, "CTI_QUEUE_MAXWAIT", "300")
        await setvar(ami, f"CTI_MAXWAIT_{script.queue}", "")
        (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
        await ami.send_action("QueueReload", {"Parameters": "yes"})
        await asyncio.to_thread(asterisk.cli, "channel request hangup all")


async def stop(daemon: Daemon) -> None:
    RUNNING.remove(daemon)
    await daemon.stop()


def stats_of(daemon: Daemon) -> StatsService:
    feature = daemon.features[-1]
    assert isinstance(feature, StatsFeature) and feature.service is not None
    return feature.service


async def make_queue(daemon: Daemon, queue: str) -> None:
    await acd_store.put_queue(daemon.db, QueueParams(queue, service_level_s=T_S))
    acd = daemon.services.extra["acd"]
    assert await acd.apply_queues()  # type: ignore[attr-defined]

    async def exists() -> bool:
        _, items = await daemon.ami.send_list_action("QueueStatus", {"Queue": queue})
        return any(i.get("Event") == "QueueParams" for i in items)

    await wait_for(exists, timeout=10, what=f"queue {queue} in Asterisk")


async def ivr_hangup(daemon: Daemon, ami: AmiClient, script: Script) -> None:
    got: list[IvrAbandoned] = []
    daemon.bus.subscribe(IvrAbandoned, got.append)
    linkedid = await caller(ami, hold_s=0.8)

    async def seen() -> bool:
        return any(e.linkedid == linkedid for e in got)

    await wait_for(seen, timeout=15, what="IvrAbandoned")
    script.ivr_linkedids.append(linkedid)


async def report(daemon: Daemon, script: Script) -> dict[str, dict[str, Any]]:
    """The summary rows over the REST API (queue and "*")."""
    token = await create_token(daemon.db, f"sup-{secrets.token_hex(3)}", "supervisor")
    day = script.started.date()
    q = f"from={(day - timedelta(days=1)).isoformat()}&to={(day + timedelta(days=1)).isoformat()}"
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.http_port}/api/v1/stats/summary?{q}"
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
            rows = (await resp.json())["rows"]
    return {r["queue"]: r for r in rows}


def check(got: dict[str, Any], asterisk: ChrootAsterisk, script: Script) -> None:
    exp = hand_expected()
    for key, value in exp.items():
        assert got[key] == pytest.approx(value), key
    # waits and talk by hand, within Asterisk's whole-second rounding
    assert got["asa_s"] == pytest.approx((RING_FAST + RING_SLOW) / 2, abs=1.5)
    assert got["avg_abandon_wait_s"] == pytest.approx((1.5 + 7) / 2, abs=1.5)
    assert got["max_wait_s"] == pytest.approx(RING_SLOW, abs=1.5)
    assert got["aht_s"] == pytest.approx(TALK + 1, abs=2)  # talk + hello-world playback
    # and exactly what the independent queue_log reading gives
    independent = from_queue_log(asterisk.queue_log, script.queue, 5, T_S)
    for key, value in independent.items():
        assert got[key] == pytest.approx(value), key


class WallboardWatcher:
    """A supervisor's websocket, read continuously (answers heartbeats); keeps frames."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.http: aiohttp.ClientSession | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, daemon: Daemon) -> None:
        token = await create_token(daemon.db, f"wb-{secrets.token_hex(3)}", "supervisor")
        self.http = aiohttp.ClientSession()
        ws = await self.http.ws_connect(
            f"ws://127.0.0.1:{daemon.http_port}/ws",
            headers={"Authorization": f"Bearer {token}"},
        )
        self.task = asyncio.create_task(self._read(ws))

    async def _read(self, ws: Any) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("type") == "wallboard":
                    self.frames.append(data)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.http is not None:
            await self.http.close()

    async def shows(self, queue: str, want: Callable[[dict[str, Any]], bool]) -> None:
        async def seen() -> bool:
            return any(
                q["queue"] == queue and want(q) for f in self.frames[-3:] for q in f["queues"]
            )

        await wait_for(seen, timeout=15, what=f"a wallboard frame of {queue}")


# --- the tests -------------------------------------------------------------------------


async def test_figures_match_hand_and_queue_log(
    asterisk: ChrootAsterisk, ami: AmiClient, stats_daemon: tuple[DaemonFactory, Script]
) -> None:
    factory, script = stats_daemon
    daemon = await factory()  # tail every 300 s: the wallboard lives on AMI alone
    await make_queue(daemon, script.queue)
    wb = WallboardWatcher()
    await wb.open(daemon)
    ev = QueueEvents(asterisk.queue_log, script.queue)
    try:
        iface = await add_sim_agent(ami, "7701", script.queue)
        await answered_call(ami, ev, RING_FAST)
        await wb.shows(
            script.queue, lambda q: q["today"]["answered"] == 1 and q["today"]["offered"] == 1
        )
        await answered_call(ami, ev, RING_SLOW)
        await ami.send_action("QueueRemove", {"Queue": script.queue, "Interface": iface})
        await abandoned_call(ami, ev, 1.5)

        others: list[asyncio.Task[None]] = []

        async def meanwhile() -> None:
            # the live part: a caller waiting right now
            await wb.shows(script.queue, lambda q: q["waiting"] == 1 and q["longest_wait_s"] > 0)
            others.extend(during_the_long_abandon(ami, ev, daemon, script))

        await abandoned_call(ami, ev, 7, meanwhile)
        await asyncio.gather(*others)
        await wb.shows(
            script.queue,
            lambda q: (q["today"]["offered"], q["today"]["abandoned"],
                       q["today"]["short_abandoned"]) == (5, 2, 1)
            and q["today"]["service_level"] == 0.5,
        )  # fmt: skip
    finally:
        ev.close()
        await wb.close()
    await stats_of(daemon).tail()
    rows = await report(daemon, script)
    check(rows[script.queue], asterisk, script)
    assert rows["*"]["ivr_abandoned"] >= 1


async def test_daemon_stopped_mid_script_catches_up_and_rebuild_is_idempotent(
    asterisk: ChrootAsterisk, ami: AmiClient, stats_daemon: tuple[DaemonFactory, Script],
    db_url: str, tmp_path: Path,
) -> None:  # fmt: skip
    factory, script = stats_daemon
    daemon = await factory(tail_interval_s=1)
    await make_queue(daemon, script.queue)
    ev = QueueEvents(asterisk.queue_log, script.queue)
    try:
        iface = await add_sim_agent(ami, "7702", script.queue)
        await answered_call(ami, ev, RING_FAST)
        await stop(daemon)  # the rest happens while the daemon is away
        await answered_call(ami, ev, RING_SLOW)
        await ami.send_action("QueueRemove", {"Queue": script.queue, "Interface": iface})
        await abandoned_call(ami, ev, 1.5)
        others: list[asyncio.Task[None]] = []

        async def meanwhile() -> None:
            others.extend(during_the_long_abandon(ami, ev))

        await abandoned_call(ami, ev, 7, meanwhile)
        await asyncio.gather(*others)
    finally:
        ev.close()
    daemon = await factory(tail_interval_s=1)  # catches up from queue_log on start
    await ivr_hangup(daemon, ami, script)

    async def caught_up() -> dict[str, Any]:
        got = (await report(daemon, script)).get(script.queue, {})
        return got if got.get("offered") == 5 else {}

    check(await wait_for(caught_up, timeout=20, what="catch-up"), asterisk, script)

    # `cti stats rebuild --since …` beside the running daemon changes nothing; its
    # configuration names the instance only, as `make up` writes it: the command finds
    # the instance's queue_log the way `cti run` does
    before = await report(daemon, script)
    config = tmp_path / "cti.toml"
    config.write_text(
        f'[site]\ntimezone = "UTC"\n[database]\nurl = "{db_url}"\n'
        f'[asterisk]\ninstance = "{asterisk.spec.name}"\n'
    )
    since = (script.started - timedelta(hours=1)).isoformat()
    args = argparse.Namespace(config=str(config), since=since, queue_log="")
    assert await asyncio.to_thread(stats_cli._rebuild, args) == 0
    assert await asyncio.to_thread(stats_cli._rebuild, args) == 0
    after = await report(daemon, script)
    assert after[script.queue] == before[script.queue]
    check(after[script.queue], asterisk, script)
