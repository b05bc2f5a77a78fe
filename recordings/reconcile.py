"""Retention and reconciliation between the recordings root and the metadata rows.

- retention: files older than the queue's ``retention_days`` are deleted (row: deleted);
- rows left ``recording``/``processing`` by a daemon that stopped are processed now;
- rows whose file is gone become ``missing`` (reported);
- zero-length / header-only files are removed (their row, if any, becomes ``empty``);
- files nobody references (orphans) are adopted: a row is created from the name;
- every answered call (calls table) has a recording row, or one is written with the
  reason it has none (``not_recorded`` per policy, else ``missing``).
Files younger than ``grace_s`` are left alone: MixMonitor may still be writing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recordings import audio
from recordings.models import Recording
from recordings.naming import PathRefused, parse_name, resolve_inside, scan
from recordings.processing import NOT_PULLED, Processor

__all__ = ["Report", "reconcile"]

log = logging.getLogger(__name__)

_FORMATS = {".wav": "wav", ".mp3": "mp3", ".ogg": "opus"}


@dataclass
class Report:
    retention_deleted: list[int] = field(default_factory=list)
    finished_stale: list[int] = field(default_factory=list)
    #: rows the spool sidecar had not handed over, now pulled and processed
    pulled_late: list[int] = field(default_factory=list)
    missing_files: list[int] = field(default_factory=list)
    empty_removed: list[str] = field(default_factory=list)
    orphans_adopted: list[str] = field(default_factory=list)
    #: files on the spool sidecar whose recording a node already holds, removed there
    spool_copies_removed: list[str] = field(default_factory=list)
    unrecorded_calls: list[str] = field(default_factory=list)
    missing_calls: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int] | list[str]]:
        return asdict(self)

    def summary(self) -> str:
        return ", ".join(f"{k}={len(v)}" for k, v in self.as_dict().items())


def _remove(path: Path) -> bool:
    """Delete ``path``: whether it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _stem(relpath: str) -> str:
    return relpath.rsplit(".", 1)[0]


def _here(root: Path, relpath: str) -> bool:
    try:
        return resolve_inside(root, relpath).is_file()
    except PathRefused:
        return False


