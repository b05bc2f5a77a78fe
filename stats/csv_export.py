"""CSV export of report tables, safe to open in a spreadsheet: every cell goes through
:func:`cti.spreadsheet.cell` (the product's one formula neutraliser)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from cti.spreadsheet import cell

__all__ = ["to_csv"]


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([cell(c) for c in columns])
    for r in rows:
        w.writerow([cell(r.get(c)) for c in columns])
    return buf.getvalue()
