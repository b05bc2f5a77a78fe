"""The sounds the runner adds to the Asterisk root (cti.asterisk.sounds, decision 0032):
every Mandarin number sound Asterisk's Chinese number syntax plays, as 8 kHz mono WAV,
rendered once per version."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from cti.asterisk import sounds


def test_the_mandarin_numbers_are_rendered_into_the_root_once(tmp_path: Path) -> None:
    assert not sounds.installed(tmp_path)
    assert sounds.install(tmp_path)
    zh = tmp_path / "usr/share/asterisk/sounds/zh"
    names = {str(p.relative_to(zh).with_suffix("")) for p in zh.rglob("*.wav")}
    assert names == set(sounds.LANGUAGE_SOUNDS["zh"][1])
    assert {"digits/2", "digits/20", "digits/hundred", "digits/wan", "digits/yi"} <= names
    with wave.open(str(zh / "digits/2.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 8000 * 0.1  # something was spoken
    assert sounds.installed(tmp_path)
    stamp = (zh / "digits/2.wav").stat().st_mtime_ns
    assert sounds.install(tmp_path)  # marked: not rendered again
    assert (zh / "digits/2.wav").stat().st_mtime_ns == stamp


def test_without_espeak_nothing_is_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sounds, "ESPEAK", "no-such-espeak-ng")
    assert sounds.install(tmp_path) is False
    assert not sounds.installed(tmp_path)