async def reconcile(
    processor: Processor, *, live_linkedids: set[str] | None = None, now: datetime | None = None
) -> Report:
    config, store = processor.config, processor.store
    now = now or datetime.now(UTC)
    live = live_linkedids or set()
    report = Report()
    grace = timedelta(seconds=config.grace_s)

    def mine(row: Recording) -> bool:
        """Held in this node's root (or in one every node sees): this node's to check.
        A row another node holds is that node's (its root, its reconcile)."""
        return not row.node or row.node == processor.node

    # 1. retention
    cutoffs = {q: now - timedelta(days=config.retention_for(q)) for q in config.queues}
    for row in await store.expired(cutoffs, now - timedelta(days=config.retention_days)):
        removed = False
        with contextlib.suppress(PathRefused, OSError):
            removed = await asyncio.to_thread(_remove, resolve_inside(config.root_dir, row.path))
        if not (removed or mine(row)):
            continue  # on another node's disk: deleted by that node
        await store.update(row.id, status="deleted", reason="retention period over")
        report.retention_deleted.append(row.id)

    # 2. rows a stopped daemon left behind
    for row in await store.with_status("recording", "processing"):
        if row.linkedid in live or row.started_at > now - grace:
            continue
        if not (mine(row) or await asyncio.to_thread(_here, config.root_dir, row.path)):
            continue
        if row.ended_at is None:
            await store.update(row.id, ended_at=now, reason="finished by reconcile")
        outcome = await processor.finish(row.id, close_timeout=1.0)
        if outcome.status == "busy":  # being processed right now (the live side, a node)
            continue
        report.finished_stale.append(row.id)
        if outcome.status == "missing":
            report.missing_files.append(row.id)

    # 2b. Asterisk on another host: what its spool sidecar did not hand over, again
    lookback = timedelta(days=config.lookback_days)
    if processor.spool is not None:
        for row in await store.with_status("missing"):
            if row.reason == NOT_PULLED and row.started_at > now - lookback and mine(row):
                outcome = await processor.finish(row.id, close_timeout=1.0)
                if outcome.status not in ("missing", "busy"):
                    report.pulled_late.append(row.id)

    # 3. files vs rows
    files = await asyncio.to_thread(scan, config.root_dir)
    on_disk = {rel for rel, _, _ in files}
    for row in await store.with_status("ready"):
        if row.path not in on_disk and mine(row):
            await store.update(row.id, status="missing", reason="file not found by reconcile")
            report.missing_files.append(row.id)
    referenced = await store.referenced_paths()
    # a recording's other formats (a kept original beside its mp3, the sidecar's WAV of
    # a row now in mp3) are that row's, never an orphan
    stems = {_stem(p): status for p, status in referenced.items()}

    async def adopt(rel: str) -> None:
        lid, started, _ = parse_name(rel)
        # the call it recorded (recovered from the server's records after a takeover, say):
        # its Linkedid as is (the name has dots as _), agent, queue and caller
        call = await store.call_of_file(lid, started)
        facts: dict[str, object] = {"linkedid": lid}
        if call is not None:
            facts = {
                "linkedid": call.linkedid, "agent": call.agent[:128], "queue": call.queue,
                "caller_num": (call.caller_num_e164 or call.caller_num_raw)[:64],
                "ended_at": call.ended_at,
            }  # fmt: skip
        if lid in live or facts["linkedid"] in live:
            return
        row = await store.adopt(
            started_at=started, path=rel, format=_FORMATS[Path(rel).suffix],
            status="processing", mode="adopted", reason="orphan file adopted by reconcile",
            node=processor.node, **facts,
        )  # fmt: skip
        if row is None:
            return  # another reconcile (this node's or another's) adopted it
        await processor.finish(row.id, close_timeout=1.0)
        report.orphans_adopted.append(rel)

    cutoff_ts = now.timestamp() - config.grace_s
    for rel, size, mtime in files:
        if mtime > cutoff_ts:
            continue
        full = config.root_dir / rel
        if size <= audio.WAV_HEADER_BYTES:
            await asyncio.to_thread(full.unlink, missing_ok=True)
            report.empty_removed.append(rel)
            for row in await store.with_status("ready", "processing", "recording"):
                if row.path == rel:
                    await store.update(row.id, status="empty", reason="header-only file removed")
            continue
        if rel in referenced or _stem(rel) in stems:
            continue
        await adopt(rel)

    # 3b. Asterisk on another host: its spool as the sidecar lists it. Recordings no row
    # names (recorded while no node drove the server, a row given up) are adopted: the
    # processing pulls them as any other. Header-only files (callers armed, never
    # answered) and WAVs of recordings a node holds compressed (the DELETE after the
    # pull was lost) are removed there.
    if processor.spool is not None:
        for rel, size, age_s in await processor.spool.listing() or []:
            if age_s < config.grace_s:
                continue
            if size <= audio.WAV_HEADER_BYTES:
                if await processor.spool.delete(rel):
                    report.empty_removed.append(rel)
                continue
            if (
                rel not in referenced and stems.get(_stem(rel)) == "ready"
                and not config.keep_original
            ):  # fmt: skip  # the WAV of a recording a node holds as mp3/opus
                if await processor.spool.delete(rel):
                    report.spool_copies_removed.append(rel)
                continue
            if rel in referenced or _stem(rel) in stems:
                continue  # its row's (its processing, or a re-pull: 2b)
            await adopt(rel)

    # 4. answered calls without any row
    since = now - timedelta(days=config.lookback_days)
    for call in await store.answered_without_row(since, now - grace):
        policy = config.policy_for(call.queue)
        if policy == "always":
            status, reason = "missing", "answered call without a recording (daemon down?)"
            report.missing_calls.append(call.linkedid)
        else:
            status = "not_recorded"
            reason = "policy: never recorded" if policy == "never" else "on demand: not started"
            report.unrecorded_calls.append(call.linkedid)
        await store.add(
            linkedid=call.linkedid, agent=call.agent[:128], queue=call.queue,
            caller_num=call.caller_num_e164 or call.caller_num_raw[:64],
            started_at=call.answered_at or call.started_at, ended_at=call.ended_at,
            mode=policy, status=status, reason=reason, format="",
        )  # fmt: skip
    if any(report.as_dict().values()):
        log.info("recordings reconcile: %s", report.summary())
    return report
