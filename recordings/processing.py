"""After a recording stops: wait for MixMonitor to close the file, measure it, transcode
it, verify the copy, and fill in the metadata row. Blocking work runs in threads; one
file at a time (transcoding is CPU work on a machine that also carries calls)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from recordings import audio
from recordings.config import RecordingsConfig
from recordings.models import Recording
from recordings.naming import PathRefused, resolve_inside, with_format
from recordings.store import RecordingStore

__all__ = ["Outcome", "Processor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str  # ready | empty | missing
    row: Recording | None


def _wait_closed(path: Path, timeout: float) -> bool:
    """Poll until MixMonitor closed ``path`` (header sizes match) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and audio.wav_closed(path):
            # a header-only file looks closed while it is still open: give it a moment
            if path.stat().st_size > audio.WAV_HEADER_BYTES:
                return True
            time.sleep(0.3)
            return audio.wav_closed(path)
        time.sleep(0.1)
    return path.exists()


class Processor:
    def __init__(self, config: RecordingsConfig, store: RecordingStore) -> None:
        self.config = config
        self.store = store
        self._one_at_a_time = asyncio.Semaphore(1)

    @property
    def root(self) -> Path:
        return self.config.root_dir

    async def finish(self, row_id: int, *, close_timeout: float = 15.0) -> Outcome:
        row = await self.store.get(row_id)
        if row is None:
            return Outcome("missing", None)
        try:
            path = resolve_inside(self.root, row.path)
        except PathRefused as exc:
            row = await self.store.update(row_id, status="missing", reason=f"bad path: {exc}")
            return Outcome("missing", row)
        async with self._one_at_a_time:
            outcome = await asyncio.to_thread(self._finish_blocking, row, path, close_timeout)
        return Outcome(outcome.status, await self.apply(outcome))

    def _finish_blocking(self, row: Recording, path: Path, close_timeout: float) -> Outcome:
        # runs in a worker thread on a detached row; the event loop writes it (apply)
        if path.suffix == ".wav" and not _wait_closed(path, close_timeout):
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
        return await self.store.update(
            row.id, status=row.status, reason=row.reason, duration_s=row.duration_s,
            size_bytes=row.size_bytes, checksum=row.checksum, format=row.format, path=row.path,
        )  # fmt: skip
