"""``cti db backup`` / ``cti db restore``: a logical dump of every table, the same format
for SQLite and PostgreSQL (docs/decisions/0003-crm.md says why not pg_dump).

Format: gzip'd JSON lines. Line 1 is the header ``{"format": "cti-backup", "version": 1,
"dialect": ..., "revisions": [...], "tables": {name: columns}}``; then one line per row,
``{"t": table, "r": [values in column order]}``. Date-times are ISO 8601 strings, bytes
are base64. The dump is read inside one transaction (REPEATABLE READ on PostgreSQL,
SQLite's snapshot of its read transaction), so it is consistent while the daemon runs.

Restore needs a database migrated to the same revisions (the CLI migrates it first) and
replaces the contents of every table in one transaction: it succeeds entirely or leaves
the database as it was. PostgreSQL sequences are moved past the restored ids.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cti.store.db import Database

FORMAT = "cti-backup"
VERSION = 1
#: not dumped: the FTS5 indexes over crm_search (crm_0005, crm_0006, SQLite) and their
#: shadow tables, and its trigram table (crm_0007, PostgreSQL), are rebuilt by
#: crm_search's triggers as its rows are restored
_FTS = ("crm_search_fts", "crm_search_fts_grams")  # crm_0005, crm_0006
#: nor credential_changes (auth_0002): a marker its triggers move, not data; a restore's
#: deletes move it, so a running daemon checks every websocket's credential again
SKIP = {"alembic_version", "crm_search_trigrams", "credential_changes", *_FTS} | {
    f"{fts}_{shadow}" for fts in _FTS for shadow in ("data", "idx", "docsize", "config", "content")
}
BATCH = 1000

Progress = Callable[[str, int], None]


class BackupError(Exception):
    """The backup file is unusable or does not fit the database."""


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decoder(column: sa.Column[Any]) -> Callable[[Any], Any]:
    t = column.type
    if isinstance(t, sa.DateTime):
        return datetime.fromisoformat
    if isinstance(t, sa.Date):
        return date.fromisoformat
    if isinstance(t, sa.Time):
        return time.fromisoformat
    if isinstance(t, sa.LargeBinary):
        return base64.b64decode
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float):
        return Decimal
    return lambda v: v


def _reflect(conn: Connection) -> sa.MetaData:
    md = sa.MetaData()
    md.reflect(conn)
    return md


def _revisions(conn: Connection) -> list[str]:
    if not sa.inspect(conn).has_table("alembic_version"):
        return []
    rows = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    return sorted(str(r[0]) for r in rows)


def _tables(md: sa.MetaData) -> list[sa.Table]:
    return [t for t in md.sorted_tables if t.name not in SKIP]


def _dump(conn: Connection, out: IO[str], progress: Progress | None) -> dict[str, int]:
    md = _reflect(conn)
    tables = _tables(md)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "dialect": conn.dialect.name,
        "revisions": _revisions(conn),
        "tables": {t.name: [c.name for c in t.columns] for t in tables},
    }
    out.write(json.dumps(header) + "\n")
    counts: dict[str, int] = {}
    for table in tables:
        n = 0
        pk = list(table.primary_key.columns) or list(table.columns)
        result = conn.execution_options(stream_results=True).execute(sa.select(table).order_by(*pk))
        for row in result:
            out.write(
                json.dumps({"t": table.name, "r": [_encode(v) for v in row]}, ensure_ascii=False)
                + "\n"
            )
            n += 1
        counts[table.name] = n
        if progress is not None:
            progress(table.name, n)
    return counts


async def backup(db: Database, path: Path, progress: Progress | None = None) -> dict[str, int]:
    """Write every table of ``db`` to ``path`` (gzip JSON lines). Returns rows per table."""
    tmp = path.with_name(path.name + ".part")
    async with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            with gzip.open(tmp, "wt", encoding="utf-8") as out:
                counts = await conn.run_sync(lambda c: _dump(c, out, progress))
    tmp.replace(path)
    return counts


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    item = json.loads(line)
                except ValueError:
                    raise BackupError(f"{path}: line {number} is not JSON") from None
                if not isinstance(item, dict):
                    raise BackupError(f"{path}: line {number} is not an object")
                yield item
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path}: not a readable backup ({exc})") from None


def _restore(conn: Connection, path: Path, progress: Progress | None) -> dict[str, int]:
    if not path.is_file():
        raise BackupError(f"no such backup file: {path}")
    lines = _lines(path)
    header = next(lines, None)
    if not header or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise BackupError(f"{path}: not a {FORMAT} v{VERSION} file")
    revisions = _revisions(conn)
    if header.get("revisions") != revisions:
        raise BackupError(
            f"the backup is at revisions {header.get('revisions')}, the database at "
            f"{revisions}: migrate the database to the backup's revisions first"
        )
    md = _reflect(conn)
    tables = {t.name: t for t in _tables(md)}
    columns: dict[str, list[str]] = header.get("tables") or {}
    for name, cols in columns.items():
        if name not in tables:
            raise BackupError(f"table {name} of the backup does not exist in the database")
        missing = set(cols) - {c.name for c in tables[name].columns}
        if missing:
            raise BackupError(f"table {name} has no columns {sorted(missing)}")
    for table in reversed(list(tables.values())):
        conn.execute(table.delete())
    decoders = {
        name: [_decoder(tables[name].columns[c]) for c in cols] for name, cols in columns.items()
    }
    counts = {name: 0 for name in columns}
    batch: list[dict[str, Any]] = []
    current = ""

    def flush() -> None:
        if batch:
            conn.execute(tables[current].insert(), batch)
            counts[current] += len(batch)
            batch.clear()

    for item in lines:
        tname = item.get("t")
        values = item.get("r")
        if not isinstance(tname, str) or tname not in columns or not isinstance(values, list):
            raise BackupError(f"{path}: a row names unknown table {str(tname)[:64]!r}")
        if tname != current:
            flush()
            if current and progress is not None:
                progress(current, counts[current])
            current = tname
        cols = columns[current]
        if len(values) != len(cols):
            raise BackupError(f"{path}: a row of {current} has {len(values)} values")
        batch.append(
            {
                c: (None if v is None else dec(v))
                for c, v, dec in zip(cols, values, decoders[current], strict=True)
            }
        )
        if len(batch) >= BATCH:
            flush()
    flush()
    if current and progress is not None:
        progress(current, counts[current])
    if conn.dialect.name == "postgresql":
        for table in tables.values():
            for col in table.primary_key.columns:
                if not isinstance(col.type, sa.Integer):
                    continue
                seq = conn.execute(
                    sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                    {"t": table.name, "c": col.name},
                ).scalar()
                if seq:
                    conn.execute(
                        sa.select(
                            sa.func.setval(
                                seq,
                                sa.select(
                                    sa.func.coalesce(sa.func.max(col), 0) + 1
                                ).scalar_subquery(),
                                False,
                            )
                        )
                    )
    return counts


async def restore(db: Database, path: Path, progress: Progress | None = None) -> dict[str, int]:
    """Replace the contents of ``db`` by the backup at ``path`` (all or nothing)."""
    async with db.engine.begin() as conn:
        return await conn.run_sync(lambda c: _restore(c, path, progress))
