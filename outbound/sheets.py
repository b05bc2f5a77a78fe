"""Reading a lead or do-not-call file (CSV or XLSX) into a header and rows of text, and
the column-mapping step: which column holds the number, the name, and what else to keep.

openpyxl reads XLSX in read-only mode (streamed, formulas never evaluated: cached values
only); CSV must be UTF-8 (a BOM is fine). Cells an export of ours neutralised (a leading
``'`` before ``=``/``+``/…) come back as they were (:func:`cti.spreadsheet.restore`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import openpyxl

from cti.spreadsheet import restore

__all__ = [
    "MAX_BYTES",
    "MAX_ROWS",
    "Mapping",
    "SheetError",
    "Table",
    "read_table",
    "suggest_mapping",
]

MAX_ROWS = 100_000
MAX_COLUMNS = 64
MAX_CELL = 2000
MAX_BYTES = 16 * 1024 * 1024

_PHONE_WORDS = ("phone", "mobile", "tel", "number", "cell", "电话", "手机", "号码", "联系方式")
_NAME_WORDS = ("name", "contact", "customer", "姓名", "名称", "客户", "联系人")


class SheetError(ValueError):
    """The file cannot be read as a table (format, encoding, size): message for the user."""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]  # row i is line i + 2 of the file (the header is line 1)


@dataclass
class Mapping:
    """Header names: the number column, an optional name column, the columns kept as
    lead data (shown on the lead card)."""

    phone: str
    name: str = ""
    keep: list[str] = field(default_factory=list)

    def check(self, header: list[str]) -> None:
        missing = [c for c in [self.phone, self.name, *self.keep] if c and c not in header]
        if missing:
            raise SheetError(f"no such column: {', '.join(missing)[:200]}")


def read_table(data: bytes, fmt: str) -> Table:
    """``fmt``: "csv" or "xlsx"."""
    if len(data) > MAX_BYTES:
        raise SheetError(f"the file is larger than {MAX_BYTES} bytes")
    table = _read_xlsx(data) if fmt == "xlsx" else _read_csv(data)
    header = [h.strip() for h in table.header]
    if not any(header):
        raise SheetError("the first row (the header) is empty")
    if len(header) > MAX_COLUMNS:
        raise SheetError(f"more than {MAX_COLUMNS} columns")
    seen: set[str] = set()
    for i, h in enumerate(header):
        name = h or f"column {i + 1}"
        while name in seen:
            name += "'"
        header[i] = name
        seen.add(name)
    table.header = header
    return table


def _read_csv(data: bytes) -> Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetError(f"the file is not UTF-8 (byte {exc.start})") from None
    csv.field_size_limit(MAX_CELL * 4)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise SheetError("empty file")
        rows: list[list[str]] = []
        for line in reader:
            if len(rows) >= MAX_ROWS:
                raise SheetError(f"more than {MAX_ROWS} rows")
            rows.append([restore(c)[:MAX_CELL] for c in line[:MAX_COLUMNS]])
        return Table(header[: MAX_COLUMNS + 1], rows)
    except csv.Error as exc:
        raise SheetError(f"CSV error: {exc}") from None


def _read_xlsx(data: bytes) -> Table:
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a bad file
        raise SheetError(f"not an Excel .xlsx file ({type(exc).__name__})") from None
    try:
        if not wb.worksheets:
            raise SheetError("the workbook has no sheet")
        it = wb.worksheets[0].iter_rows(values_only=True)
        first = next(it, None)
        if first is None:
            raise SheetError("empty sheet")
        header = [_text(v) for v in first][: MAX_COLUMNS + 1]
        rows: list[list[str]] = []
        for values in it:
            if len(rows) >= MAX_ROWS:
                raise SheetError(f"more than {MAX_ROWS} rows")
            rows.append([_text(v)[:MAX_CELL] for v in values[:MAX_COLUMNS]])
        return Table(header, rows)
    finally:
        wb.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()[:10]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number typed into Excel: 13800138000.0
    return restore(str(value))


def suggest_mapping(header: list[str]) -> Mapping | None:
    """A first guess for the mapping step (the number column by its name), or None."""

    def find(words: tuple[str, ...], skip: str = "") -> str:
        for h in header:
            low = h.lower()
            if h != skip and any(w in low for w in words):
                return h
        return ""

    phone = find(_PHONE_WORDS)
    if not phone:
        return None
    name = find(_NAME_WORDS, skip=phone)
    return Mapping(phone, name, [h for h in header if h not in (phone, name)])
