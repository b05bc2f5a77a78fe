"""Audio work on recording files: blocking, so always called through ``asyncio.to_thread``.

MixMonitor writes 8 kHz 16-bit mono WAV whose RIFF header is correct only after the file
is closed; a call that produced no audio leaves a 44-byte header-only file. Transcoding
uses pydub (ffmpeg for the compressed formats); the original is removed only after the
compressed file has been decoded again and its duration matches.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():  # pydub imports audioop (deprecated in 3.11, gone in 3.13)
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub import AudioSegment

__all__ = [
    "WAV_HEADER_BYTES",
    "AudioInfo",
    "TranscodeError",
    "analyse",
    "is_empty_file",
    "rms_windows",
    "transcode",
    "wav_closed",
]

WAV_HEADER_BYTES = 44
_EXPORT = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus")}


class TranscodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    size_bytes: int
    checksum: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def wav_closed(path: Path) -> bool:
    """True once MixMonitor has closed the file: the RIFF size in the header matches the
    file's size (while writing, Asterisk leaves the header's sizes at their initial 0/36)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(WAV_HEADER_BYTES)
    except OSError:
        return False
    if len(head) < WAV_HEADER_BYTES or head[:4] != b"RIFF":
        return False
    riff_size: int = struct.unpack("<I", head[4:8])[0]
    return riff_size + 8 == size


def is_empty_file(path: Path) -> bool:
    """Zero-length or header-only (what an unanswered or silent-start call leaves)."""
    return path.stat().st_size <= WAV_HEADER_BYTES


def _load(path: Path) -> AudioSegment:
    if path.suffix == ".wav":
        return AudioSegment.from_wav(str(path))
    return AudioSegment.from_file(str(path))


def analyse(path: Path) -> AudioInfo:
    """Duration measured by decoding the audio, size and SHA-256 of the file."""
    seg = _load(path)
    return AudioInfo(len(seg) / 1000.0, path.stat().st_size, sha256_file(path))


def transcode(src: Path, dst: Path, fmt: str, bitrate: str) -> AudioInfo:
    """Write ``dst`` in ``fmt`` from the WAV ``src`` and verify it by decoding it again
    (duration within max(0.25 s, 2 %) of the original). ``src`` is not touched."""
    if fmt not in _EXPORT:
        raise TranscodeError(f"unknown format {fmt}")
    container, codec = _EXPORT[fmt]
    # a name of this attempt's own: two attempts on one file never share a temporary
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        original = AudioSegment.from_wav(str(src))
        want = len(original) / 1000.0
        original.export(str(tmp), format=container, codec=codec, bitrate=bitrate)
        got = len(AudioSegment.from_file(str(tmp), format=container)) / 1000.0
        if abs(got - want) > max(0.25, 0.02 * want):
            raise TranscodeError(
                f"duration mismatch after transcoding: {got:.2f} s vs {want:.2f} s"
            )
        os.replace(tmp, dst)
    except TranscodeError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise TranscodeError(f"transcoding failed: {exc}") from exc
    return AudioInfo(got, dst.stat().st_size, sha256_file(dst))


def rms_windows(path: Path, window_ms: int = 250) -> list[int]:
    """RMS of consecutive windows (for checks: silence vs audio)."""
    seg = _load(path)
    return [seg[i : i + window_ms].rms for i in range(0, len(seg), window_ms)]
