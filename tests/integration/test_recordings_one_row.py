"""One recording row per recording file (decision 0033, "two rows naming one file"), on
SQLite and PostgreSQL: two writers of one file (both nodes of a server in a lease
overlap, a reconcile adopting a file a live row names) make one row, and migration
recordings_0005 merges the rows already duplicated before it makes that hold."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cti.store.db import Database
from cti.store.migrate import upgrade
from quality.qa_models import QaEvaluation, QaForm
from recordings.config import RecordingsConfig
from recordings.models import Recording, RecordingAudit
from recordings.naming import recording_path, with_format
from recordings.processing import Outcome, Processor
from recordings.store import RecordingStore
from tests.integration.test_recordings_store import tone_wav

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def _rows(db: Database) -> list[Recording]:
    async with db.session() as s:
        return list((await s.scalars(sa.select(Recording).order_by(Recording.id))).all())


async def test_two_nodes_writing_one_files_row_make_one_row(db: Database) -> None:
    """Both nodes of one server see the answer (a lease overlap): each writes the row of
    the file MixMonitor records. The second gets the first's row; rows without a file
    (path "") stay one per call."""
    n1, n2 = RecordingStore(db), RecordingStore(db)
    rel = recording_path("srv-1700000000.7", NOW, 0)
    first, second = await asyncio.gather(
        n1.add(linkedid="srv-1700000000.7", started_at=NOW, path=rel, node="n1", agent="alice"),
        n2.add(linkedid="srv-1700000000.7", started_at=NOW, path=rel, node="n2", agent="alice"),
    )
    assert first.id == second.id
    [row] = await _rows(db)
    assert row.id == first.id and row.path == rel and row.node in ("n1", "n2")
    assert second.node == row.node and second.status == "recording"

    # one node's burst: the same file twice in one transaction, among other rows
    other = recording_path("srv-1700000000.8", NOW, 0)
    got = await asyncio.gather(
        n1.add(linkedid="srv-1700000000.8", started_at=NOW, path=other),
        n1.add(linkedid="srv-1700000000.9", started_at=NOW, status="not_recorded"),
        n1.add(linkedid="srv-1700000000.8", started_at=NOW, path=other),
        n1.add(linkedid="srv-1700000000.7", started_at=NOW, path=rel, node="n1"),
        n1.add(linkedid="srv-1700000000.10", started_at=NOW, status="not_recorded"),
    )
    assert got[0].id == got[2].id and got[3].id == first.id
    assert len({r.id for r in got}) == 4
    rows = await _rows(db)
    assert sorted(r.path for r in rows) == sorted(["", "", rel, other])
    assert [r.linkedid for r in rows if not r.path] == ["srv-1700000000.9", "srv-1700000000.10"]


async def test_reconcile_does_not_adopt_a_file_a_live_row_names(db: Database) -> None:
    """A reconcile read the rows before the live side wrote its own: adopting the file
    then finds the live row (in any of the recording's formats) and makes none; a live
    row written after an adoption gets the adopted row."""
    store = RecordingStore(db)
    live_rel = recording_path("srv-1.1", NOW, 0)
    live = await store.add(linkedid="srv-1.1", started_at=NOW, path=live_rel, agent="bob")
    orphan = {"started_at": NOW, "status": "processing", "mode": "adopted", "format": "wav"}
    assert await store.adopt(linkedid="srv-1_1", path=live_rel, **orphan) is None

    # the live row processed to mp3 already: its WAV (kept beside it) is no orphan either
    mp3_rel = recording_path("srv-1.2", NOW, 0)
    await store.add(linkedid="srv-1.2", started_at=NOW, path=with_format(mp3_rel, "mp3"))
    assert await store.adopt(linkedid="srv-1_2", path=mp3_rel, **orphan) is None

    adopted_rel = recording_path("srv-1.3", NOW, 0)
    adopted = await store.adopt(linkedid="srv-1_3", path=adopted_rel, **orphan)
    assert adopted is not None and adopted.path == adopted_rel
    late = await store.add(linkedid="srv-1.3", started_at=NOW, path=adopted_rel)
    assert late.id == adopted.id

    rows = await _rows(db)
    assert [(r.id, r.path) for r in rows if r.path == live_rel] == [(live.id, live_rel)]
    assert len(rows) == 3


async def test_a_row_processed_into_a_file_that_has_its_row_is_merged(
    db: Database, tmp_path: Path
) -> None:
    """A second row of one recording (its WAV while the first row holds the mp3) is
    processed: the mp3 has its row, so the second goes, what named it (its audit rows,
    the QA evaluations scored against it) naming the first, as recordings_0005 merges;
    the caller gets the file's row, no error, no ``missing`` row."""
    root = tmp_path / "monitor"
    store = RecordingStore(db)
    rel = recording_path("srv-2.1", NOW, 0)
    mp3 = with_format(rel, "mp3")
    held = await store.add(linkedid="srv-2.1", started_at=NOW, path=mp3, status="ready")
    tone_wav(root / rel, 1)
    second = await store.add(linkedid="srv-2.1", started_at=NOW, path=rel, status="processing")
    assert second.id != held.id
    await store.audit("carol", "agent", "stop", recording_id=second.id, linkedid="srv-2.1")
    async with db.engine.begin() as conn:
        form = await conn.scalar(
            sa.insert(QaForm.__table__).values(name="f", definition="{}").returning(QaForm.id)
        )
        await conn.execute(
            sa.insert(QaEvaluation.__table__),
            [
                {"form_id": form, "linkedid": "srv-2.1", "recording_id": rid, "agent": "carol",
                 "reviewer": "sup", "answers": "{}", "score": 1.0}
                for rid in (second.id, held.id, None)
            ],
        )  # fmt: skip
    processor = Processor(RecordingsConfig(root=root, format="mp3"), store, workers=1)
    try:
        outcome = await processor.finish(second.id, close_timeout=2)
    finally:
        processor.close()
    assert outcome.status == "ready" and outcome.row is not None
    assert outcome.row.id == held.id
    assert [(r.id, r.path) for r in await _rows(db)] == [(held.id, mp3)]
    [audit] = await store.audit_log(actor="carol")
    assert audit["recording_id"] == held.id
    async with db.engine.connect() as conn:
        qa = await conn.scalars(sa.select(QaEvaluation.recording_id).order_by(QaEvaluation.id))
        assert list(qa) == [held.id, held.id, None]


async def test_a_result_the_store_refuses_for_another_reason_keeps_its_row(
    db: Database, tmp_path: Path
) -> None:
    """Only a second row of a file is merged: a result refused for anything else (here a
    status the column cannot hold) is raised, and the row, which holds its own path, stays."""
    store = RecordingStore(db)
    rel = recording_path("srv-3.1", NOW, 0)
    row = await store.add(linkedid="srv-3.1", started_at=NOW, path=rel, status="processing")
    row.status = None  # type: ignore[assignment]
    processor = Processor(RecordingsConfig(root=tmp_path, format="mp3"), store, workers=1)
    try:
        with pytest.raises(IntegrityError):
            await processor.apply(Outcome("ready", row))
    finally:
        processor.close()
    assert [(r.id, r.path, r.status) for r in await _rows(db)] == [(row.id, rel, "processing")]


async def test_a_start_on_the_name_another_node_failed_to_start_goes_on_with_its_row(
    db: Database, tmp_path: Path
) -> None:
    """One node's MixMonitor was refused (a ``failed`` row keeps the name it asked for),
    the other's started on that name: the recording's row is the failed one, and the
    stop processes it like any other (ready, the refusal's reason gone)."""
    root = tmp_path / "monitor"
    store = RecordingStore(db)
    rel = recording_path("srv-5.1", NOW, 0)
    failed = await store.add(
        linkedid="srv-5.1", started_at=NOW, path=rel, status="failed", node="n1",
        reason="MixMonitor: no such channel",
    )  # fmt: skip
    started = await store.add(
        linkedid="srv-5.1", started_at=NOW, path=rel, status="recording", node="n2"
    )
    assert started.id == failed.id
    tone_wav(root / rel, 1)
    await store.update(started.id, status="processing", ended_at=NOW + timedelta(seconds=1))
    processor = Processor(RecordingsConfig(root=root), store, workers=1, node="n2")
    try:
        outcome = await processor.finish(started.id, close_timeout=2)
    finally:
        processor.close()
    assert outcome.status == "ready" and outcome.row is not None
    [row] = await _rows(db)
    assert (row.id, row.status, row.reason, row.node) == (failed.id, "ready", "", "n2")


# --- migration recordings_0005 -----------------------------------------------------------


def _row(rid: int, path: str, status: str, created: datetime, **kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": rid, "linkedid": f"L-{rid}", "uniqueid": "", "channel": "", "agent": "",
        "queue": "", "caller_num": "", "customer_id": None, "customer_name": "",
        "mode": "always", "started_at": NOW, "ended_at": None, "duration_s": None,
        "paused_s": 0.0, "size_bytes": None, "format": path.rsplit(".", 1)[-1] if path else "",
        "path": path, "checksum": "", "status": status, "reason": "", "claimed_at": None,
        "node": "", "created_at": created, "updated_at": created,
    }  # fmt: skip
    values.update(kw)
    return values


async def test_migration_merges_the_rows_of_one_file(db_url: str) -> None:
    """Rows duplicated before recordings_0005 are merged per recording: the row that says
    most about the file stays (ready, then processing, recording...; the older on ties),
    with what the others knew of the call; their audit rows and QA evaluations name it.
    Rows without a file stay as they are; afterwards a second row of a file is refused."""
    await asyncio.to_thread(upgrade, db_url, "quality_0004")
    await asyncio.to_thread(upgrade, db_url, "recordings_0004")
    t0 = NOW
    t1 = NOW + timedelta(seconds=1)
    a_wav = recording_path("srv-3.1", NOW, 0)
    a_mp3 = with_format(a_wav, "mp3")
    b_wav = recording_path("srv-3.2", NOW, 0)
    c_wav = recording_path("srv-3.3", NOW, 0)
    d_wav = recording_path("srv-3.4", NOW, 0)
    rows = [
        # the case seen: the second row found the WAV gone (the first made the mp3)
        _row(1, a_wav, "missing", t0, node="n2", customer_id=42, customer_name="ACME"),
        _row(2, a_mp3, "ready", t1, node="n1", agent="alice", queue="sales"),
        # the same path twice, both being processed: the older stays
        _row(3, b_wav, "processing", t1),
        _row(4, b_wav, "processing", t0, caller_num="+8613912345678"),
        # a live row and a ready one: ready stays though newer; three of one file
        _row(5, c_wav, "recording", t0),
        _row(6, c_wav, "ready", t1),
        _row(7, with_format(c_wav, "opus"), "missing", t0),
        # no file: never merged
        _row(8, "", "not_recorded", t0, linkedid="srv-3.5"),
        _row(9, "", "not_recorded", t0, linkedid="srv-3.5"),
        _row(10, "", "failed", t0),
        _row(11, d_wav, "ready", t0),
    ]
    db = Database.from_url(db_url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(Recording.__table__), rows)
            await conn.execute(
                sa.insert(RecordingAudit.__table__),
                [
                    {"at": t1, "actor": "sup", "role": "supervisor", "action": "listen",
                     "recording_id": rid, "linkedid": "", "detail": ""}
                    for rid in (1, 2, 3, 7, 11)
                ],
            )  # fmt: skip
            await conn.execute(
                sa.insert(QaForm.__table__),
                {"id": 1, "name": "f", "definition": "{}", "active": True, "created_by": "",
                 "created_at": t0},
            )  # fmt: skip
            await conn.execute(
                sa.insert(QaEvaluation.__table__),
                {"form_id": 1, "linkedid": "srv-3.2", "recording_id": 3, "agent": "a",
                 "reviewer": "sup", "answers": "{}", "comments": "[]", "score": 1.0,
                 "created_at": t1},
            )  # fmt: skip
        await asyncio.to_thread(upgrade, db_url)

        kept = {r.id: r for r in await _rows(db)}
        assert sorted(kept) == [2, 4, 6, 8, 9, 10, 11]
        assert kept[2].status == "ready" and kept[2].path == a_mp3 and kept[2].node == "n1"
        # what the merged row knew of the call, the kept one did not
        assert (kept[2].customer_id, kept[2].customer_name) == (42, "ACME")
        assert (kept[2].agent, kept[2].queue) == ("alice", "sales")
        assert kept[4].caller_num == "+8613912345678" and kept[4].status == "processing"
        assert kept[6].status == "ready" and kept[6].path == c_wav
        async with db.engine.connect() as conn:
            audit = (
                await conn.execute(
                    sa.select(RecordingAudit.recording_id).order_by(RecordingAudit.id)
                )
            ).scalars()
            assert list(audit) == [2, 2, 4, 6, 11]
            qa = (await conn.execute(sa.select(QaEvaluation.recording_id))).scalars()
            assert list(qa) == [4]

        # from now on the store refuses a second row of a file (writers get the first)
        with pytest.raises(IntegrityError):
            async with db.engine.begin() as conn:
                await conn.execute(sa.insert(Recording.__table__), _row(12, d_wav, "missing", t1))
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(Recording.__table__), _row(12, "", "not_recorded", t1))
    finally:
        await db.dispose()


async def test_migration_without_duplicates_or_qa_tables(db_url: str) -> None:
    """Nothing to merge and no QA feature: the migration only adds the index."""
    await asyncio.to_thread(upgrade, db_url, "recordings_0004")
    db = Database.from_url(db_url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(
                sa.insert(Recording.__table__),
                [
                    _row(1, recording_path("srv-4.1", NOW, 0), "ready", NOW),
                    _row(2, "", "failed", NOW),
                ],
            )
        await asyncio.to_thread(upgrade, db_url, "recordings_0005")
        assert [r.id for r in await _rows(db)] == [1, 2]
    finally:
        await db.dispose()
