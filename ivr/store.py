"""Store access for the IVR: the versions of the menu document and schedule overrides.

Documents are validated before they get here (:func:`ivr.menus.validate_document`);
this module only keeps them. The newest version is the one in force.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from cti.store.db import Database
from cti.store.models import clip_text
from ivr.models import IvrAudioRow, IvrMediaKeyRow, IvrOverrideRow, IvrVersionRow
from ivr.schedule import Override

__all__ = ["IvrStore", "Version"]

#: versions kept; older ones are deleted when a new one is saved
KEEP_VERSIONS = 500


@dataclass(frozen=True, slots=True)
class Version:
    id: int
    created_at: datetime
    created_by: str
    source: str
    summary: str
    file_hash: str
    document: dict[str, Any]

    def meta(self) -> dict[str, Any]:
        return {
            "id": self.id, "created_at": self.created_at.isoformat(),
            "created_by": self.created_by, "source": self.source, "summary": self.summary,
        }  # fmt: skip


def _version(row: IvrVersionRow) -> Version:
    return Version(
        row.id, row.created_at, row.created_by, row.source, row.summary, row.file_hash,
        json.loads(row.document),
    )  # fmt: skip


class IvrStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def current(self) -> Version | None:
        async with self.db.session() as s:
            row = (
                await s.execute(select(IvrVersionRow).order_by(IvrVersionRow.id.desc()).limit(1))
            ).scalar()
            return None if row is None else _version(row)

    async def get(self, version_id: int) -> Version | None:
        async with self.db.session() as s:
            row = await s.get(IvrVersionRow, version_id)
            return None if row is None else _version(row)

    async def last_file_hash(self) -> str:
        """The hash of the menus file last imported (source "file"), "" if never."""
        async with self.db.session() as s:
            value = (
                await s.execute(
                    select(IvrVersionRow.file_hash)
                    .where(IvrVersionRow.source == "file")
                    .order_by(IvrVersionRow.id.desc())
                    .limit(1)
                )
            ).scalar()
            return value or ""

    async def save(
        self, document: dict[str, Any], *, by: str, source: str, summary: str, file_hash: str = ""
    ) -> Version:
        row = IvrVersionRow(
            created_by=clip_text(by, 128), source=source, summary=clip_text(summary, 256),
            file_hash=file_hash, document=json.dumps(document, ensure_ascii=False),
        )  # fmt: skip
        async with self.db.session() as s, s.begin():
            s.add(row)
            await s.flush()
            floor = row.id - KEEP_VERSIONS
            if floor > 0:
                await s.execute(delete(IvrVersionRow).where(IvrVersionRow.id <= floor))
        return _version(row)

    async def versions(self, limit: int = 50) -> list[Version]:
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(IvrVersionRow).order_by(IvrVersionRow.id.desc()).limit(limit)
                )
            ).scalars()
            return [_version(r) for r in rows]

    async def count(self) -> int:
        async with self.db.session() as s:
            return int((await s.execute(select(func.count(IvrVersionRow.id)))).scalar() or 0)

    # --- the media URLs' key ------------------------------------------------------------------
    async def media_key(self) -> bytes:
        """The key that signs the media URLs: made once (by whichever node asks first, also
        when two ask at the same moment), then always the same."""
        with contextlib.suppress(IntegrityError):
            async with self.db.session() as s, s.begin():
                if await s.get(IvrMediaKeyRow, 1) is None:
                    s.add(IvrMediaKeyRow(id=1, key=secrets.token_bytes(32)))
        async with self.db.session() as s:
            row = await s.get(IvrMediaKeyRow, 1)
            assert row is not None
            return bytes(row.key)

    # --- uploaded recordings ------------------------------------------------------------------
    async def put_audio(self, audio_id: str, wav: bytes) -> None:
        """Keep an uploaded recording (content-addressed: an id already kept, also by
        another node at the same moment, is left as it is)."""
        with contextlib.suppress(IntegrityError):
            async with self.db.session() as s, s.begin():
                if await s.get(IvrAudioRow, audio_id) is None:
                    s.add(IvrAudioRow(id=audio_id, wav=wav))

    async def audio(self, audio_id: str) -> bytes | None:
        async with self.db.session() as s:
            row = await s.get(IvrAudioRow, audio_id)
            return None if row is None else bytes(row.wav)

    # --- overrides ----------------------------------------------------------------------------
    async def overrides(self) -> dict[str, Override]:
        async with self.db.session() as s:
            rows = (await s.execute(select(IvrOverrideRow))).scalars()
            return {
                r.schedule: Override(r.mode, r.until, r.note, r.set_by, r.set_at)  # type: ignore[arg-type]
                for r in rows
            }

    async def set_override(self, schedule: str, override: Override) -> None:
        async with self.db.session() as s, s.begin():
            row = await s.get(IvrOverrideRow, schedule)
            if override.mode == "auto":
                if row is not None:
                    await s.delete(row)
                return
            if row is None:
                row = IvrOverrideRow(schedule=schedule)
                s.add(row)
            row.mode = override.mode
            row.until = override.until
            row.note = clip_text(override.note, 256)
            row.set_by = clip_text(override.set_by, 128)
            assert override.set_at is not None
            row.set_at = override.set_at
