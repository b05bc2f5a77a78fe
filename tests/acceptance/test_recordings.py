"""Recordings against the real Asterisk: MixMonitor on answered queue calls, pause/resume,
transcoding, playback with Range and access control, traversal refused, reconcile, and
live monitoring (ChanSpy) on the right call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.events import RecordingStarted, RecordingStopped
from cti.store.db import Database
from cti.store.models import Call
from cti.store.tokens import create_token
from recordings import audio
from recordings.control import Recorder
from recordings.feature import RecordingsFeature
from recordings.models import Recording
from recordings.naming import recording_path
from recordings.store import RecordingStore
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import wait_for
from tests.acceptance.proxy import CuttableProxy

SIM_CONTEXT = "cti-rec-sim-agents"
SUPERVISOR_DEVICE = "Local/900@cti-rec-sim-supervisor"

RecDaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def rec_daemon(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient
) -> AsyncIterator[RecDaemonFactory]:
    """Daemons running the recordings feature on Asterisk's monitor directory."""
    started: list[Daemon] = []

    async def factory(
        *, ami_port: int | None = None, extra: list[Any] | None = None, **section: Any
    ) -> Daemon:
        config = {
            "root": str(asterisk.monitor_dir), "reconcile_interval_s": 0, "grace_s": 0,
            "supervisor_devices": {"sup1": SUPERVISOR_DEVICE},
            "queues": {"sales": {"policy": "on_demand"}}, **section,
        }  # fmt: skip
        settings = daemon_settings(asterisk, db_url, ami_port=ami_port, recordings=config)
        daemon = Daemon(settings, features=[RecordingsFeature(), *(extra or [])])
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)

        async def policies_published() -> bool:  # the dialplan's globals (decision 0027)
            resp = await ami.send_action("Getvar", {"Variable": "CTI_REC_DEFAULT"})
            return bool(resp.get("Value"))

        await wait_for(policies_published, timeout=10, what="recording policies published")
        return daemon

    yield factory
    for daemon in started:
        await daemon.stop()
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")


def recorder_of(daemon: Daemon) -> Recorder:
    feature = next(f for f in daemon.features if isinstance(f, RecordingsFeature))
    assert feature.recorder is not None
    return feature.recorder


class Events:
    def __init__(self, ami: AmiClient) -> None:
        self.ami, self.seen = ami, list[Message]()

    def __enter__(self) -> Events:
        self.ami.add_event_handler(self.seen.append)
        return self

    def __exit__(self, *_: object) -> None:
        self.ami.remove_event_handler(self.seen.append)

    def of(self, event: str, linkedid: str) -> list[Message]:
        return [m for m in self.seen if m.event == event and m.get("Linkedid") == linkedid]

    async def wait(self, event: str, linkedid: str, timeout: float = 20) -> Message:
        async def got() -> list[Message]:
            return self.of(event, linkedid)

        try:
            return (await wait_for(got, timeout=timeout, what=f"{event} for {linkedid}"))[0]
        except AssertionError as exc:
            seen = [
                (m.event, m.get("Channel"), m.get("Cause-txt") or m.get("Reason"))
                for m in self.seen if m.get("Linkedid") == linkedid
            ]  # fmt: skip
            completes = [dict(m) for m in self.seen if m.event == "AgentComplete"]
            raise AssertionError(f"{exc}; seen for the call: {seen}; {completes}") from None

    async def ended(self, linkedid: str, timeout: float = 20) -> float:
        """Wait until the agent's leg of the call hung up; the talk time in seconds, from
        the AgentConnect's to that Hangup's Timestamp (microseconds). Not AgentComplete's
        TalkTime: app_queue counts whole seconds of the clock (time() - start), up to a
        second off, and the event may come later than the Hangup or without the caller's
        Linkedid (cti.calls.model._AGENT_EVENTS)."""
        connect = await self.wait("AgentConnect", linkedid, timeout)

        async def gone() -> list[Message]:
            return [
                m for m in self.of("Hangup", linkedid) if m["Channel"] == connect["DestChannel"]
            ]

        hangup = (await wait_for(gone, timeout=timeout, what=f"{linkedid} agent hang-up"))[0]
        return float(hangup["Timestamp"]) - float(connect["Timestamp"])


