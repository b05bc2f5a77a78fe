"""After a recording stops: wait for MixMonitor to close the file, measure it, transcode
it, verify the copy, and fill in the metadata row.

Transcoding is CPU work (ffmpeg) on a machine that also carries calls (decision 0027):
it runs in its own thread pool of ``workers`` threads (default: the machine's cores), so
files are converted side by side up to that bound, and the event loop, the default
executor and the call path never wait for it. Those threads, and the ffmpeg processes
they start (a child inherits its thread's niceness), run ``TRANSCODE_NICE`` steps nicer
than the daemon: when the cores are busy, the calls' work (the daemon's event loop,
Asterisk) goes first and the backlog waits. Waiting for MixMonitor to close a file is
asynchronous polling, outside the pool. ``backlog`` (files stopped and not yet done) is
``cti_recordings_transcode_backlog`` in /metrics (:class:`ProcessorMetrics`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy.exc import IntegrityError

from recordings import audio
from recordings.config import RecordingsConfig
from recordings.models import Recording
from recordings.naming import PathRefused, resolve_inside, with_format
from recordings.spool import SpoolClient, SpoolSigner
from recordings.store import PROCESSABLE, RecordingStore

__all__ = ["NOT_PULLED", "Outcome", "Processor", "ProcessorMetrics", "default_workers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    #: ready | empty | missing, or busy: another process holds the claim (its row as read)
    status: str
    row: Recording | None


#: a recording the spool sidecar did not hand over (reconcile asks again: recordings.spool)
NOT_PULLED = "not pulled from Asterisk's spool (sidecar)"

#: how much nicer than the daemon the transcoding threads and their ffmpeg run
TRANSCODE_NICE = 10


def _nicer() -> None:
    """A transcoding thread's initializer: lower this thread's priority (Linux: niceness
    is per thread; the processes it starts inherit it)."""
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + TRANSCODE_NICE))
    except OSError as exc:  # not fatal: the files still convert, at the daemon's priority
        log.warning("transcoding runs at the daemon's priority: %s", exc)


def default_workers() -> int:
    """Transcoding threads: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _probe(path: Path) -> str:
    """``"closed"`` (MixMonitor finished a file with audio), ``"header"`` (a header-only
    file that looks closed: it may still be open) or ``"open"``."""
    if not path.exists() or not audio.wav_closed(path):
        return "open"
    return "closed" if path.stat().st_size > audio.WAV_HEADER_BYTES else "header"


