"""Uploaded prompt recordings: real audio in common formats becomes an 8 kHz mono WAV
inside the prompt directory; anything else is refused with a reason."""

from __future__ import annotations

import math
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from ivr.audio import MAX_BYTES, AudioRefused, convert_upload, sniff, upload_path
from ivr.menus import Prompt
from ivr.prompts import PromptError, PromptStore


def tone_wav(path: Path, seconds: float = 1.0, rate: int = 44100, amp: int = 8000) -> bytes:
    frames = b"".join(
        struct.pack("<hh", v, v)
        for v in (
            int(amp * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(rate * seconds))
        )
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path.read_bytes()


def encoded(tmp: Path, fmt: str, codec: list[str]) -> bytes:
    src = tmp / "src.wav"
    tone_wav(src)
    out = tmp / f"out.{fmt}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *codec, str(out)],
        check=True,
    )
    return out.read_bytes()


@pytest.mark.parametrize(
    ("ext", "codec", "demuxer"),
    [
        ("mp3", ["-c:a", "libmp3lame"], "mp3"),
        ("ogg", ["-c:a", "libopus"], "ogg"),
        ("webm", ["-c:a", "libopus"], "matroska"),
        ("flac", [], "flac"),
    ],
)
def test_common_formats_become_8khz_mono_wav(
    tmp_path: Path, ext: str, codec: list[str], demuxer: str
) -> None:
    raw = encoded(tmp_path, ext, codec)
    assert sniff(raw[:16]) == demuxer
    out = convert_upload(raw, tmp_path / "prompts")
    assert out.path == upload_path(tmp_path / "prompts", out.id)
    assert out.path.parent == tmp_path / "prompts" and len(out.id) == 40
    with wave.open(str(out.path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    assert 0.9 < out.duration_s < 1.2


def test_same_audio_same_id_and_playable_by_asterisk(tmp_path: Path) -> None:
    raw = tone_wav(tmp_path / "a.wav")
    first = convert_upload(raw, tmp_path / "p")
    assert convert_upload(raw, tmp_path / "p") == first
    store = PromptStore(tmp_path / "p", "/srv/cti/x/lib/sounds/cti")
    prompt = Prompt(upload=first.id)
    assert store.render(prompt) == first.path
    assert store.host_path(prompt) == first.path
    assert store.playable(prompt) == f"/srv/cti/x/lib/sounds/cti/upload-{first.id}"
    with pytest.raises(PromptError, match="missing"):
        store.render(Prompt(upload="0" * 40))


def test_not_audio_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioRefused, match="not an audio file"):
        convert_upload(b"<html><script>alert(1)</script></html>" * 10, tmp_path)
    # a playlist that would make ffmpeg open other files is not even handed to it
    with pytest.raises(AudioRefused, match="not an audio file"):
        convert_upload(b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n/etc/passwd\n" * 4, tmp_path)
    with pytest.raises(AudioRefused, match="empty"):
        convert_upload(b"RIFF", tmp_path)
    # a WAV header over garbage
    raw = tone_wav(tmp_path / "a.wav")
    with pytest.raises(AudioRefused, match=r"could not be decoded|shorter"):
        convert_upload(raw[:44] + b"\xff\x7f\x00\x80" * 100, tmp_path / "x")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_silence_short_long_and_big_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioRefused, match="silent"):
        convert_upload(tone_wav(tmp_path / "s.wav", amp=0), tmp_path / "p")
    with pytest.raises(AudioRefused, match="shorter"):
        convert_upload(tone_wav(tmp_path / "t.wav", seconds=0.1), tmp_path / "p")
    with pytest.raises(AudioRefused, match="larger"):
        convert_upload(b"RIFF" + b"\0" * MAX_BYTES, tmp_path / "p")
    long_src = tmp_path / "long.wav"
    with wave.open(str(long_src), "wb") as w:  # 301 s of a quiet tone, 8 kHz mono
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack("<" + "h" * 8000, *([0, 200] * 4000)) * 301)
    with pytest.raises(AudioRefused, match="longer"):
        convert_upload(long_src.read_bytes(), tmp_path / "p")
    assert not (tmp_path / "p").exists() or list((tmp_path / "p").iterdir()) == []
