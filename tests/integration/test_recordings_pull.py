"""A node that pulls recordings from Asterisk's spool sidecar (recordings.spool): a file
the sidecar could not hand over when the call ended is marked so, and the next
reconcile pulls and processes it (on SQLite and PostgreSQL)."""

from __future__ import annotations

import socket
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from cti.store.db import Database
from recordings.config import RecordingsConfig
from recordings.naming import recording_path
from recordings.processing import NOT_PULLED, Processor
from recordings.reconcile import reconcile
from recordings.spool import SpoolSigner, spool_app
from recordings.store import RecordingStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub.generators import Sine

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "a-spool-secret-of-enough-length"


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_recording_the_sidecar_did_not_hand_over_is_pulled_by_reconcile(
    db: Database, tmp_path: Path
) -> None:
    spool, mine = tmp_path / "asterisk-spool", tmp_path / "node"
    rel = recording_path("L-late", NOW - timedelta(hours=1), 0)
    (spool / rel).parent.mkdir(parents=True)
    tone = Sine(440).to_audio_segment(duration=1500).set_frame_rate(8000)
    tone.set_channels(1).set_sample_width(2).export(str(spool / rel), format="wav")
    port = _unused_port()  # the sidecar is down when the call ends
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
