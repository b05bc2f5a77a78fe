"""Text prompts become 8 kHz mono 16-bit WAV files named by content hash."""

from __future__ import annotations

import wave
from pathlib import Path

from ivr.menus import Prompt
from ivr.prompts import PromptStore


def test_mandarin_and_english_prompts_render_once(tmp_path: Path) -> None:
    store = PromptStore(tmp_path / "p", "/srv/cti/x/lib/sounds/cti/")
    zh = Prompt(text="您好欢迎致电。", voice="cmn")
    en = Prompt(text="Welcome.", voice="en")
    paths = [store.render(zh), store.render(en)]
    for path in paths:
        assert path is not None
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() > 8000 * 0.3  # something was spoken
    first = paths[0]
    assert first is not None and first != paths[1]
    assert store.playable(zh) == f"/srv/cti/x/lib/sounds/cti/{first.stem}"
    # cached by content: the same text is not rendered again, a changed text is new
    mtime = first.stat().st_mtime_ns
    assert store.render(Prompt(text="您好欢迎致电。", voice="cmn")) == first
    assert first.stat().st_mtime_ns == mtime
    assert store.render(Prompt(text="您好。", voice="cmn")) != first
    assert sorted(p.suffix for p in (tmp_path / "p").iterdir()) == [".wav"] * 3


def test_file_prompts_are_played_as_given(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, "/x")
    assert store.render(Prompt(file="beep")) is None
    assert store.playable(Prompt(file="custom/welcome")) == "custom/welcome"
