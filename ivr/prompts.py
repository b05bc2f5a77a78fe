"""Prompts Asterisk can play: recorded files as they are, texts spoken by espeak-ng.

A text prompt is rendered once (espeak-ng -> pydub -> 8 kHz mono 16-bit WAV, the format
``format_wav`` plays without transcoding) into ``prompt_dir`` under the SHA-256 of what
determines the sound (voice, speed, text), so a reload re-renders only what changed and
identical texts share a file. Asterisk plays it by the same name under
``prompt_dir_asterisk`` (the directory as Asterisk sees it, e.g. inside its chroot), or,
with ``[ivr] media_url``, by a signed URL the node serves it at (:mod:`ivr.media`): then
Asterisk needs no view of ``prompt_dir`` at all.
espeak-ng gets the text as an argument list (no shell): the text is admin data, but even
so nothing is interpreted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cti.asterisk.sounds import SoundError, render_wav
from ivr.audio import upload_path
from ivr.media import MediaSigner
from ivr.media_cache import MediaCache
from ivr.menus import Prompt

__all__ = ["PromptError", "PromptStore", "Speaker", "install_file"]

log = logging.getLogger(__name__)


class PromptError(RuntimeError):
    pass


class PromptStore:
    def __init__(self, host_dir: Path, asterisk_dir: str, media: MediaSigner | None = None) -> None:
        self.host_dir = host_dir
        self.asterisk_dir = asterisk_dir.rstrip("/")
        #: when set, rendered prompts are played from the node's HTTP (ivr.media)
        self.media = media

    @staticmethod
    def key(prompt: Prompt) -> str:
        material = f"espeak-ng\0{prompt.voice}\0{prompt.speed}\0{prompt.text}".encode()
        return hashlib.sha256(material).hexdigest()[:40]

    def playable(self, prompt: Prompt) -> str:
        """What STREAM FILE / GET DATA / queues.conf get for this prompt: an Asterisk
        sound as it is, else the rendered file by its path in ``asterisk_dir`` (no
        extension) or, with ``media``, by its signed URL."""
        if prompt.file is not None:
            return prompt.file
        if prompt.upload is not None:
            name = upload_path(Path(), prompt.upload).stem
        else:
            name = self.key(prompt)
        if self.media is not None:
            return self.media.url(name)
        return f"{self.asterisk_dir}/{name}"

    def host_path(self, prompt: Prompt) -> Path | None:
        """The WAV file of a text or uploaded prompt in ``host_dir`` (None for a sound
        of Asterisk's own, which only Asterisk can read)."""
        if prompt.upload is not None:
            return upload_path(self.host_dir, prompt.upload)
        if prompt.text is not None:
            return self.host_dir / f"{self.key(prompt)}.wav"
        return None

    def render(self, prompt: Prompt) -> Path | None:
        """Make sure a text prompt's file exists, check an uploaded one is there
        (blocking: run in a thread)."""
        if prompt.upload is not None:
            path = upload_path(self.host_dir, prompt.upload)
            if not path.is_file():
                raise PromptError(f"the uploaded recording {prompt.upload} is missing")
            return path
        if prompt.text is None:
            return None
        target = self.host_dir / f"{self.key(prompt)}.wav"
        if target.exists():
            return target
        try:
            data = render_wav(prompt.text, prompt.voice, prompt.speed)
        except SoundError as exc:
            raise PromptError(str(exc)) from exc
        install_file(data, target)  # atomic: Asterisk never sees half a file
        return target


#: espeak-ng voices of the languages queues speak (cti.services.PromptSpeaker)
VOICES = {"zh": "cmn", "en": "en"}


#: a language sound's name (digits/5, digits/hundred): no "..", no absolute path
_SOUND_NAME = re.compile(r"[a-z0-9_-]{1,32}(/[a-z0-9_-]{1,32}){0,2}")


class Speaker:
    """Text-to-speech for other features (cti.services.PromptSpeaker): rendered once into
    the prompt directory like a menu's text prompt, played by the same name."""

    def __init__(
        self, store: PromptStore, sounds_dir: Path | None = None, cache: MediaCache | None = None
    ) -> None:
        self.store = store
        self.sounds_dir = sounds_dir
        self.cache = cache

    async def warm(self, group: str, texts: Iterable[tuple[str, str]]) -> None:
        if self.cache is None:
            return
        names = []
        for text, language in texts:
            try:
                names.append(await self.speak(text, language))
            except PromptError as exc:  # played at the call, or its fallback
                log.warning("prompt of %s not rendered (%s): %s", group, language, exc)
        self.cache.plays(group, names)

    def expect(self, group: str) -> None:
        if self.cache is not None:
            self.cache.expect(group)

    def plays(self, group: str, names: Iterable[str]) -> None:
        """What ``group`` plays now (replacing what it played): with media URLs, Asterisk
        fetches the new ones ahead of callers and forgets the replaced (ivr.media_cache)."""
        if self.cache is not None:
            self.cache.plays(group, names)

    async def language_sound(self, text: str, language: str, name: str) -> None:
        """Written only with a ``sounds_dir``; without one nothing is written and Asterisk
        plays what its root holds (the Mandarin numbers are built into the root the
        runner makes: cti.asterisk.sounds)."""
        if self.sounds_dir is None:
            return
        if language not in VOICES or not _SOUND_NAME.fullmatch(name):
            raise PromptError(f"refused language sound {language}/{name}")
        target = self.sounds_dir / language / f"{name}.wav"
        prompt = Prompt(text=text, voice=VOICES[language])
        await asyncio.to_thread(_copy_rendered, self.store, prompt, target)

    async def speak(self, text: str, language: str) -> str:
        prompt = Prompt(text=text, voice=VOICES.get(language, "en"))
        if self.store.media is not None:  # also before the IVR started (the ACD starts first)
            await self.store.media.ensure_key()
        await asyncio.to_thread(self.store.render, prompt)  # PromptError is a RuntimeError
        return self.store.playable(prompt)


def _copy_rendered(store: PromptStore, prompt: Prompt, target: Path) -> None:
    """The rendered prompt at ``target`` too (atomically; untouched when already equal)."""
    source = store.render(prompt)
    assert source is not None
    data = source.read_bytes()
    if target.exists() and target.read_bytes() == data:
        return
    install_file(data, target)


def install_file(data: bytes, target: Path) -> None:
    """``data`` as ``target``, atomically, also with several writers of the same file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.chmod(0o644)
        tmp.replace(target)  # atomic; two writers of the same sound both succeed
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
