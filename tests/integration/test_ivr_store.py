"""IVR menus kept in the store: the menus file is imported when it changes, edits made
through the editor survive restarts and reloads, a refused change keeps what runs
(SQLite and PostgreSQL). The key that signs media URLs is made once and kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cti.store.db import Database
from ivr.editor import IvrEditor
from ivr.menus import MenuError
from ivr.prompts import PromptStore
from ivr.store import IvrStore

FILE = """\
[defaults]
menu = "main"

[prompts]
beep = { file = "beep" }

[menus.main]
greeting = "beep"
options."1" = { action = "queue", target = "sales" }

[schedules.office]
mon = ["09:00-18:00"]
closed = { action = "hangup" }
"""


def editor(db: Database, tmp_path: Path) -> IvrEditor:
    return IvrEditor(
        IvrStore(db), PromptStore(tmp_path / "prompts", "/sounds/cti"), tmp_path / "menus.toml",
        "CN",
    )  # fmt: skip


def target(ed: IvrEditor) -> str:
    assert ed.loaded is not None
    return ed.loaded.data.menus["main"].options["1"].target


async def test_file_imported_once_then_the_store_rules(db: Database, tmp_path: Path) -> None:
    (tmp_path / "menus.toml").write_text(FILE)
    ed = editor(db, tmp_path)
    loaded = await ed.reload()
    assert loaded is not None and loaded.version == 1 and target(ed) == "sales"
    await ed.reload()  # unchanged file: no new version
    assert [v.source for v in await ed.store.versions()] == ["file"]

    def to_support(doc: dict[str, Any]) -> str:
        doc["menus"]["main"]["options"]["1"]["target"] = "support"
        return "option 1 to support"

    saved = await ed.change(to_support, by="admin1")
    assert saved.version.id == 2 and target(ed) == "support"
    assert saved.before["menus"]["main"]["options"]["1"]["target"] == "sales"
    # a restart (a new editor on the same store) keeps the edit; the file did not change
    again = editor(db, tmp_path)
    await again.reload()
    assert target(again) == "support" and again.version is not None and again.version.id == 2
    # editing the file again is a deliberate new import
    (tmp_path / "menus.toml").write_text(FILE.replace('"sales"', '"billing"'))
    await again.reload(by="ops")
    assert target(again) == "billing"
    versions = await again.store.versions()
    assert [(v.source, v.created_by) for v in versions][:2] == [("file", "ops"), ("api", "admin1")]
    # any version can be restored
    await again.restore(2, by="admin1")
    assert target(again) == "support"


async def test_refused_changes_keep_what_runs(db: Database, tmp_path: Path) -> None:
    (tmp_path / "menus.toml").write_text(FILE)
    ed = editor(db, tmp_path)
    await ed.reload()

    def dangling(doc: dict[str, Any]) -> str:
        del doc["prompts"]["beep"]
        return "delete beep"

    with pytest.raises(MenuError) as exc:
        await ed.change(dangling, by="admin1")
    assert exc.value.problems == [
        "menus.main.greeting: unknown prompt 'beep' (define it under [prompts])"
    ]
    assert ed.loaded is not None and "beep" in ed.loaded.data.prompts
    assert await ed.store.count() == 1
    # an invalid file on reload: refused with its line, the store keeps serving
    (tmp_path / "menus.toml").write_text(FILE.replace('target = "sales"', 'target = "Sales!"'))
    with pytest.raises(MenuError, match=r"menus\.toml:9: menus\.main\.options\.1"):
        await ed.reload()
    assert target(ed) == "sales" and await ed.store.count() == 1
    fresh = editor(db, tmp_path)  # a restart with the bad file still runs the store's menus
    with pytest.raises(MenuError):
        await fresh.reload()
    await fresh.load_current()
    assert target(fresh) == "sales"


async def test_no_file_no_store_then_the_first_edit(db: Database, tmp_path: Path) -> None:
    ed = editor(db, tmp_path)
    assert await ed.reload() is None and ed.document == {}

    def first(doc: dict[str, Any]) -> str:
        doc.setdefault("prompts", {})["hi"] = {"text": "Welcome.", "voice": "en"}
        return "prompt added"

    saved = await ed.change(first, by="admin1")
    assert saved.before["prompts"] == {} and saved.after["defaults"]["menu"] == ""
    assert ed.loaded is not None and ed.loaded.data.menus == {}
    rendered = list((tmp_path / "prompts").glob("*.wav"))
    assert len(rendered) == 1
    assert ed.loaded.playable["hi"] == f"/sounds/cti/{rendered[0].stem}"


async def test_overrides_are_kept(db: Database, tmp_path: Path) -> None:
    (tmp_path / "menus.toml").write_text(FILE)
    ed = editor(db, tmp_path)
    await ed.reload()
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    before, after = await ed.set_override("office", "night", by="sup1", at=at, note="typhoon")
    assert before.mode == "auto" and after.mode == "night"
    with pytest.raises(LookupError):
        await ed.set_override("nowhere", "day", by="sup1", at=at)
    again = editor(db, tmp_path)
    await again.reload()
    kept = again.overrides["office"]
    assert (kept.mode, kept.note, kept.set_by, kept.set_at) == ("night", "typhoon", "sup1", at)
    await again.set_override("office", "auto", by="sup1", at=at)
    assert again.overrides == {} and await again.store.overrides() == {}


async def test_the_media_key_is_made_once_and_then_the_same_for_every_node(
    db: Database, db_url: str
) -> None:
    """Two nodes starting at the same moment on a fresh store get one key; a restart (a
    new Database on the same store) reads it back: the URLs Asterisk cached stay good."""
    first = await asyncio.gather(IvrStore(db).media_key(), IvrStore(db).media_key())
    assert first[0] == first[1] and len(first[0]) == 32
    again = Database.from_url(db_url)
    try:
        assert await IvrStore(again).media_key() == first[0]
    finally:
        await again.dispose()