async def agent(ami: AmiClient, ext: str, queue: str = "support") -> None:
    await ami.send_action(
        "QueueAdd",
        {"Queue": queue, "Interface": f"Local/{ext}@{SIM_CONTEXT}/n", "MemberName": f"a{ext}"},
    )


async def sim(ami: AmiClient, ring: float, talk: float) -> None:
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_RING", "Value": str(ring)})
    await ami.send_action("Setvar", {"Variable": "CTI_SIM_TALK", "Value": str(talk)})


async def call_queue(ami: AmiClient, queue: str = "support", caller: str = "13800138000") -> str:
    linkedid = f"t-{secrets.token_hex(6)}"
    await ami.send_action(
        "Originate",
        {
            "Channel": f"Local/{queue}@cti-queue", "Context": "cti-sim-caller", "Exten": "s",
            "Priority": "1", "CallerID": caller, "Variable": "CTI_SIM_HOLD=60",
            "Async": "true", "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
        },
    )  # fmt: skip
    return linkedid


async def rows_of(daemon: Daemon, linkedid: str) -> list[Recording]:
    return await RecordingStore(daemon.db).by_linkedid(linkedid)


async def settled(daemon: Daemon, linkedid: str, timeout: float = 30) -> list[Recording]:
    async def done() -> list[Recording]:
        rows = await rows_of(daemon, linkedid)
        return (
            rows if rows and all(r.status not in ("recording", "processing") for r in rows) else []
        )

    return await wait_for(done, timeout=timeout, what=f"recordings of {linkedid} processed")


