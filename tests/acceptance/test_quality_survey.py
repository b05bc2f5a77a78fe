"""The satisfaction survey against the real Asterisk (decision 0026): SIPp callers reach a
queue with the survey, a simulated agent answers and hangs up, each caller hears the
question in the queue's language (Mandarin text-to-speech) and presses a key (RFC 2833).
Valid keys land as scores in queue_log, the quality store, the agent and queue reports
and the CSV, equal to a direct computation over queue_log; a caller who only presses a
key outside 1-5 is asked again and leaves no score."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from sqlalchemy import select

from acd import store as acd_store
from acd.feature import AcdFeature
from acd.queues_conf import FILE_NAME
from acd.service import AcdService
from crm_bridge.feature import CrmFeature
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.store.models import Call
from cti.store.tokens import create_token
from ivr.feature import IvrFeature
from quality.feature import QualityFeature
from stats.feature import StatsFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import start_sipp, wait_for

SIPP = Path(__file__).parent / "sipp"
PCAPS = Path("/usr/share/sip-tester")
QUEUE = "support"  # where a call goes when the IVR has no menus

Stack = Callable[[], Awaitable[Daemon]]
#: the survey waits this long for a key (the most it allows): a key Asterisk did not hear
#: keeps the question open that long, a heard one moves the survey on at once; the test
#: waits KEY_HEARD_S for what a key does, so an unheard key fails it
KEY_WAIT_S = 30
KEY_HEARD_S = 20
T = TypeVar("T")


@pytest.fixture
async def stack(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient, tmp_path: Path
) -> AsyncIterator[Stack]:
    started: list[Daemon] = []
    sounds = asterisk.base / "lib" / "sounds" / "cti"
    settings = daemon_settings(
        asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
        stats={"tail_interval_s": 0.5}, quality={"survey_timeout_s": KEY_WAIT_S},
        ivr={"menus": str(tmp_path / "no-menus.toml"), "prompt_dir": str(sounds),
             "prompt_dir_asterisk": f"{asterisk.inner}/lib/sounds/cti"},
    )  # fmt: skip

    async def factory() -> Daemon:
        daemon = Daemon(
            settings,
            features=[AcdFeature(), IvrFeature(), StatsFeature(), QualityFeature(), CrmFeature()],
        )
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


def feature(daemon: Daemon, kind: type[T]) -> T:
    return next(f for f in daemon.features if isinstance(f, kind))


class Events:
    def __init__(self, ami: AmiClient) -> None:
        self.ami, self.seen = ami, list[Message]()

    def __enter__(self) -> Events:
        self.ami.add_event_handler(self.seen.append)
        return self

    def __exit__(self, *_: object) -> None:
        self.ami.remove_event_handler(self.seen.append)


# uac_keys.xml's press: one pcap for every MESSAGE
PRESS = """  <nop><action><exec play_pcap_audio="@PCAP@"/></action></nop>
  <nop next="wait"/>
