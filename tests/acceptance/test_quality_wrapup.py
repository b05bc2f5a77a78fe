"""After-call work against the real Asterisk (decision 0026): a SIPp caller reaches a
queue with enforced wrap-up, a simulated agent answers and hangs up; the agent is then
paused (reason ``wrapup``) and no waiting caller reaches it until its disposition is
saved through the API; without a disposition the queue's maximum ends the wrap-up. The
measured wrap-up of each call is in Asterisk's queue_log (WRAPUPEND), and the agent
report's wrap-up and AHT equal a direct computation over that queue_log."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acd import store as acd_store
from acd.feature import AcdFeature
from acd.queues_conf import FILE_NAME
from acd.service import AcdService
from acd.wrapup import WrapUps
from crm_bridge.feature import CrmFeature
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.store.tokens import create_token
from stats.feature import StatsFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import start_sipp, wait_for

SIPP = Path(__file__).parent / "sipp"
PCAPS = Path("/usr/share/sip-tester")
ACW_MAX_S = 4
QUEUE = "support"  # where a call goes when the IVR does not answer (no IVR here)

Stack = Callable[[], Awaitable[Daemon]]


@pytest.fixture
async def stack(asterisk: ChrootAsterisk, db_url: str, ami: AmiClient) -> AsyncIterator[Stack]:
    started: list[Daemon] = []
    settings = daemon_settings(
        asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
        stats={"tail_interval_s": 0.5},
    )  # fmt: skip

    async def factory() -> Daemon:
        daemon = Daemon(settings, features=[AcdFeature(), CrmFeature(), StatsFeature()])
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        return daemon

    yield factory
    for daemon in started:
        await daemon.stop()
    (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
    await ami.send_action("QueueReload", {"Parameters": "yes"})
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")


def acd_of(daemon: Daemon) -> tuple[AcdService, WrapUps]:
    f = next(f for f in daemon.features if isinstance(f, AcdFeature))
    assert f.service is not None and f.wrapups is not None
    return f.service, f.wrapups


class Events:
    def __init__(self, ami: AmiClient) -> None:
        self.ami, self.seen = ami, list[Message]()

    def __enter__(self) -> Events:
        self.ami.add_event_handler(self.seen.append)
        return self

    def __exit__(self, *_: object) -> None:
        self.ami.remove_event_handler(self.seen.append)

    def of(self, event: str, **match: str) -> list[Message]:
        return [
            m for m in self.seen
            if m.event == event and all(m.get(k) == v for k, v in match.items())
        ]  # fmt: skip


async def sip_caller(
    asterisk: ChrootAsterisk, number: str, tmp: Path
) -> asyncio.subprocess.Process:
    scenario = tmp / "uac_keys.xml"
    if not scenario.exists():
        text = (SIPP / "uac_keys.xml").read_text()
        scenario.write_text(text.replace("@PCAP@", str(PCAPS / "dtmf_2833_5.pcap")))
    return await start_sipp(asterisk, scenario, "-m", "1", "-set", "caller", number, cwd=tmp)


async def joined(events: Events, caller: str) -> Message:
    async def found() -> list[Message]:
        return [m for m in events.of("QueueCallerJoin", Queue=QUEUE)
                if m.get("CallerIDNum") == caller]  # fmt: skip

    return (await wait_for(found, timeout=20, what=f"{caller} waiting in {QUEUE}"))[0]


def wrapup_lines(queue_log: Path) -> list[list[str]]:
    return [
        p for p in (ln.split("|") for ln in queue_log.read_text().splitlines())
        if len(p) >= 7 and p[4] == "WRAPUPEND"
    ]  # fmt: skip


def queue_log_lines(queue_log: Path, callid: str) -> dict[str, list[str]]:
    out = {}
    for ln in queue_log.read_text().splitlines():
        p = ln.split("|")
        if len(p) >= 5 and p[1] == callid:
            out[p[4]] = p
    return out


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


async def test_agent_stays_in_wrapup_until_disposition_or_the_maximum(
    asterisk: ChrootAsterisk, ami: AmiClient, stack: Stack, tmp_path: Path
) -> None:
    assert shutil.which("sipp")
    daemon = await stack()
    agent = f"acw{secrets.token_hex(3)}"  # the session's queue_log has earlier tests' agents
    svc, wrapups = acd_of(daemon)
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": "0.5"})
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "1"})
    await acd_store.put_queue(
        svc.db, acd_store.queue_params(QUEUE, {"timeout_s": 10, "acw_max_s": ACW_MAX_S})
    )
    await svc.apply_queues()
    await acd_store.put_agent(svc.db, agent, "", [("local", "101")], {QUEUE: 0})
    await svc.set_status(agent, "available", by="test")
    token = await create_token(daemon.db, agent, "agent")
    sup = await create_token(daemon.db, "boss", "supervisor")
    base = f"http://127.0.0.1:{daemon.http_port}/api/v1"
    queue_log = asterisk.log_dir / "queue_log"
    procs: list[asyncio.subprocess.Process] = []
    pushed: list[dict[str, Any]] = []  # what the agent's desktop websocket receives
    http_ws = aiohttp.ClientSession()
    ws = await http_ws.ws_connect(
        f"ws://127.0.0.1:{daemon.http_port}/ws", headers={"Authorization": f"Bearer {token}"}
    )

    async def read_ws() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                pushed.append(msg.json())

    reader = asyncio.create_task(read_ws())
    try:
        with Events(ami) as events:
            procs.append(await sip_caller(asterisk, "13811112222", tmp_path))
            first = await joined(events, "13811112222")
            lid1 = first["Linkedid"]

            async def in_wrapup() -> bool:
                return wrapups.is_active(agent)

            await wait_for(in_wrapup, timeout=20, what="the agent in wrap-up after call 1")
            out = await asyncio.to_thread(asterisk.cli, f"queue show {QUEUE}")
            assert re.search(rf"{agent} .*paused:wrapup", out), out
            member = next(m for m in svc.live.queues[QUEUE].members.values() if m.name == agent)
            assert member.snapshot(datetime.now(UTC))["state"] == "wrapup"

            # a second caller waits: nobody takes it while the agent wraps up
            procs.append(await sip_caller(asterisk, "13833334444", tmp_path))
            second = await joined(events, "13833334444")
            lid2 = second["Linkedid"]
            await asyncio.sleep(1.0)
            assert not events.of("AgentCalled", Linkedid=lid2)

            # the disposition saved through the API ends the wrap-up: the caller is put through
            async with aiohttp.ClientSession() as http:
                resp = await http.put(
                    f"{base}/interactions/by-call/{lid1}", json={"disposition": "resolved"},
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
                assert resp.status == 200, await resp.text()

            async def second_answered() -> list[Message]:
                return events.of("AgentConnect", Linkedid=lid2)

            await wait_for(second_answered, timeout=10, what="call 2 answered after disposition")

            # call 2 gets no disposition: the maximum ends its wrap-up
            ours = {first["Uniqueid"], second["Uniqueid"]}

            async def two_ended() -> list[list[str]]:
                lines = await asyncio.to_thread(wrapup_lines, queue_log)
                lines = [p for p in lines if p[1] in ours]  # the session's log: earlier tests
                return lines if len(lines) >= 2 else []

            lines = await wait_for(two_ended, timeout=30, what="both wrap-ups in queue_log")
        assert not wrapups.is_active(agent)
        out = await asyncio.to_thread(asterisk.cli, f"queue show {QUEUE}")
        assert "paused" not in out.split(agent, 1)[1].splitlines()[0], out

        by_call = {p[1]: p for p in lines}
        callid1, callid2 = first["Uniqueid"], second["Uniqueid"]
        assert set(by_call) == {callid1, callid2}
        w1, how1 = float(by_call[callid1][5]), by_call[callid1][6]
        w2, how2 = float(by_call[callid2][5]), by_call[callid2][6]
        assert how1 == "disposition" and 1.0 <= w1 < ACW_MAX_S, by_call[callid1]
        assert how2 == "timeout" and ACW_MAX_S <= w2 < ACW_MAX_S + 1.5, by_call[callid2]
        assert by_call[callid1][3] == agent and by_call[callid1][2] == QUEUE

        # the agent report's wrap-up and AHT equal a direct computation over queue_log
        talk = 0.0
        for callid in (callid1, callid2):
            ql = await asyncio.to_thread(queue_log_lines, queue_log, callid)
            done = ql.get("COMPLETEAGENT") or ql["COMPLETECALLER"]
            talk += float(done[6])
        expected_aht = (talk + w1 + w2) / 2

        async def report() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http:
                resp = await http.get(
                    f"{base}/stats/agents", headers={"Authorization": f"Bearer {sup}"}
                )
                body = await resp.json()
            rows = [r for r in body["rows"] if r["agent"] == agent]
            ok = rows and rows[0]["handled"] == 2 and abs(rows[0]["wrapup_s"] - (w1 + w2)) < 1e-6
            return rows[0] if ok else {}

        row = await wait_for(report, timeout=20, what="the agent report with both wrap-ups")
        assert row["aht_s"] == pytest.approx(expected_aht, abs=1e-6)
        # the agent's desktop was told when each wrap-up started and how it ended
        told = [(m["linkedid"], m["state"], m["reason"]) for m in pushed
                if m.get("type") == "agent.wrapup"]  # fmt: skip
        assert told == [
            (lid1, "started", ""),
            (lid1, "ended", "disposition"),
            (lid2, "started", ""),
            (lid2, "ended", "timeout"),
        ], told
    finally:
        reader.cancel()
        await ws.close()
        await http_ws.close()
        for proc in procs:
            await stop(proc)
