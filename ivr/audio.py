"""Uploaded prompt recordings: refuse what is not real audio, convert the rest.

An admin uploads a recording (a studio WAV, an MP3, a browser's WebM/Opus...). The bytes
are hostile until proven otherwise:

- at most :data:`MAX_BYTES`; the container is recognised from its first bytes (WAV, MP3,
  Ogg, FLAC, Matroska/WebM, MP4/M4A) and ffmpeg is told that format explicitly, so no
  other demuxer (playlists that open other files or URLs) ever reads them; ffmpeg runs
  without a shell, with only the ``file`` protocol, in a temporary directory, with a
  time limit;
- the decoded sound must last between :data:`MIN_SECONDS` and :data:`MAX_SECONDS` and
  must not be silent;
- it becomes what Asterisk plays without transcoding (8 kHz mono 16-bit PCM WAV), named
  ``upload-<id>.wav`` inside the prompt directory only, where ``<id>`` is the SHA-256
  prefix of the converted audio: a name no upload can choose.

Blocking: run :func:`convert_upload` in a thread.
"""

from __future__ import annotations

import array
import hashlib
import os
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_BYTES",
    "MAX_SECONDS",
    "AudioRefused",
    "Converted",
    "convert_upload",
    "sniff",
    "upload_path",
]

MAX_BYTES = 16 * 1024 * 1024
MIN_SECONDS = 0.3
MAX_SECONDS = 300.0
#: peak amplitude (of 32767) below which a recording counts as silence
SILENCE_PEAK = 64
FFMPEG = "ffmpeg"
FFMPEG_TIMEOUT_S = 60
RATE = 8000


class AudioRefused(ValueError):
    """The upload is not a usable recording (message meant for the admin)."""


@dataclass(frozen=True, slots=True)
class Converted:
    id: str
    path: Path
    duration_s: float


def sniff(head: bytes) -> str | None:
    """The ffmpeg demuxer for a file starting with ``head``, None if not one we accept."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[4:8] == b"ftyp":
        return "mov"
    return None


def upload_path(directory: Path, upload_id: str) -> Path:
    return directory / f"upload-{upload_id}.wav"


def _peak(frames: bytes) -> int:
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return max((abs(x) for x in samples), default=0)


def convert_upload(raw: bytes, directory: Path) -> Converted:
    """Check and convert an uploaded recording into ``directory``; raises
    :class:`AudioRefused` saying why not."""
    if len(raw) > MAX_BYTES:
        raise AudioRefused(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if len(raw) < 64:
        raise AudioRefused("the file is empty or too small to be a recording")
    fmt = sniff(raw[:16])
    if fmt is None:
        raise AudioRefused("not an audio file we can read (WAV, MP3, Ogg, FLAC, WebM, M4A)")
    with tempfile.TemporaryDirectory(prefix="cti-upload-") as tmp:
        src, out = Path(tmp) / "in.bin", Path(tmp) / "out.wav"
        src.write_bytes(raw)
        cmd = [
            FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error",
            "-protocol_whitelist", "file", "-f", fmt, "-i", str(src),
            "-vn", "-sn", "-dn", "-map_metadata", "-1", "-t", str(MAX_SECONDS + 1),
            "-ac", "1", "-ar", str(RATE), "-c:a", "pcm_s16le", "-fflags", "+bitexact",
            "-flags:a", "+bitexact", "-f", "wav", str(out),
        ]  # fmt: skip
        try:
            result = subprocess.run(
                cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, cwd=tmp, check=False
            )
        except subprocess.TimeoutExpired:
            raise AudioRefused("decoding the file took too long") from None
        except OSError as exc:
            raise RuntimeError(f"ffmpeg cannot run: {exc}") from exc
        if result.returncode != 0 or not out.is_file():
            why = result.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = why[-1][:200] if why else "no audio stream"
            raise AudioRefused(f"the file could not be decoded as audio ({detail})")
        try:
            with wave.open(str(out)) as w:
                nframes, frames = w.getnframes(), w.readframes(w.getnframes())
        except (wave.Error, EOFError) as exc:
            raise AudioRefused(f"the file could not be decoded as audio ({exc})") from None
        duration = nframes / RATE
        if duration < MIN_SECONDS:
            raise AudioRefused(f"the recording is shorter than {MIN_SECONDS} s")
        if duration > MAX_SECONDS:
            raise AudioRefused(f"the recording is longer than {MAX_SECONDS:.0f} s")
        if _peak(frames) < SILENCE_PEAK:
            raise AudioRefused("the recording is silent")
        data = out.read_bytes()
        upload_id = hashlib.sha256(data).hexdigest()[:40]
        directory.mkdir(parents=True, exist_ok=True)
        target = upload_path(directory, upload_id)
        if not target.exists():
            part = directory / f".upload-{upload_id}.{os.getpid()}.tmp"
            part.write_bytes(data)
            part.chmod(0o644)
            part.replace(target)  # atomic: Asterisk never sees half a file
    return Converted(upload_id, target, duration)
