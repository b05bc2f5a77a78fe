"""Sounds the Asterisk root holds besides Debian's, and the one text-to-speech renderer.

app_queue's announcements say numbers (the caller's position, the minutes) through
main/say.c in the channel's language, from ``<astdatadir>/sounds/<lang>/digits/*``:
Mandarin numbers need the sounds Asterisk's Chinese number syntax plays (0-9, the tens,
百 千 万 亿). Debian ships no Mandarin sounds, so the runner renders them with espeak-ng
into the root once, when it makes the root (:func:`install`, called by
:func:`cti.asterisk.rootfs.ensure_root`): they are fixed files, the same for every store,
so no node writes into Asterisk's sounds directory (decision 0032).

:func:`render_wav` is the renderer the IVR's prompts use too (ivr.prompts): espeak-ng
(the text as an argument, no shell) -> 8 kHz mono 16-bit WAV, which format_wav plays
without transcoding.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

__all__ = ["ESPEAK", "LANGUAGE_SOUNDS", "SoundError", "install", "installed", "render_wav"]

ESPEAK = "espeak-ng"
RENDER_TIMEOUT_S = 30
#: bump when the sounds below change: roots made before get them again
VERSION = 1
_ZH_DIGITS = "零一二三四五六七八九"
#: language -> espeak-ng voice -> sound name (under sounds/<language>/) -> text
LANGUAGE_SOUNDS: dict[str, tuple[str, dict[str, str]]] = {
    "zh": ("cmn", {
        **{f"digits/{i}": _ZH_DIGITS[i] for i in range(10)},
        "digits/10": "十",
        **{f"digits/{i * 10}": f"{_ZH_DIGITS[i]}十" for i in range(2, 10)},
        "digits/hundred": "百",
        "digits/thousand": "千",
        "digits/wan": "万",
        "digits/yi": "亿",
    }),
}  # fmt: skip


class SoundError(RuntimeError):
    """espeak-ng could not speak a text."""


def render_wav(text: str, voice: str, speed: int = 160) -> bytes:
    """``text`` spoken by espeak-ng's ``voice`` as an 8 kHz mono 16-bit WAV (blocking)."""
    with tempfile.TemporaryDirectory(prefix="cti-tts-") as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            subprocess.run(
                [ESPEAK, "-v", voice, "-s", str(speed), "-w", str(raw), "--", text],
                check=True, capture_output=True, timeout=RENDER_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise SoundError(f"espeak-ng failed for voice {voice!r}: {exc}") from exc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pydub's audioop on 3.11
            from pydub import AudioSegment

            sound = AudioSegment.from_wav(raw)
            sound = sound.set_frame_rate(8000).set_channels(1).set_sample_width(2)
            out = Path(tmp) / "out.wav"
            sound.export(out, format="wav")
        return out.read_bytes()


def installed(root: Path) -> bool:
    return (root / f".cti-sounds-{VERSION}").exists()


def install(root: Path) -> bool:
    """:data:`LANGUAGE_SOUNDS` in ``root``'s sounds directory, once per :data:`VERSION`.
    False (and nothing marked) when espeak-ng is not installed: Asterisk then says
    numbers in English."""
    if installed(root):
        return True
    if shutil.which(ESPEAK) is None:
        return False
    sounds = root / "usr/share/asterisk/sounds"
    for language, (voice, texts) in LANGUAGE_SOUNDS.items():
        for name, text in texts.items():
            _write(render_wav(text, voice), sounds / language / f"{name}.wav")
    (root / f".cti-sounds-{VERSION}").write_text(f"{VERSION}\n")
    return True


def _write(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    tmp.replace(target)
