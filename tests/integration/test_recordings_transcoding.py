"""Transcoding keeps up without taking the event loop (decision 0027): files convert side
by side up to the pool's bound, nicer than the daemon, the backlog is visible in /metrics
while they wait, and every row ends ``ready`` with its compressed file. Real WAV files,
real ffmpeg, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from cti.store.db import Database
from recordings.config import RecordingsConfig
from recordings.models import Recording
from recordings.naming import recording_path
from recordings.processing import TRANSCODE_NICE, Outcome, Processor, ProcessorMetrics
from recordings.store import RecordingStore
from tests.integration.test_recordings_store import tone_wav

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


class CountingProcessor(Processor):
    """Records how many files are converted at the same time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self.running = self.most = 0
        self.niceness: set[int] = set()

    def _finish_blocking(self, row: Recording, path: Path, closed: bool) -> Outcome:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            # what the ffmpeg this thread starts inherits
            child = subprocess.run(["nice"], capture_output=True, text=True, check=True)
            self.niceness.add(int(child.stdout))
        try:
            return super()._finish_blocking(row, path, closed)
        finally:
            with self._lock:
                self.running -= 1


async def test_files_convert_side_by_side_up_to_the_bound(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "monitor"
    config = RecordingsConfig(root=root, format="mp3")
    store = RecordingStore(db)
    processor = CountingProcessor(config, store, workers=2)
    registry = CollectorRegistry()
    ProcessorMetrics(processor, registry)
    ids = []
    for i in range(6):
        rel = recording_path(f"L-{i}", NOW, 0)
        tone_wav(root / rel, 2)
        row = await store.add(linkedid=f"L-{i}", started_at=NOW, path=rel, status="processing")
        ids.append(row.id)
    try:
        jobs = [asyncio.create_task(processor.finish(i, close_timeout=2)) for i in ids]
        await asyncio.sleep(0)
        assert b"cti_recordings_transcode_backlog 6.0" in generate_latest(registry)
        outcomes = await asyncio.wait_for(asyncio.gather(*jobs), 120)
    finally:
        processor.close()
    assert [o.status for o in outcomes] == ["ready"] * 6
    assert processor.most == 2  # side by side, never more than the bound
    # nicer than the daemon: the calls' work goes first when the cores are busy
    assert processor.niceness == {min(19, os.getpriority(os.PRIO_PROCESS, 0) + TRANSCODE_NICE)}
    metrics = generate_latest(registry)
    assert b"cti_recordings_transcode_backlog 0.0" in metrics
    assert b"cti_recordings_processed_total 6.0" in metrics
    for o in outcomes:
        assert o.row is not None and o.row.format == "mp3" and (root / o.row.path).is_file()


async def test_one_recording_is_processed_by_one_process_at_a_time(
    db: Database, tmp_path: Path
) -> None:
    """Two processors on one store (two nodes sharing a root, or the live side and a
    reconcile) asked to finish the same recording at once: one gets the claim and
    processes it, the other is told ``busy``; once done, asking again changes nothing.
    A claim left by a process that died is taken after it is stale."""
    root = tmp_path / "monitor"
    config = RecordingsConfig(root=root, format="mp3")
    store = RecordingStore(db)
    first, second = Processor(config, store, workers=1), Processor(config, store, workers=1)
    rel = recording_path("L-twice", NOW, 0)
    tone_wav(root / rel, 2)
    row = await store.add(linkedid="L-twice", started_at=NOW, path=rel, status="processing")
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(first.finish(row.id, close_timeout=2),
                           second.finish(row.id, close_timeout=2)), 60,
        )  # fmt: skip
        assert sorted(o.status for o in outcomes) == ["busy", "ready"], outcomes
        again = await first.finish(row.id, close_timeout=2)
        assert again.status == "ready"
        done = await store.get(row.id)
        assert done is not None and done.status == "ready" and done.claimed_at is None
        assert sorted(p.name for p in (root / rel).parent.iterdir()) == [Path(done.path).name]

        # a claim whose process died: busy until it is stale, then taken
        rel2 = recording_path("L-died", NOW, 0)
        tone_wav(root / rel2, 1)
        row2 = await store.add(linkedid="L-died", started_at=NOW, path=rel2, status="processing")
        assert await store.claim(row2.id)
        assert (await second.finish(row2.id, close_timeout=2)).status == "busy"
        await store.update(row2.id, claimed_at=NOW)  # long ago: stale
        assert (await second.finish(row2.id, close_timeout=2)).status == "ready"
    finally:
        first.close()
        second.close()
