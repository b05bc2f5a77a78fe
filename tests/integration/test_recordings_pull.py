"""A node that pulls recordings from Asterisk's spool sidecar (recordings.spool): a file
the sidecar could not hand over when the call ended is marked so, and the next
reconcile pulls and processes it (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from cti.store.db import Database
from cti.store.models import Call
from recordings.config import RecordingsConfig
from recordings.naming import recording_path, with_format
from recordings.processing import NOT_PULLED, Processor
from recordings.reconcile import reconcile
from recordings.spool import SpoolSigner, spool_app
from recordings.store import RecordingStore
from tests.acceptance.harness import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub.generators import Sine

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "a-spool-secret-of-enough-length"


async def test_a_recording_the_sidecar_did_not_hand_over_is_pulled_by_reconcile(
    db: Database, tmp_path: Path
) -> None:
    spool, mine = tmp_path / "asterisk-spool", tmp_path / "node"
    rel = recording_path("L-late", NOW - timedelta(hours=1), 0)
    (spool / rel).parent.mkdir(parents=True)
    tone = Sine(440).to_audio_segment(duration=1500).set_frame_rate(8000)
    tone.set_channels(1).set_sample_width(2).export(str(spool / rel), format="wav")
    port = free_port()  # the sidecar is down when the call ends
    config = RecordingsConfig(
        root=mine, format="wav", spool_url=f"http://127.0.0.1:{port}", spool_secret=SECRET
    )
    store = RecordingStore(db)
    processor = Processor(config, store)
    row = await store.add(linkedid="L-late", started_at=NOW - timedelta(hours=1), path=rel,
                          status="recording")  # fmt: skip
    try:
        outcome = await processor.finish(row.id, close_timeout=0.5)
        assert outcome.status == "missing" and outcome.row is not None
        assert outcome.row.reason == NOT_PULLED
        assert (spool / rel).exists() and not (mine / rel).exists()

        runner = web.AppRunner(spool_app(spool, SpoolSigner(SECRET)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            report = await reconcile(processor, now=NOW)
        finally:
            await runner.cleanup()
        assert report.pulled_late == [row.id]
        done = await store.get(row.id)
        assert done is not None and done.status == "ready", done
        assert done.duration_s is not None and abs(done.duration_s - 1.5) < 0.2
        assert (mine / rel).is_file() and not (spool / rel).exists()
        assert report.missing_files == []
    finally:
        processor.close()


async def test_recordings_no_row_names_on_the_sidecar_are_adopted_once(
    db: Database, tmp_path: Path
) -> None:
    """Files left on Asterisk's spool (recorded while no node drove the server): the
    reconciles of two nodes of that server, running at once, adopt each orphan once (one
    row with the facts of the call it recorded, pulled into one node's root, off the
    spool); a file younger than ``grace_s`` is
    left to the live side; a header-only file and the WAV of a recording a node already
    holds as mp3 are removed from the spool. A second pass finds nothing."""
    spool = tmp_path / "asterisk-spool"
    now = datetime.now(UTC)
    old = time.time() - 1000  # past grace_s (300 s)

    def wav(rel: str, seconds: float, mtime: float | None = None) -> str:
        (spool / rel).parent.mkdir(parents=True, exist_ok=True)
        tone = Sine(440).to_audio_segment(duration=int(seconds * 1000)).set_frame_rate(8000)
        tone.set_channels(1).set_sample_width(2).export(str(spool / rel), format="wav")
        if mtime is not None:
            os.utime(spool / rel, (mtime, mtime))
        return rel

    lid = "srv-a-1764000000.7"  # the call's (its name has "srv-a-1764000000_7")
    orphan = wav(recording_path(lid, now - timedelta(hours=2), 0), 1.5, old)
    async with db.session() as s:  # recovered from the server's records by the takeover
        s.add(Call(linkedid=lid, started_at=now - timedelta(hours=2, minutes=1),
                   answered_at=now - timedelta(hours=2), ended_at=now - timedelta(hours=2),
                   queue="support", agent="ag1", caller_num_e164="+8613800138000",
                   disposition="answered"))  # fmt: skip
        await s.commit()
    young = wav(recording_path("L-young", now, 0), 1.0)
    header = recording_path("L-header", now - timedelta(hours=2), 0)
    (spool / header).write_bytes(b"RIFF" + (36).to_bytes(4, "little") + b"WAVE" + bytes(32))
    os.utime(spool / header, (old, old))
    done = wav(recording_path("L-done", now - timedelta(hours=3), 0), 1.0, old)
    store = RecordingStore(db)
    await store.add(linkedid="L-done", started_at=now - timedelta(hours=3),
                    path=with_format(done, "mp3"), status="ready", node="n1")  # fmt: skip

    roots = {n: tmp_path / n for n in ("n1", "n2")}
    held = roots["n1"] / with_format(done, "mp3")  # n1 pulled and compressed it
    held.parent.mkdir(parents=True)
    held.write_bytes(b"ID3" + bytes(500))

    runner = web.AppRunner(spool_app(spool, SpoolSigner(SECRET)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    processors = [
        Processor(RecordingsConfig(root=root, format="wav", spool_url=f"http://127.0.0.1:{port}",
                                   spool_secret=SECRET), store, node=name)
        for name, root in roots.items()
    ]  # fmt: skip
    try:
        first = await asyncio.gather(*(reconcile(p, now=now) for p in processors))
        assert sorted(r for rep in first for r in rep.orphans_adopted) == [orphan]
        # one row, with the call's facts (and so no "answered call without a recording")
        [row] = await store.by_linkedid(lid)
        assert row.status == "ready" and row.mode == "adopted", row
        assert (row.agent, row.queue, row.caller_num) == ("ag1", "support", "+8613800138000")
        assert row.duration_s is not None and abs(row.duration_s - 1.5) < 0.2
        assert (roots[row.node] / orphan).is_file() and not (spool / orphan).exists()
        assert sorted(r for rep in first for r in rep.empty_removed) == [header]
        assert sorted(r for rep in first for r in rep.spool_copies_removed) == [done]
        assert not (spool / header).exists() and not (spool / done).exists()
        assert (spool / young).exists() and await store.by_linkedid("L-young") == []

        again = await asyncio.gather(*(reconcile(p, now=now) for p in processors))
        for rep in again:
            assert rep.orphans_adopted == rep.empty_removed == rep.spool_copies_removed == []
            assert rep.missing_files == []  # neither marks the other's recording missing
        assert len(await store.by_linkedid(lid)) == 1
    finally:
        await runner.cleanup()
        for p in processors:
            p.close()