"""


async def sip_caller(
    asterisk: ChrootAsterisk, number: str, keys: str, tmp: Path
) -> asyncio.subprocess.Process:
    """A caller pressing ``keys[0]`` when told (an in-dialog MESSAGE), ``keys[1]`` when
    told again... Each key is a pcap of its own: Asterisk takes the RTP event of a pcap
    played again (same timestamp) for a repeat and ignores it."""

    def press(key: str) -> str:
        name = PCAPS / f"dtmf_2833_{'star' if key == '*' else key}.pcap"
        return f'  <nop><action><exec play_pcap_audio="{name}"/></action></nop>\n'

    text = (SIPP / "uac_keys.xml").read_text()
    assert PRESS in text
    answer = text.split('<label id="press"/>\n', 1)[1].split(PRESS, 1)[0]  # the 200 OK
    more = "".join(
        f'  <recv request="MESSAGE" optional="true" next="press{i}"/>\n'
        '  <recv request="BYE" next="bye"/>\n'
        f'  <label id="press{i}"/>\n{answer}{press(key)}'
        for i, key in enumerate(keys[1:], 1)
    )
    scenario = tmp / f"uac_keys_{number}.xml"
    scenario.write_text(text.replace(PRESS, press(keys[0]) + more + '  <nop next="wait"/>\n'))
    return await start_sipp(asterisk, scenario, "-m", "1", "-set", "caller", number, cwd=tmp)


def lines_of(queue_log: Path, callids: set[str], event: str) -> dict[str, list[str]]:
    out = {}
    for ln in queue_log.read_text().splitlines():
        p = ln.split("|")
        if len(p) >= 5 and p[1] in callids and p[4] == event:
            out[p[1]] = p
    return out


def lines_of_queue(queue_log: Path, queue: str, event: str) -> list[list[str]]:
    """Every ``event`` line of ``queue`` today (the session's log: earlier tests too)."""
    from datetime import UTC, datetime, time

    start = datetime.combine(datetime.now(UTC).date(), time(0), UTC).timestamp()  # site: UTC
    out = []
    for ln in queue_log.read_text().splitlines():
        p = ln.split("|")
        if len(p) >= 6 and p[2] == queue and p[4] == event and float(p[0]) >= start:
            out.append(p)
    return out


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


async def test_callers_score_the_call_and_the_reports_say_so(
    asterisk: ChrootAsterisk, ami: AmiClient, stack: Stack, tmp_path: Path
) -> None:
    daemon = await stack()
    acd = feature(daemon, AcdFeature).service
    assert isinstance(acd, AcdService)
    quality = feature(daemon, QualityFeature)
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": "0.3"})
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": "1"})
    params = {"timeout_s": 10, "survey": True, "language": "zh"}
    await acd_store.put_queue(acd.db, acd_store.queue_params(QUEUE, params))
    await acd.apply_queues()
    agent = f"sv{secrets.token_hex(3)}"  # the session's queue_log has earlier tests' agents
    await acd_store.put_agent(acd.db, agent, "", [("local", "101")], {QUEUE: 0})
    await acd.set_status(agent, "available", by="test")
    sup = await create_token(daemon.db, "boss", "supervisor")
    base = f"http://127.0.0.1:{daemon.http_port}/api/v1"
    queue_log = asterisk.log_dir / "queue_log"
    # one after the other (one agent): two score, the third only presses keys outside 1-5
    plan = [("13811110001", "5", 5), ("13811110002", "2", 2), ("13811110003", "9*", None)]
    joins: dict[str, Message] = {}
    procs: list[asyncio.subprocess.Process] = []
    try:
        with Events(ami) as events:

            async def asked(lid: str, n: int, timeout: float, number: str) -> None:
                async def done() -> bool:
                    return quality.asked.get(lid, 0) >= n

                await wait_for(done, timeout=timeout, what=f"survey question {n} to {number}")

            async def answer(number: str, keys: str, lid: str, channel: str) -> None:
                """Press the keys, each when asked (the first question was), to the end."""
                for attempt in range(1, len(keys) + 1):
                    if attempt > 1:
                        await asked(lid, attempt, KEY_HEARD_S, number)
                    await asyncio.sleep(0.5)  # GET DATA reached Asterisk: the key is heard
                    await ami.send_action("SendText", {"Channel": channel, "Message": "press"})

                async def over() -> list[Message]:
                    return [m for m in events.seen if m.event == "Hangup"
                            and m.get("Channel") == channel]  # fmt: skip

                await wait_for(over, timeout=KEY_HEARD_S, what=f"{number}'s call over")

            surveys: list[asyncio.Task[None]] = []
            try:
                for number, keys, _ in plan:
                    procs.append(await sip_caller(asterisk, number, keys, tmp_path))

                    async def joined(number: str = number) -> list[Message]:
                        return [m for m in events.seen if m.event == "QueueCallerJoin"
                                and m.get("CallerIDNum") == number]  # fmt: skip

                    join = (await wait_for(joined, timeout=20, what=f"{number} queued"))[0]
                    joins[number] = join
                    lid, channel = join["Linkedid"], join["Channel"]
                    await asked(lid, 1, 30, number)
                    # the agent hung up before the survey: the next caller comes meanwhile
                    surveys.append(asyncio.create_task(answer(number, keys, lid, channel)))
                await asyncio.gather(*surveys)
            finally:
                for task in surveys:
                    task.cancel()
        callids = {j["Uniqueid"] for j in joins.values()}
        scored = await asyncio.to_thread(lines_of, queue_log, callids, "SURVEY")
        by_number = {n: scored.get(joins[n]["Uniqueid"]) for n, _, _ in plan}
        assert by_number["13811110001"] is not None and by_number["13811110001"][5] == "5"
        assert by_number["13811110002"] is not None and by_number["13811110002"][5] == "2"
        assert by_number["13811110003"] is None  # 9, then *: asked again, no score
        assert quality.asked[joins["13811110003"]["Linkedid"]] == 2
        assert {p[3] for p in scored.values()} == {agent}
        # the direct computation over queue_log
        scores = [int(p[5]) for p in scored.values()]
        expected_avg = sum(scores) / len(scores)

        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {sup}"}

            async def get(path: str) -> Any:
                async with http.get(f"{base}{path}", headers=auth) as resp:
                    assert resp.status == 200, await resp.text()
                    return await resp.json()

            async def agent_row() -> dict[str, Any]:
                rows = [r for r in (await get("/stats/agents"))["rows"] if r["agent"] == agent]
                return rows[0] if rows and rows[0]["survey_count"] == 2 else {}

            row = await wait_for(agent_row, timeout=20, what="the agent report's survey")
            assert row["survey_avg"] == pytest.approx(expected_avg)
            # the queue's figures too (the hourly rollup through stats.formulas)
            summary = (await get(f"/stats/summary?queue={QUEUE}"))["rows"]
            support = next(r for r in summary if r["queue"] == QUEUE)
            ours = [int(p[5]) for p in await asyncio.to_thread(
                lines_of_queue, queue_log, QUEUE, "SURVEY")]  # fmt: skip
            assert support["survey_count"] == len(ours)
            assert support["survey_avg"] == pytest.approx(sum(ours) / len(ours))
            surveys = (await get(f"/quality/surveys?agent={agent}"))["surveys"]
            assert sorted(s["score"] for s in surveys) == sorted(scores)
            assert {s["linkedid"] for s in surveys} == {
                joins[n]["Linkedid"] for n in ("13811110001", "13811110002")
            }
            async with http.get(f"{base}/stats/agents?format=csv", headers=auth) as resp:
                table = list(csv.DictReader(io.StringIO(await resp.text())))
            mine = next(r for r in table if r["agent"] == agent)
            assert float(mine["survey_avg"]) == pytest.approx(expected_avg)
            assert mine["survey_count"] == "2"
            # the CRM interaction of each call carries its score (SurveyAnswered)
            for number, _, score in plan:
                lid = joins[number]["Linkedid"]

                async def interaction(lid: str = lid) -> dict[str, Any]:
                    url = f"{base}/interactions/by-call/{lid}"
                    async with http.get(url, headers=auth) as resp:
                        if resp.status == 404:
                            return {}  # not written yet
                        assert resp.status == 200, await resp.text()
                        body: dict[str, Any] = await resp.json()
                    return body if body.get("ended_at") else {}

                inter = await wait_for(interaction, timeout=20, what=f"{number}'s interaction")
                assert inter["survey_score"] == score

                async def call_row(lid: str = lid) -> list[Any]:
                    async with daemon.db.session() as session:
                        rows = (
                            await session.execute(
                                select(Call.survey_score).where(Call.linkedid == lid)
                            )
                        ).all()
                    return list(rows)  # fmt: skip

                (row,) = await wait_for(call_row, timeout=20, what=f"{number}'s call row")
                assert row[0] == score  # the calls row too
    finally:
        for proc in procs:
            await stop(proc)