class Http:
    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession) -> None:
        self.base = f"http://127.0.0.1:{daemon.http_port}"
        self.session = session
        self.daemon = daemon

    async def token(self, name: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await create_token(self.daemon.db, name, role)}"}

    async def get(self, path: str, headers: dict[str, str], **kw: Any) -> tuple[int, bytes, Any]:
        async with self.session.get(self.base + path, headers=headers, **kw) as r:
            return r.status, await r.read(), r.headers

    async def post(self, path: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
        async with self.session.post(self.base + path, headers=headers, json=body) as r:
            return r.status, await r.json()


async def test_answered_call_recorded_transcoded_served(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    daemon = await rec_daemon()
    started: list[RecordingStarted] = []
    stopped: list[RecordingStopped] = []
    daemon.bus.subscribe(RecordingStarted, started.append)
    daemon.bus.subscribe(RecordingStopped, stopped.append)
    await sim(ami, ring=0.3, talk=4)
    await agent(ami, "101")
    with Events(ami) as events:
        lid = await call_queue(ami)
        await events.wait("AgentConnect", lid)
        talk = await events.ended(lid)
    [row] = await settled(daemon, lid)
    # Asterisk started it at the bridge ([cti-rec-arm]); the daemon only adopted it
    assert (recorder_of(daemon).adopted, recorder_of(daemon).started) == (1, 0)
    assert row.status == "ready", row.reason
    assert (row.agent, row.queue, row.format, row.mode) == ("a101", "support", "mp3", "always")
    assert row.duration_s is not None and abs(row.duration_s - talk) <= 1.0, (row.duration_s, talk)
    path = asterisk.monitor_dir / row.path
    assert path.suffix == ".mp3" and path.is_file()
    assert not path.with_suffix(".wav").exists()  # original removed after verification
    data = path.read_bytes()
    assert row.size_bytes == len(data) and row.checksum == hashlib.sha256(data).hexdigest()
    loud = [w for w in audio.rms_windows(path) if w > 300]
    assert len(loud) >= 8, "the agent's tone should be in the recording"
    assert started and started[0].recording_id == row.id

    async def published() -> list[RecordingStopped]:  # (after the row says ready)
        return stopped

    await wait_for(published, timeout=5, what="RecordingStopped")
    assert stopped[0].recording_id == row.id and stopped[0].filename == row.path


async def test_playback_range_access_and_audit(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    daemon = await rec_daemon()
    await sim(ami, ring=0.3, talk=2)
    await agent(ami, "101")
    with Events(ami) as events:
        lid = await call_queue(ami)
        await events.ended(lid)
    [row] = await settled(daemon, lid)
    data = (asterisk.monitor_dir / row.path).read_bytes()
    size = len(data)
    url = f"/api/v1/recordings/{row.id}/audio"
    async with aiohttp.ClientSession() as session:
        http = Http(daemon, session)
        sup = await http.token("sup1", "supervisor")
        own = await http.token("a101", "agent")
        other = await http.token("a102", "agent")

        status, body, headers = await http.get(url, sup)
        assert (status, body) == (200, data)
        assert headers["Accept-Ranges"] == "bytes" and headers["Content-Type"] == "audio/mpeg"
        status, body, headers = await http.get(url, {**sup, "Range": "bytes=0-99"})
        assert (status, body) == (206, data[:100])
        assert headers["Content-Range"] == f"bytes 0-99/{size}"
        status, body, headers = await http.get(url, {**sup, "Range": "bytes=100-"})
        assert (status, body) == (206, data[100:])
        assert headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
        status, body, headers = await http.get(url, {**sup, "Range": "bytes=-50"})
        assert (status, body) == (206, data[-50:])
        r = f"bytes={size}-"
        status, body, headers = await http.get(url, {**sup, "Range": r})
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
        status, body, headers = await http.get(url + "?download=1", sup)
        assert status == 200 and "attachment" in headers["Content-Disposition"]

        # an agent plays their own call, not someone else's; no token, no audio
        assert (await http.get(url, own))[0] == 200
        assert (await http.get(url, other))[0] == 403
        assert (await http.get(url, {}))[0] == 401
        assert (await http.post("/api/v1/recordings/0/play-url", other))[0] == 404
        async with session.get(http.base + "/api/v1/recordings", headers=other) as resp:
            assert (await resp.json())["recordings"] == []
        async with session.get(http.base + "/api/v1/recordings?agent=a101", headers=sup) as resp:
            assert [r["id"] for r in (await resp.json())["recordings"]] == [row.id]
        assert (await http.post(f"/api/v1/recordings/{row.id}/play-url", other))[0] == 403

        # the page's signed URL: plays with Range, no bearer token; tampered links refused
        status, signed = await http.post(f"/api/v1/recordings/{row.id}/play-url", sup)
        assert status == 200 and "token" not in signed["url"].lower()
        status, body, headers = await http.get(signed["url"], {"Range": "bytes=10-19"})
        assert (status, body) == (206, data[10:20])
        assert (await http.get(signed["url"].replace("s=", "s=x"), {}))[0] == 403
        other_id = signed["url"].replace(f"/media/{row.id}?", f"/media/{row.id + 1}?")
        assert (await http.get(other_id, {}))[0] == 403

        # every listen is in the audit trail, visible to supervisors only
        assert (await http.get("/api/v1/recordings/audit", own))[0] == 403
        async with session.get(
            http.base + f"/api/v1/recordings/audit?recording_id={row.id}", headers=sup
        ) as resp:
            audit = (await resp.json())["audit"]
        actions = [(a["actor"], a["action"]) for a in audit]
        assert ("sup1", "listen") in actions and ("sup1", "download") in actions
        assert ("a101", "listen") in actions and ("a102", "listen") not in actions


async def test_traversal_attempts_are_refused(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    daemon = await rec_daemon()
    store = RecordingStore(daemon.db)
    now = datetime.now(UTC)
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF" + b"x" * 100)
    link_rel = recording_path("linkout", now, 0)
    link = asterisk.monitor_dir / link_rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    bad_paths = [
        "../../../../etc/passwd", "/etc/passwd", "%2e%2e/%2e%2e/etc/passwd",
        "2026/01/01/../../../../etc/passwd", link_rel,
    ]  # fmt: skip
    ids = []
    for p in bad_paths:
        row = await store.add(linkedid="x", started_at=now, path=p, status="ready", format="wav")
        ids.append(row.id)
    async with aiohttp.ClientSession() as session:
        http = Http(daemon, session)
        sup = await http.token("sup1", "supervisor")
        for rid in ids:
            status, body, _ = await http.get(f"/api/v1/recordings/{rid}/audio", sup)
            assert status == 404 and b"RIFF" not in body and b"root:" not in body
        for raw in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "1%2F..%2F2",
                    "-1", "1.0", "%2Fetc%2Fpasswd"):  # fmt: skip
            async with session.get(
                http.base + f"/api/v1/recordings/{raw}/audio", headers=sup
            ) as resp:
                assert resp.status == 404, raw
                assert b"root:" not in await resp.read()
        for raw in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd"):
            async with session.get(http.base + f"/recordings/media/{raw}") as resp:
                assert resp.status in (403, 404), raw
    link.unlink()


def silent_runs(rms: list[int], window_ms: int = 250, quiet: int = 30) -> list[tuple[int, int]]:
    """(start_ms, length_ms) of each run of quiet windows."""
    runs, start = [], None
    for i, value in enumerate([*rms, 10**9]):
        if value <= quiet and start is None:
            start = i
        elif value > quiet and start is not None:
            runs.append((start * window_ms, (i - start) * window_ms))
            start = None
    return runs


async def test_pause_resume_leaves_a_silent_gap(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    daemon = await rec_daemon()
    await sim(ami, ring=0.3, talk=7)
    await agent(ami, "101")
    async with aiohttp.ClientSession() as session:
        http = Http(daemon, session)
        own = await http.token("a101", "agent")
        other = await http.token("a102", "agent")
        with Events(ami) as events:
            lid = await call_queue(ami)
            await events.wait("AgentConnect", lid)

            async def recording() -> bool:
                # the daemon may see the answer after the test's own AMI link does
                call = daemon.features[0].recorder.calls.get(lid)  # type: ignore[attr-defined]
                return bool(call is not None and call.segment)

            await wait_for(recording, timeout=10, what="recording started")
            base = f"/api/v1/recordings/calls/{lid}"
            assert (await http.post(f"{base}/pause", other))[0] == 403
            await asyncio.sleep(1.5)
            status, live = await http.post(f"{base}/pause", own)
            assert status == 200 and live["recording"]["paused"] is True, live
            assert (await http.post(f"{base}/pause", own))[0] == 409
            await asyncio.sleep(2.5)
            status, live = await http.post(f"{base}/resume", own)
            assert status == 200 and live["recording"]["paused"] is False
            # an agent may not stop a mandatory recording
            assert (await http.post(f"{base}/stop", own))[0] == 409
            await events.ended(lid)
    [row] = await settled(daemon, lid)
    assert row.status == "ready" and row.paused_s >= 2.0, (row.status, row.paused_s)
    rms = audio.rms_windows(asterisk.monitor_dir / row.path)
    assert max(rms[:4]) > 300, "audio before the pause"
    gaps = [(start, length) for start, length in silent_runs(rms) if length >= 1500]
    assert len(gaps) == 1, (gaps, rms)
    start, length = gaps[0]
    assert 500 <= start <= 3500 and 1500 <= length <= 3500, gaps
    assert max(rms[(start + length) // 250 + 1 :]) > 300, "audio after the resume"


async def test_on_demand_policy_and_reasons(ami: AmiClient, rec_daemon: RecDaemonFactory) -> None:
    daemon = await rec_daemon(
        queues={"sales": {"policy": "on_demand"}, "support": {"policy": "never"}}
    )
    await sim(ami, ring=0.3, talk=3)
    await agent(ami, "101", "sales")
    await agent(ami, "102", "support")
    async with aiohttp.ClientSession() as session:
        http = Http(daemon, session)
        own = await http.token("a101", "agent")
        sup = await http.token("sup1", "supervisor")
        with Events(ami) as events:
            lid = await call_queue(ami, "sales")
            await events.wait("AgentConnect", lid)
            base = f"/api/v1/recordings/calls/{lid}"
            status, live = await http.post(f"{base}/start", own)
            assert status == 200 and live["recording"] is not None, live
            await asyncio.sleep(1)
            assert (await http.post(f"{base}/stop", own))[0] == 200
            await events.ended(lid)
            # a call nobody records: on "never" the supervisor cannot start it either
            lid2 = await call_queue(ami, "support")
            await events.wait("AgentConnect", lid2)
            assert (await http.post(f"/api/v1/recordings/calls/{lid2}/start", sup))[0] == 409
            await events.ended(lid2)
            lid3 = await call_queue(ami, "sales")
            await events.ended(lid3)
    [row] = await settled(daemon, lid)
    assert row.status == "ready" and row.mode == "on_demand"
    assert row.duration_s is not None and 0.5 <= row.duration_s <= 2.5
    [never] = await settled(daemon, lid2)
    assert never.status == "not_recorded" and "never" in never.reason
    [nobody] = await settled(daemon, lid3)
    assert nobody.status == "not_recorded" and "on demand" in nobody.reason


async def test_reconcile_removes_empty_and_reports_missing(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    from cti.cli import main as cli_main

    daemon = await rec_daemon()
    # a recordings root of the test's own: the session Asterisk's monitor folder holds
    # other tests' files (a short call's header-only wav is "empty" to reconcile too)
    root = tmp_path / "monitor"
    store = RecordingStore(daemon.db)
    now = datetime.now(UTC)
    old = now - timedelta(hours=1)
    empty_rel = recording_path("t-empty", old, 0)
    header_rel = recording_path("t-header", old, 0)
    gone_rel = recording_path("t-gone", old, 0)
    for rel, content in ((empty_rel, b""), (header_rel, b"RIFF" + b"\0" * 40)):
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content)
        os.utime(f, (old.timestamp(), old.timestamp()))
    gone = await store.add(
        linkedid="t-gone", started_at=old, path=gone_rel, status="ready", format="wav"
    )
    async with daemon.db.session() as s:
        s.add(Call(linkedid="t-answered", started_at=old, answered_at=old, ended_at=old,
                   queue="support", agent="a101", disposition="answered"))  # fmt: skip
        await s.commit()
    # the CLI, as an operator would run it, on the daemon's database and monitor dir
    toml = asterisk.base / "rec-test.toml"
    toml.write_text(
        f'[database]\nurl = "{daemon.settings.database.url}"\n'
        f'[recordings]\nroot = "{root}"\ngrace_s = 0\n'
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(
            cli_main, ["--config", str(toml), "recordings", "reconcile", "--json"]
        )
    assert code == 0
    report = json.loads(out.getvalue())
    assert sorted(report["empty_removed"]) == sorted([empty_rel, header_rel])
    assert not (root / empty_rel).exists()
    assert not (root / header_rel).exists()
    assert report["missing_files"] == [gone.id]
    assert report["missing_calls"] == ["t-answered"]
    assert (await store.get(gone.id)).status == "missing"  # type: ignore[union-attr]
    [why] = await store.by_linkedid("t-answered")
    assert why.status == "missing" and "without a recording" in why.reason
    # a second run finds nothing new
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        await asyncio.to_thread(
            cli_main, ["--config", str(toml), "recordings", "reconcile", "--json"]
        )
    assert not any(json.loads(out.getvalue()).values())
    toml.unlink()


async def spy_channels(ami: AmiClient) -> list[Message]:
    _, items = await ami.send_list_action("CoreShowChannels")
    return [m for m in items if m.get("Application") == "ChanSpy"]


async def test_listen_whisper_barge_spy_on_the_right_call(
    ami: AmiClient, rec_daemon: RecDaemonFactory
) -> None:
    daemon = await rec_daemon()
    await sim(ami, ring=0.3, talk=30)
    await agent(ami, "101")
    await agent(ami, "102", "sales")
    async with aiohttp.ClientSession() as session:
        http = Http(daemon, session)
        sup = await http.token("sup1", "supervisor")
        sup2 = await http.token("sup2", "supervisor")  # no device configured
        own = await http.token("a101", "agent")
        with Events(ami) as events:
            lid1 = await call_queue(ami, "support")
            lid2 = await call_queue(ami, "sales", caller="13900139000")
            c1 = await events.wait("AgentConnect", lid1)
            await events.wait("AgentConnect", lid2)
            target = c1["DestChannel"]
            assert (await http.post("/api/v1/recordings/monitor", own,
                                    {"linkedid": lid1, "mode": "listen"}))[0] == 403  # fmt: skip
            assert (await http.post("/api/v1/recordings/monitor", sup2,
                                    {"linkedid": lid1, "mode": "listen"}))[0] == 409  # fmt: skip
            assert (await http.post("/api/v1/recordings/monitor", sup,
                                    {"linkedid": lid1, "mode": "spy;x"}))[0] == 400  # fmt: skip
            assert (await http.post("/api/v1/recordings/monitor", sup,
                                    {"linkedid": "nope", "mode": "listen"}))[0] == 404  # fmt: skip
            for mode, options in (("listen", "qE"), ("whisper", "qwE"), ("barge", "qBE")):
                status, body = await http.post(
                    "/api/v1/recordings/monitor", sup, {"linkedid": lid1, "mode": mode}
                )
                assert status == 202, body

                async def spying(spy_id: str = body["channel"]) -> list[Message]:
                    return [m for m in await spy_channels(ami) if m.get("Uniqueid") == spy_id]

                [chan] = await wait_for(spying, timeout=15, what=f"{mode} spy channel")
                assert chan["ApplicationData"] == f"{target},{options}", chan["ApplicationData"]
                assert chan["Channel"].startswith("Local/900@cti-rec-sim-supervisor")
                await ami.send_action("Hangup", {"Channel": chan["Channel"]})
        async with session.get(http.base + "/api/v1/recordings/audit?actor=sup1",
                               headers=sup) as resp:  # fmt: skip
            audit = (await resp.json())["audit"]
    spied = [(a["action"], a["linkedid"]) for a in audit if a["action"].startswith("spy_")]
    assert sorted(spied) == [("spy_barge", lid1), ("spy_listen", lid1), ("spy_whisper", lid1)]


async def test_call_ending_while_ami_is_down_is_still_processed(
    ami: AmiClient, rec_daemon: RecDaemonFactory, proxy: CuttableProxy
) -> None:
    daemon = await rec_daemon(ami_port=proxy.port)
    recorder = daemon.features[0].recorder  # type: ignore[attr-defined]
    await sim(ami, ring=0.3, talk=3)
    await agent(ami, "101")
    with Events(ami) as events:
        lid = await call_queue(ami)
        await events.wait("AgentConnect", lid)

        async def recording() -> bool:
            call = recorder.calls.get(lid)
            return bool(call and call.segment)

        await wait_for(recording, timeout=10, what="recording started")
        proxy.cut()  # the call ends while the daemon is blind
        talk = await events.ended(lid)
    await asyncio.sleep(0.5)
    proxy.restore()
    [row] = await settled(daemon, lid)
    assert row.status == "ready" and row.duration_s is not None
    assert abs(row.duration_s - talk) <= 1.0
    assert lid not in recorder.calls


async def test_the_recording_is_attached_to_the_crm_interaction(
    ami: AmiClient, rec_daemon: RecDaemonFactory
) -> None:
    from crm_bridge.feature import CrmFeature

    daemon = await rec_daemon(extra=[CrmFeature()])
    await sim(ami, ring=0.3, talk=2)
    await agent(ami, "101")
    async with aiohttp.ClientSession() as session:
        http = Http(daemon, session)
        sup = await http.token("sup1", "supervisor")
        status, customer = await http.post(
            "/api/v1/customers", sup, {"name": "王芳", "phones": ["13800138000"]}
        )
        assert status == 201, customer
        with Events(ami) as events:
            lid = await call_queue(ami, caller="13800138000")
            await events.ended(lid)
        [row] = await settled(daemon, lid)
        # the customer was known when the agent answered
        assert (row.customer_id, row.customer_name) == (customer["id"], "王芳")
        async with session.get(http.base + "/api/v1/recordings?customer=王", headers=sup) as resp:
            assert [r["id"] for r in (await resp.json())["recordings"]] == [row.id]

        async def attached() -> Any:
            status, body, _ = await http.get(f"/api/v1/interactions/by-call/{lid}", sup)
            return status == 200 and (b := json.loads(body))["recording"] and b

        interaction = await wait_for(attached, timeout=15, what="the interaction's recording")
    assert interaction["recording"] == f"/api/v1/recordings/{row.id}"


async def test_click_to_call_is_recorded_once_the_customer_answers(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    """What acd's dialler does (Originate the agent's device into [cti-outbound], publish
    OutboundCallStarted), done here so this test needs no ACD store."""
    from cti.events import OutboundCallStarted

    daemon = await rec_daemon()
    await sim(ami, ring=0.3, talk=30)
    for var, value in (("CTI_SIM_OUTBOUND", "1"), ("CTI_SIM_CUSTOMER_TALK", "4")):
        await ami.send_action("Setvar", {"Variable": var, "Value": value})
    lid = f"cti-out-{secrets.token_hex(8)}"
    try:
        with Events(ami) as events:
            await ami.send_action(
                "Originate",
                {
                    "Channel": f"Local/101@{SIM_CONTEXT}/n", "Context": "cti-outbound",
                    "Exten": "8613800138000", "Priority": "1", "Async": "true",
                    "ChannelId": lid, "OtherChannelId": lid + "-2",
                },
            )  # fmt: skip
            daemon.bus.publish(
                OutboundCallStarted(
                    "a101", datetime.now(UTC), lid, "+8613800138000", "click_to_call"
                )
            )
            answered = await events.wait("DialEnd", lid)
            assert answered["DialStatus"] == "ANSWER"

            async def customer_gone() -> list[Message]:
                return [m for m in events.of("Hangup", lid)
                        if m["Uniqueid"] == answered["DestUniqueid"]]  # fmt: skip

            await wait_for(customer_gone, timeout=20, what="the customer to hang up")
        [row] = await settled(daemon, lid)
    finally:
        for var in ("CTI_SIM_OUTBOUND", "CTI_SIM_CUSTOMER_TALK"):
            await ami.send_action("Setvar", {"Variable": var, "Value": ""})
    assert row.status == "ready", row.reason
    assert (row.agent, row.queue, row.caller_num, row.mode) == (
        "a101", "", "+8613800138000", "always",
    )  # fmt: skip
    assert row.duration_s is not None and 3.5 <= row.duration_s <= 7.5, row.duration_s
    loud = [w for w in audio.rms_windows(asterisk.monitor_dir / row.path) if w > 300]
    assert len(loud) >= 8


async def test_the_recording_starts_while_the_store_is_locked(
    ami: AmiClient, rec_daemon: RecDaemonFactory, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #19: MixMonitor never waits for the row; the row is written once the store
    is back (a failing side step stops neither), and no task dies."""
    daemon = await rec_daemon()
    await sim(ami, ring=0.3, talk=2)
    await agent(ami, "101")
    other = Database.from_url(db_url)  # another process holding the store
    try:
        with Events(ami) as events, caplog.at_level(logging.WARNING):
            async with other.session() as locker:
                if other.dialect == "postgresql":
                    await locker.execute(text("LOCK TABLE recordings IN EXCLUSIVE MODE"))
                else:  # the transaction began with BEGIN IMMEDIATE: SQLite's write lock
                    await locker.execute(text("DELETE FROM recordings WHERE id < 0"))
                lid = await call_queue(ami)
                await events.wait("AgentConnect", lid)
                await events.wait("MixMonitorStart", lid, timeout=5)
                # held past SQLite's busy timeout: the row's insert fails, and is retried
                await asyncio.sleep(6 if other.dialect == "sqlite" else 1)
                await locker.rollback()
            await events.ended(lid)
            [row] = await settled(daemon, lid)
    finally:
        await other.dispose()
    assert row.status == "ready" and row.duration_s is not None and row.duration_s > 1
    died = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    errors = [
        r.getMessage() for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("recordings", "cti.tasks"))
    ]  # fmt: skip
    assert died == [] and errors == []
    if other.dialect == "sqlite":
        assert any(
            "retried" in r.getMessage() for r in caplog.records if r.name.startswith("recordings")
        )


async def test_asterisk_records_by_the_policy_the_console_set_for_the_next_call(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    """Decision 0027: the dialplan starts MixMonitor itself when the queue's policy (a
    global the daemon keeps up to date) says so; a console change applies to the next
    call; a caller who is never answered leaves no file behind."""
    daemon = await rec_daemon()
    recorder = recorder_of(daemon)
    await sim(ami, ring=0.3, talk=1)
    async with aiohttp.ClientSession() as session:
        http = Http(daemon, session)
        admin = await http.token("boss", "admin")

        async def set_policy(policy: str) -> None:
            url = f"{http.base}/api/v1/recordings/policy/queues/support"
            async with session.put(url, headers=admin, json={"policy": policy}) as resp:
                assert resp.status == 200, await resp.text()

        with Events(ami) as events:
            # armed while waiting, hung up before any agent: the header-only file goes
            waiting = await call_queue(ami)
            armed = await events.wait("UserEvent", waiting)
            assert armed["UserEvent"] == "CtiRecording" and armed["State"] == "armed"
            unused = asterisk.monitor_dir / armed["Path"]

            async def created() -> bool:
                # MixMonitor opens its file in its own thread, after the dialplan moved on
                return unused.is_file()

            await wait_for(created, timeout=5, what="the armed file created")
            await ami.send_action("Hangup", {"Channel": armed["Channel"]})

            async def removed() -> bool:
                return not unused.exists()

            await wait_for(removed, timeout=10, what="the unused armed file removed")

            await agent(ami, "101")
            await set_policy("never")
            lid = await call_queue(ami)
            await events.ended(lid)
            await set_policy("always")
            lid2 = await call_queue(ami)
            await events.ended(lid2)
    assert not events.of("MixMonitorStart", lid)  # Asterisk did not record it
    assert events.of("MixMonitorStart", lid2)
    [never] = await settled(daemon, lid)
    assert never.status == "not_recorded" and "never" in never.reason
    [row] = await settled(daemon, lid2)
    assert row.status == "ready" and row.duration_s is not None and row.duration_s > 0.5
    assert (recorder.adopted, recorder.started) == (1, 0)


async def test_a_caller_moved_to_a_queue_that_does_not_record_is_not_recorded(
    ami: AmiClient, rec_daemon: RecDaemonFactory, asterisk: ChrootAsterisk
) -> None:
    """Armed in support (always), moved to sales (on demand) by an overflow: the dialplan
    stops its MixMonitor, the unused file goes, and the call is not recorded there."""
    daemon = await rec_daemon()
    await sim(ami, ring=0.3, talk=1)
    with Events(ami) as events:
        lid = await call_queue(ami)
        armed = await events.wait("UserEvent", lid)
        assert armed["State"] == "armed"
        await agent(ami, "101", "sales")
        await ami.send_action(
            "Redirect",
            {"Channel": armed["Channel"], "Context": "cti-acd-overflow", "Exten": "sales",
             "Priority": "1"},
        )  # fmt: skip

        async def disarmed() -> list[Message]:
            return [m for m in events.of("UserEvent", lid) if m.get("State") == "disarmed"]

        [stop] = await wait_for(disarmed, timeout=10, what="the recording disarmed")
        assert (stop["Queue"], stop["Path"]) == ("sales", armed["Path"])
        await events.ended(lid)
    unused = asterisk.monitor_dir / armed["Path"]

    async def removed() -> bool:
        return not unused.exists()

    await wait_for(removed, timeout=10, what="the disarmed file removed")
    [row] = await settled(daemon, lid)
    assert row.status == "not_recorded" and "on demand" in row.reason
    assert recorder_of(daemon).adopted == 0