async def _wait_closed(path: Path, timeout: float) -> bool:
    """Poll until MixMonitor closed ``path`` (header sizes match) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(_probe, path)
        if state == "closed":
            return True
        if state == "header":  # give it a moment
            await asyncio.sleep(0.3)
            return await asyncio.to_thread(audio.wav_closed, path)
        await asyncio.sleep(0.1)
    return await asyncio.to_thread(path.exists)


class Processor:
    def __init__(
        self, config: RecordingsConfig, store: RecordingStore, *, workers: int | None = None,
        node: str = "",
    ) -> None:  # fmt: skip
        self.config = config
        self.store = store
        #: this node's name in a cluster ("" on one node): rows it processes are held here
        self.node = node
        self.workers = workers or default_workers()
        self._pool: ThreadPoolExecutor | None = None
        self._slots = asyncio.Semaphore(self.workers)
        self.spool: SpoolClient | None = None
        if config.spool_url:
            self.spool = SpoolClient(config.spool_url, SpoolSigner(config.spool_secret))
        self.backlog = 0  # files stopped and not finished yet (waiting, queued, converting)
        self.finished = 0

    @property
    def root(self) -> Path:
        return self.config.root_dir

    async def finish(self, row_id: int, *, close_timeout: float = 15.0) -> Outcome:
        """Process the recording's file, if this caller gets the store's claim on it (the
        one place that decides who processes a recording): else ``busy`` while another
        holds it, or the row's status when it is processed already."""
        self.backlog += 1
        try:
            if not await self.store.claim(row_id):
                row = await self.store.get(row_id)
                if row is None:
                    return Outcome("missing", None)
                return Outcome("busy" if row.status in PROCESSABLE else row.status, row)
            try:
                outcome = await self._finish(row_id, close_timeout)
            except BaseException:
                with contextlib.suppress(Exception):  # free the claim for a later attempt
                    await asyncio.shield(self.store.update(row_id, claimed_at=None))
                raise
            self.finished += 1
            return outcome
        finally:
            self.backlog -= 1

    async def _finish(self, row_id: int, close_timeout: float) -> Outcome:
        row = await self.store.get(row_id)
        if row is None:
            return Outcome("missing", None)
        try:
            path = resolve_inside(self.root, row.path)
        except PathRefused as exc:
            row = await self.store.update(
                row_id, status="missing", reason=f"bad path: {exc}", claimed_at=None
            )
            return Outcome("missing", row)
        if self.spool is not None:  # Asterisk on another host: its copy first
            if not await self.spool.pull(row.path, path, close_timeout):
                row = await self.store.update(
                    row_id, status="missing", reason=NOT_PULLED, claimed_at=None
                )
                return Outcome("missing", row)
        closed = path.suffix != ".wav" or await _wait_closed(path, close_timeout)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.workers, thread_name_prefix="cti-transcode", initializer=_nicer
            )
        async with self._slots:  # queued here, not in the pool: the backlog stays visible
            outcome = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._finish_blocking, row, path, closed
            )
        return Outcome(outcome.status, await self.apply(outcome))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _finish_blocking(self, row: Recording, path: Path, closed: bool) -> Outcome:
        # runs in a transcoding thread on a detached row; the event loop writes it (apply)
        if not closed:
            return self._result(row, "missing", reason="MixMonitor wrote no file")
        if not path.exists():
            return self._result(row, "missing", reason="file not found")
        if audio.is_empty_file(path):
            path.unlink(missing_ok=True)
            return self._result(row, "empty", reason="no audio (header-only file removed)")
        try:
            info = audio.analyse(path)
        except Exception as exc:
            return self._result(row, "missing", reason=f"unreadable audio: {exc}")
        if info.duration_s <= 0:
            path.unlink(missing_ok=True)
            return self._result(row, "empty", reason="no audio (file removed)")
        fmt, relpath, reason = "wav", row.path, ""
        if self.config.format != "wav" and path.suffix == ".wav":
            target_rel = with_format(row.path, self.config.format)
            target = path.with_name(Path(target_rel).name)
            try:
                info = audio.transcode(path, target, self.config.format, self.config.bitrate)
                fmt, relpath = self.config.format, target_rel
                if not self.config.keep_original:
                    path.unlink(missing_ok=True)
            except audio.TranscodeError as exc:
                log.warning("recording %s kept as WAV: %s", row.id, exc)
                reason = str(exc)
        return self._result(
            row, "ready", reason=reason, duration_s=round(info.duration_s, 3),
            size_bytes=info.size_bytes, checksum=info.checksum, format=fmt, path=relpath,
        )  # fmt: skip

    @staticmethod
    def _result(row: Recording, status: str, **values: object) -> Outcome:
        for key, value in values.items():
            setattr(row, key, value)
        row.status = status
        return Outcome(status, row)

    async def apply(self, outcome: Outcome) -> Recording | None:
        """Write what :meth:`finish` computed to the store."""
        row = outcome.row
        if row is None:
            return None
        try:
            return await self.store.update(
                row.id, status=row.status, reason=row.reason, duration_s=row.duration_s,
                size_bytes=row.size_bytes, checksum=row.checksum, format=row.format,
                path=row.path, node=self.node, claimed_at=None,
            )  # fmt: skip
        except IntegrityError:
            # the file it became (the mp3 of its WAV) has a row already: this row was a
            # second one of that recording (one row per file, decision 0033)
            held = await self.store.at_path(row.path)
            if held is None or held.id == row.id:  # refused for something else
                raise
            log.warning("recording %s is %s's file (%s): merged", row.id, held.id, row.path)
            await self.store.merge(row.id, into=held.id)
            return held


class ProcessorMetrics(Collector):
    """/metrics view of a :class:`Processor`: its backlog and what it finished."""

    def __init__(self, processor: Processor, registry: CollectorRegistry | None = None) -> None:
        self.processor = processor
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        p = self.processor
        backlog = GaugeMetricFamily(
            "cti_recordings_transcode_backlog",
            "Recordings stopped and not processed yet (waiting for the file, queued, converting)",
        )
        backlog.add_metric([], p.backlog)
        yield backlog
        workers = GaugeMetricFamily(
            "cti_recordings_transcode_workers", "Recordings converted side by side at most"
        )
        workers.add_metric([], p.workers)
        yield workers
        done = CounterMetricFamily(
            "cti_recordings_processed", "Recordings processed since the daemon started"
        )
        done.add_metric([], p.finished)
        yield done
