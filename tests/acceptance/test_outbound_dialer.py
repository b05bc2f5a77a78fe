"""Outbound campaigns against the real Asterisk (issue 16): a SIPp UAS is the carrier
(by the number's last digit: 1 answers after a ring, 2 is busy, 3 rings until cancelled,
4 is congested); simulated agents sit in the campaign's queue. Progressive and predictive
runs reach the agents, retries follow the campaign's rules, a closed calling window
dials nothing, a number put on the do-not-call list is never dialled, and the campaign
report counts exactly the calls the carrier received (each also a call record)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from acd.feature import AcdFeature
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.store.models import Call
from cti.store.tokens import create_token
from outbound.feature import OutboundFeature
from outbound.models import DncRow
from outbound.store import OutboundStore
from recordings.feature import RecordingsFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import free_port, start_sipp_uas, wait_for
from tests.acceptance.test_acd import set_sim, setup_queue

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

CARRIER = Path(__file__).parent / "sipp" / "uas_campaign_carrier.xml"
ALWAYS = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
RETRY = {"busy": {"delay_min": 0, "max_attempts": 2},
         "no_answer": {"delay_min": 0, "max_attempts": 1},
         "congestion": {"delay_min": 0, "max_attempts": 1}}  # fmt: skip


def write_hello_pcap(path: Path, *, speech_s: float = 0.6, silence_s: float = 4.0) -> None:
    """A pcap of RTP (PCMA, 20 ms packets) that SIPp's play_pcap_audio replays: a short
    "hello" (a 440 Hz tone, loud enough to be voice for app_amd) and then silence, as a
    person answering sounds."""
    import audioop
    import math
    import struct

    rate, per = 8000, 160
    frames: list[bytes] = []
    for i in range(int((speech_s + silence_s) * rate / per)):
        speaking = i * per < speech_s * rate
        pcm = b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * (i * per + n) / rate))
                        if speaking else 0)
            for n in range(per)
        )  # fmt: skip
        frames.append(audioop.lin2alaw(pcm, 2))
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # ethernet
    for i, payload in enumerate(frames):
        rtp = struct.pack("!BBHII", 0x80, 8, i, i * per, 0x1234) + payload
        udp = struct.pack("!HHHH", 4000, 4002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp  # fmt: skip
        eth = b"\x00" * 12 + b"\x08\x00" + ip
        t = i * 0.02
        out.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(eth), len(eth)) + eth)
    path.write_bytes(b"".join(out))


class Stack:
    def __init__(self, daemon: Daemon, token: str, messages: Path) -> None:
        self.daemon, self.token, self.messages = daemon, token, messages
        self.tokens: dict[str, str] = {}
        self.base = f"http://127.0.0.1:{daemon.http_port}/api/v1/outbound"

    @property
    def store(self) -> OutboundStore:
        f = next(f for f in self.daemon.features if isinstance(f, OutboundFeature))
        assert f.store is not None
        return f.store

    async def api(self, method: str, path: str, body: Any = None, *,
                  data: bytes | None = None, who: str = "") -> tuple[int, Any]:  # fmt: skip
        if who and who not in self.tokens:
            self.tokens[who] = await create_token(self.daemon.db, who, "agent")
        headers = {"Authorization": f"Bearer {self.tokens[who] if who else self.token}"}
        async with aiohttp.ClientSession() as http, http.request(
            method, self.base + path, json=body if data is None else None, data=data,
            headers=headers,
        ) as resp:  # fmt: skip
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    def invites(self) -> list[str]:
        """Request URIs of the INVITEs the carrier received."""
        if not self.messages.exists():
            return []
        return [line.split()[1] for line in self.messages.read_text(errors="replace")
                .splitlines() if line.startswith("INVITE sip:")]  # fmt: skip

    async def campaign(self, name: str, numbers: list[str], **settings: Any) -> int:
        body = {"name": name, "queue": "sales", "ring_s": 6, "window": {"days": ALWAYS},
                "retry": RETRY, **settings}  # fmt: skip
        status, campaign = await self.api("POST", "/campaigns", body)
        assert status == 201, campaign
        status, lst = await self.api("POST", f"/campaigns/{campaign['id']}/lists",
                                     {"name": "today"})  # fmt: skip
        assert status == 201, lst
        csv = ("phone\n" + "\n".join(numbers) + "\n").encode()
        status, report = await self.api("POST", f"/lists/{lst['id']}/import?phone=phone",
                                        data=csv)  # fmt: skip
        assert status == 200 and report["kept"] == len(numbers), report
        return int(campaign["id"])

    async def finished(self, campaign_id: int) -> bool:
        leads = await self.store.leads(campaign_id=campaign_id)
        return all(lead["status"] not in ("new", "retry", "dialing") for lead in leads)


@pytest.fixture
async def stack(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    port = free_port()
    write_hello_pcap(tmp_path / "hello.pcap")
    sipp = await start_sipp_uas(CARRIER, port, cwd=tmp_path)
    await ami.send_action("Setvar", {"Variable": "CTI_CARRIER_URI",
                                     "Value": f"127.0.0.1:{port}"})  # fmt: skip
    await set_sim(ami, 0, 2)
    started: list[Daemon] = []

    async def factory(*, record: bool = False) -> Stack:
        """``record``: with the recordings feature, the campaign queue recorded always."""
        sections: dict[str, Any] = {}
        features: list[Any] = [AcdFeature(), OutboundFeature()]
        if record:
            sections["recordings"] = {
                "root": str(asterisk.monitor_dir), "reconcile_interval_s": 0, "grace_s": 0,
                "queues": {"sales": {"policy": "always"}},
            }  # fmt: skip
            features.append(RecordingsFeature())
        settings = daemon_settings(
            asterisk, db_url, acd={"asterisk_etc_dir": str(asterisk.etc_dir)},
            site={"timezone": "Asia/Shanghai", "default_region": "CN"}, **sections,
        )  # fmt: skip
        daemon = Daemon(settings, features=features)
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        acd = next(f for f in daemon.features if isinstance(f, AcdFeature))
        assert acd.service is not None
        await setup_queue(acd.service, "sales", {"2001": 0, "2002": 0}, wrapup_s=0)
        token = await create_token(daemon.db, "sup", "supervisor")
        return Stack(daemon, token, tmp_path / "sipp_messages.log")

    yield factory
    for daemon in started:
        await daemon.stop()
    await ami.send_action("Setvar", {"Variable": "CTI_CARRIER_URI", "Value": ""})
    if sipp.returncode is None:
        sipp.kill()
    await sipp.wait()
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")


async def test_progressive_campaign_dials_by_the_rules_and_the_report_adds_up(
    stack: Callable[..., Awaitable[Stack]],
) -> None:
    s = await stack()
    numbers = ["13800138001", "13800138002", "13800138003", "13800138004", "13800138011",
               "13800138091"]  # fmt: skip
    cid = await s.campaign("spring", numbers)
    # another node puts one number on the do-not-call list after the import: the lead
    # is still "new", the dial policy refuses it at dial time
    async with s.daemon.db.session() as session, session.begin():
        session.add(DncRow(number="+8613800138091", scope="", reason="asked", added_by="x"))
    # a campaign whose window is closed today dials nothing
    closed = await s.campaign("closed", ["13800138021"], window={"days": {}})
    status, body = await s.api("POST", f"/campaigns/{closed}/start")
    assert status == 200 and body["status"] == "running"

    status, body = await s.api("POST", f"/campaigns/{cid}/start")
    assert status == 200, body
    await wait_for(lambda: s.finished(cid), timeout=90, what="every lead dialled")

    attempts = await s.store.attempts(cid)
    by_number: dict[str, list[str]] = {}
    for a in attempts:
        by_number.setdefault(a["number"], []).append(a["outcome"])
    assert by_number == {
        "+8613800138001": ["answered"], "+8613800138011": ["answered"],
        "+8613800138002": ["busy", "busy"],  # busy: retried once (max 2 attempts)
        "+8613800138003": ["no_answer"], "+8613800138004": ["congestion"],
        "+8613800138091": ["refused"],
    }  # fmt: skip
    # the answered calls reached the simulated agents
    agents = {a["agent"] for a in attempts if a["outcome"] == "answered"}
    assert agents and agents <= {"a2001", "a2002"}, attempts
    leads = {lead["number"]: lead for lead in await s.store.leads(campaign_id=cid)}
    assert leads["+8613800138001"]["status"] == "done"
    assert leads["+8613800138091"]["status"] == "dnc"
    assert leads["+8613800138002"]["attempts"] == 2

    # DNC never dialled; the closed window dialled nothing; the carrier saw every call
    invites = s.invites()
    assert not any("8613800138091" in uri for uri in invites)
    assert not any("8613800138021" in uri for uri in invites)
    assert await s.store.attempts(closed) == []
    dialled = [a for a in attempts if a["outcome"] != "refused"]
    assert len(invites) == len(dialled) == 6
    # every call placed is a call record, like inbound calls
    linkedids = {a["linkedid"] for a in dialled}

    async def recorded() -> bool:
        async with s.daemon.db.session() as session:
            rows = await session.scalars(select(Call.linkedid).where(Call.linkedid.in_(linkedids)))
            return set(rows) == linkedids

    await wait_for(recorded, timeout=20, what="call records of the campaign's calls")
    # the report equals the calls placed
    status, report = await s.api("GET", f"/campaigns/{cid}/report?by=agent")
    assert status == 200
    total = report["total"]
    counts = ("attempts", "dialled", "contacts", "busy", "no_answer", "failed", "refused")
    assert tuple(total[c] for c in counts) == (7, 6, 2, 2, 1, 1, 1)
    status, text = await s.api("GET", f"/campaigns/{cid}/report?by=day&format=csv")
    assert status == 200 and text.splitlines()[-1].startswith("total,7,6,")
    status, live = await s.api("GET", f"/campaigns/{cid}/live")
    assert status == 200 and live["due"] == 0 and live["window_open"] is True


async def test_predictive_campaign_reaches_the_agents(
    stack: Callable[..., Awaitable[Stack]],
) -> None:
    s = await stack()
    numbers = [f"1380013{n:04d}" for n in range(8101, 8171, 10)]  # all answer (last digit 1)
    cid = await s.campaign("predict", numbers, mode="predictive")
    status, _ = await s.api("POST", f"/campaigns/{cid}/start")
    assert status == 200
    await wait_for(lambda: s.finished(cid), timeout=120, what="every lead dialled")
    attempts = await s.store.attempts(cid)
    assert len(attempts) == len(numbers) == len(s.invites())
    reached = [a for a in attempts if a["outcome"] == "answered"]
    assert reached and {a["agent"] for a in reached} <= {"a2001", "a2002"}
    # an answered call no agent took within the grace was dropped, and only those
    assert all(a["outcome"] in ("answered", "abandoned") for a in attempts)
    status, body = await s.api("POST", f"/campaigns/{cid}/stop")
    assert status == 200 and body["status"] == "stopped"
    status, body = await s.api("POST", f"/campaigns/{cid}/pause")
    assert status == 409


async def test_preview_outcomes_and_a_personal_callback_on_time(
    stack: Callable[..., Awaitable[Stack]],
) -> None:
    from datetime import UTC, datetime, timedelta

    s = await stack()
    cid = await s.campaign("look", ["13800138031", "13800138041"], mode="preview",
                           script="Hello, this is <b>ACME</b>")  # fmt: skip
    status, body = await s.api("POST", f"/campaigns/{cid}/next", who="a2001")
    assert status == 409  # not running yet
    status, _ = await s.api("POST", f"/campaigns/{cid}/start")
    assert status == 200
    # the agent previews the first lead (held for it), then dials it
    status, body = await s.api("POST", f"/campaigns/{cid}/next", who="a2001")
    assert status == 200, body
    card = body["lead"]
    assert card["number"] == "+8613800138031" and card["status"] == "preview"
    assert card["script"] == "Hello, this is <b>ACME</b>" and card["region"]
    status, again = await s.api("POST", f"/campaigns/{cid}/next", who="a2001")
    assert again["lead"]["id"] == card["id"]  # the same lead until dialled or skipped
    status, _ = await s.api("POST", f"/leads/{card['id']}/dial", who="a2002")
    assert status == 404  # not a2002's lead
    status, body = await s.api("POST", f"/leads/{card['id']}/dial", who="a2001")
    assert status == 202, body

    async def on_card() -> Any:
        _, body = await s.api("GET", "/me/lead", who="a2001")
        return body if body["state"] == "connected" else None

    mine = await wait_for(on_card, timeout=20, what="the lead card of the connected call")
    assert mine["lead"]["id"] == card["id"]
    # the agent saves the outcome during the call: call me back in a few seconds
    callback_at = datetime.now(UTC) + timedelta(seconds=4)
    status, body = await s.api("POST", f"/leads/{card['id']}/outcome",
                               {"outcome": "callback", "callback_at": callback_at.isoformat(),
                                "note": "busy now"}, who="a2001")  # fmt: skip
    assert status == 200 and body["lead"]["status"] == "callback", body

    async def called_back() -> list[dict[str, Any]]:
        attempts = await s.store.attempts(cid)
        done = [a for a in attempts if a["lead_id"] == card["id"] and a["outcome"]]
        return done if len(done) == 2 else []

    first, second = await wait_for(called_back, timeout=40, what="the personal callback")
    assert first["outcome"] == second["outcome"] == "answered"
    assert first["agent"] == second["agent"] == "a2001"
    assert first["disposition"] == "callback"
    assert datetime.fromisoformat(second["started_at"]) >= callback_at - timedelta(seconds=1)
    # a sale: without a CRM pipeline the outcome is kept and the answer says so
    status, body = await s.api("POST", f"/leads/{card['id']}/outcome", {"outcome": "sale"},
                               who="a2001")  # fmt: skip
    assert status == 200 and body["lead"]["disposition"] == "sale"
    assert body["crm"]["recorded"] is False
    # the second lead: skipped, then "do not call me" puts it on the company list
    status, body = await s.api("POST", f"/campaigns/{cid}/next", who="a2001")
    second_lead = body["lead"]
    assert second_lead["number"] == "+8613800138041"
    status, body = await s.api("POST", f"/leads/{second_lead['id']}/skip", who="a2001")
    assert status == 200 and body["status"] == "retry" and body["agent"] == ""
    status, body = await s.api("POST", f"/leads/{second_lead['id']}/outcome",
                               {"outcome": "dnc"})  # fmt: skip
    assert status == 200 and body["lead"]["status"] == "dnc"
    assert await s.store.is_blocked("+8613800138041")
    assert not any("8613800138041" in uri for uri in s.invites())


async def test_answering_machines_are_detected_and_never_reach_an_agent(
    stack: Callable[..., Awaitable[Stack]],
) -> None:
    s = await stack()
    retry = {**RETRY, "machine": {"delay_min": 0, "max_attempts": 1}}
    cid = await s.campaign("amd", ["13800138035", "13800138036"], amd=True, retry=retry)
    status, _ = await s.api("POST", f"/campaigns/{cid}/start")
    assert status == 200
    await wait_for(lambda: s.finished(cid), timeout=60, what="every lead dialled")
    outcomes = {a["number"]: (a["outcome"], a["agent"]) for a in await s.store.attempts(cid)}
    # a greeting that talks on is a machine (hung up, no agent); "hello" then silence is
    # a person, put through to an agent
    assert outcomes["+8613800138035"] == ("machine", "")
    assert outcomes["+8613800138036"][0] == "answered"
    assert outcomes["+8613800138036"][1] in ("a2001", "a2002")


async def test_predictive_dials_ahead_of_free_agents_within_the_cap(
    stack: Callable[..., Awaitable[Stack]],
) -> None:
    """With room in the cap (here 20 %, so after 5 answered calls) predictive places more
    calls than there are free agents; a call no agent takes is dropped and logged."""
    from datetime import datetime

    s = await stack()
    numbers = [f"1380013{n:03d}1" for n in range(200, 224)]  # 24 numbers that answer
    cid = await s.campaign("ahead", numbers, mode="predictive", abandon_cap=0.2)
    status, _ = await s.api("POST", f"/campaigns/{cid}/start")
    assert status == 200
    await wait_for(lambda: s.finished(cid), timeout=150, what="every lead dialled")
    attempts = await s.store.attempts(cid)
    assert len(attempts) == len(numbers) == len(s.invites())
    # the most calls ringing at once: more than the two agents (progressive never rings
    # more numbers than it has free agents)
    ringing = [
        (
            datetime.fromisoformat(a["started_at"]),
            datetime.fromisoformat(a["answered_at"] or a["ended_at"]),
        )
        for a in attempts
    ]
    edges = sorted([(start, 1) for start, _ in ringing] + [(end, -1) for _, end in ringing])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    assert most > 2, attempts
    outcomes = [a["outcome"] for a in attempts]
    assert set(outcomes) <= {"answered", "abandoned"}
    status, report = await s.api("GET", f"/campaigns/{cid}/report")
    assert report["total"]["abandoned"] == outcomes.count("abandoned")
    assert report["total"]["contacts"] == outcomes.count("answered")


async def test_campaign_calls_are_recorded_by_the_queue_policy(
    stack: Callable[..., Awaitable[Stack]],
) -> None:
    """A campaign call an agent takes is recorded like an inbound queue call when the
    campaign's queue records always."""
    from tests.acceptance.test_recordings import settled

    s = await stack(record=True)
    cid = await s.campaign("taped", ["13800138001"])
    status, _ = await s.api("POST", f"/campaigns/{cid}/start")
    assert status == 200
    await wait_for(lambda: s.finished(cid), timeout=60, what="the lead dialled")
    (attempt,) = await s.store.attempts(cid)
    assert attempt["outcome"] == "answered"
    (rec,) = await settled(s.daemon, attempt["linkedid"])
    assert rec.status == "ready" and rec.mode == "always"
