"""The IVR document in force: loaded from the store, changed only whole and valid.

Every change (an edit through the API, an imported TOML document, a restored version,
the configured menus file when its content changed) goes the same way, under one lock:
copy the current document, apply the change, validate the whole document
(:func:`ivr.menus.validate_document`: every reference, every dial target), make every
prompt playable (text rendered by espeak-ng, uploaded recordings present), store it as
a new version, and only then swap it in. A refused change leaves the running menus and
the store as they were; a call in progress keeps the menus it started with.

The menus file (``[ivr] menus``, TOML) stays the way existing sites and ``make up`` set
up their menus: it is imported when the daemon starts or reloads and the file's content
differs from the last import (its SHA-256 is kept with the version). Editing in the
console does not touch the file; editing the file again and reloading replaces the
console's edits (a new version, like any other: the old one can be restored).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ivr.flow import Loaded
from ivr.menus import (
    IvrData,
    MenuError,
    Prompt,
    parse_menus,
    to_document,
    validate_document,
)
from ivr.prompts import PromptError, PromptStore, install_file
from ivr.schedule import Override
from ivr.store import IvrStore, Version

__all__ = ["Change", "IvrEditor", "Saved"]

log = logging.getLogger(__name__)

#: a change edits the document in place and returns a one-line summary of what it did
Change = Callable[[dict[str, Any]], str]


@dataclass(frozen=True, slots=True)
class Saved:
    before: dict[str, Any]  # the document before the change (the empty one's defaults)
    after: dict[str, Any]
    version: Version


class IvrEditor:
    def __init__(self, store: IvrStore, prompts: PromptStore, menus_file: Path, region: str):
        self.store = store
        self.prompts = prompts
        self.menus_file = menus_file
        self.region = region
        self.loaded: Loaded | None = None
        self.version: Version | None = None
        self.overrides: dict[str, Override] = {}
        self._lock = asyncio.Lock()
        #: told each time other menus are loaded (ivr.media_cache: what Asterisk caches)
        self.on_swap: Callable[[Loaded], None] = lambda loaded: None

    @property
    def document(self) -> dict[str, Any]:
        return copy.deepcopy(self.version.document) if self.version is not None else {}

    async def _playable(self, data: IvrData, where: str) -> dict[str, str]:
        playable: dict[str, str] = {}
        for name, prompt in data.prompts.items():
            try:
                await self._fetch_upload(prompt)
                await asyncio.to_thread(self.prompts.render, prompt)
            except PromptError as exc:
                raise MenuError([f"{where}prompts.{name}: {exc}"]) from None
            playable[name] = self.prompts.playable(prompt)
        return playable

    async def _fetch_upload(self, prompt: Prompt) -> None:
        """An uploaded recording this node does not have (another node received it) is
        put into its prompt directory from the store (ivr_audio)."""
        path = self.prompts.host_path(prompt) if prompt.upload is not None else None
        if path is None or await asyncio.to_thread(path.is_file):
            return
        assert prompt.upload is not None
        wav = await self.store.audio(prompt.upload)
        if wav is not None:
            await asyncio.to_thread(install_file, wav, path)

    def _swap(self, data: IvrData, playable: dict[str, str], version: Version) -> Loaded:
        self.loaded = Loaded(data, playable, f"store version {version.id}", version.id)
        self.version = version
        self.on_swap(self.loaded)
        return self.loaded

    # --- loading --------------------------------------------------------------------------
    async def reload(self, *, by: str = "system") -> Loaded | None:
        """Import the menus file if it changed, then load the newest stored version.
        Raises :class:`MenuError` (an invalid file or stored document) and keeps what
        runs."""
        async with self._lock:
            await self._import_file(by)
            return await self._load_current()

    async def load_current(self) -> Loaded | None:
        """Load the newest stored version without looking at the file."""
        async with self._lock:
            return await self._load_current()

    async def _load_current(self) -> Loaded | None:
        self.overrides = await self.store.overrides()
        version = await self.store.current()
        if version is None:
            return self.loaded
        if self.version is not None and self.version.id == version.id:
            return self.loaded
        data = validate_document(version.document, region=self.region)
        playable = await self._playable(data, "")
        return self._swap(data, playable, version)

    async def _import_file(self, by: str) -> None:
        path = self.menus_file
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise MenuError([f"{path}: cannot read: {exc}"]) from None
        digest = hashlib.sha256(raw).hexdigest()
        if digest == await self.store.last_file_hash():
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MenuError([f"{path}: not UTF-8 text"]) from None
        data = parse_menus(text, str(path), region=self.region)
        playable = await self._playable(data, f"{path}: ")
        version = await self.store.save(
            to_document(data), by=by, source="file", summary=f"imported {path.name}",
            file_hash=digest,
        )  # fmt: skip
        self._swap(data, playable, version)
        log.info("IVR menus imported from %s (version %d)", path, version.id)

    # --- changes --------------------------------------------------------------------------
    async def change(self, change: Change, *, by: str, source: str = "api") -> Saved:
        """Apply ``change`` to a copy of the document, validate, store, swap in. Raises
        :class:`MenuError` (nothing changed) or whatever ``change`` raises."""
        async with self._lock:
            before = self.document or to_document(IvrData())  # nothing yet: the defaults
            doc = copy.deepcopy(before)
            summary = change(doc)
            data = validate_document(doc, region=self.region)
            playable = await self._playable(data, "")
            after = to_document(data)
            version = await self.store.save(after, by=by, source=source, summary=summary)
            self._swap(data, playable, version)
            return Saved(before, after, version)

    async def import_toml(self, text: str, *, by: str, name: str = "upload.toml") -> Saved:
        data = parse_menus(text, name, region=self.region)  # before the lock: no I/O

        def replace(doc: dict[str, Any]) -> str:
            doc.clear()
            doc.update(to_document(data))
            return f"imported {name}"

        return await self.change(replace, by=by, source="import")

    async def restore(self, version_id: int, *, by: str) -> Saved:
        old = await self.store.get(version_id)
        if old is None:
            raise LookupError(f"no version {version_id}")

        def replace(doc: dict[str, Any]) -> str:
            doc.clear()
            doc.update(old.document)
            return f"restored version {version_id}"

        return await self.change(replace, by=by, source="restore")

    # --- overrides ------------------------------------------------------------------------
    async def set_override(
        self,
        schedule: str,
        mode: str,
        *,
        by: str,
        at: datetime,
        until: datetime | None = None,
        note: str = "",
    ) -> tuple[Override, Override]:
        """(before, after); raises LookupError for a schedule that does not exist."""
        async with self._lock:
            data = self.loaded.data if self.loaded is not None else None
            if data is None or schedule not in data.schedules:
                raise LookupError(f"no schedule {schedule!r}")
            before = self.overrides.get(schedule, Override())
            after = Override(mode, until, note, by, at)  # type: ignore[arg-type]
            await self.store.set_override(schedule, after)
            if mode == "auto":
                self.overrides.pop(schedule, None)
            else:
                self.overrides[schedule] = after
            return before, after
