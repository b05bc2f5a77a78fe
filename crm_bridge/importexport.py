"""CSV / Excel import and export of customers.

One row = one customer with its first contact. Columns (header row required, any order,
unknown columns refused): ``name`` (required), ``kind``, ``company``, ``tier``, ``tags``,
``notes``, ``owner``, ``contact_name``, ``phones``, ``emails``, ``birthday``; lists
(tags, phones, emails) are separated by ``;``.

Import is all or nothing: every row is validated and checked for duplicates (against
the store and against earlier rows of the same file) inside one transaction; if any row
fails, the transaction is rolled back and the report lists every bad row with its line
number and reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from pydantic import ValidationError
from sqlalchemy import select

from crm_bridge.access import Actor
from crm_bridge.errors import CrmError, DuplicateError
from crm_bridge.keys import tags_list
from crm_bridge.models import Contact, Customer, Email, Phone
from crm_bridge.schemas import CustomerIn
from crm_bridge.search import Filters, filtered, needles
from crm_bridge.store import CrmStore
from cti.spreadsheet import neutralise_text, restore

COLUMNS = (
    "name",
    "kind",
    "company",
    "tier",
    "tags",
    "notes",
    "owner",
    "contact_name",
    "phones",
    "emails",
    "birthday",
)
MAX_ROWS = 200_000
MAX_CELL = 65536

Progress = Callable[[int, int], None]


class _Abort(Exception):
    """Roll the import's transaction back."""


class ImportFormatError(ValueError):
    """The file itself cannot be read (encoding, header, size)."""


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(";") if v.strip()]


def _check_header(header: Sequence[str]) -> list[str]:
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h not in COLUMNS]
    if unknown:
        raise ImportFormatError(f"unknown columns: {', '.join(unknown)[:200]}")
    if "name" not in names:
        raise ImportFormatError("the header has no 'name' column")
    return names


def read_csv(data: bytes) -> list[dict[str, str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"the file is not UTF-8 (byte {exc.start})") from None
    csv.field_size_limit(MAX_CELL + 1)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise ImportFormatError("empty file")
        names = _check_header(header)
        rows: list[dict[str, str]] = []
        for line in reader:
            if len(rows) >= MAX_ROWS:
                raise ImportFormatError(f"more than {MAX_ROWS} rows")
            if not any(cell.strip() for cell in line):
                rows.append({})
                continue
            rows.append(dict(zip(names, map(restore, line), strict=False)))
        return rows
    except csv.Error as exc:
        raise ImportFormatError(f"CSV error: {exc}") from None


def read_xlsx(data: bytes) -> list[dict[str, str]]:
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a bad file
        raise ImportFormatError(f"not an Excel .xlsx file ({type(exc).__name__})") from None
    try:
        ws = wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        header = next(it, None)
        if header is None:
            raise ImportFormatError("empty sheet")
        names = _check_header(["" if h is None else str(h) for h in header])
        rows: list[dict[str, str]] = []
        for values in it:
            if len(rows) >= MAX_ROWS:
                raise ImportFormatError(f"more than {MAX_ROWS} rows")
            cells = ["" if v is None else _cell_text(v) for v in values]
            rows.append(dict(zip(names, cells, strict=False)) if any(cells) else {})
        return rows
    finally:
        wb.close()


def _cell_text(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()[:10]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def row_to_customer(row: dict[str, str]) -> CustomerIn:
    contact_name = row.get("contact_name", "").strip() or row.get("name", "")
    contact: dict[str, Any] = {
        "name": contact_name,
        "phones": _split(row.get("phones", "")),
        "emails": _split(row.get("emails", "")),
        "birthday": row.get("birthday", "").strip() or None,
    }
    has_contact = contact["phones"] or contact["emails"] or contact["birthday"]
    return CustomerIn.model_validate(
        {
            "name": row.get("name", ""),
            "kind": row.get("kind", "").strip() or "person",
            "company": row.get("company", ""),
            "tier": row.get("tier", ""),
            "tags": _split(row.get("tags", "")),
            "notes": row.get("notes", ""),
            "owner": row.get("owner", "").strip() or None,
            "contacts": [contact] if has_contact or row.get("contact_name") else [],
        }
    )


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


async def import_rows(
    store: CrmStore,
    rows: Sequence[dict[str, str]],
    actor: Actor,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import all rows or none. Returns ``{"imported": n, "errors": [...]}``; line
    numbers count the header as line 1."""
    errors: list[dict[str, Any]] = []
    imported = 0
    try:
        async with store.db.session() as session, session.begin():
            for index, row in enumerate(rows):
                line = index + 2
                if progress is not None:
                    progress(index + 1, len(rows))
                if not row:
                    continue
                try:
                    data = row_to_customer(row)
                    await store.create_customer(data, actor, session)
                    imported += 1
                except ValidationError as exc:
                    errors.append({"line": line, "error": _validation_message(exc)})
                except DuplicateError as exc:
                    errors.append(
                        {
                            "line": line,
                            "error": "duplicate",
                            "candidates": exc.candidates,
                        }
                    )
                except CrmError as exc:
                    errors.append({"line": line, "error": exc.message})
            if errors:
                raise _Abort
    except _Abort:
        return {"imported": 0, "rows": len(rows), "errors": errors}
    return {"imported": imported, "rows": len(rows), "errors": []}


async def export_rows(
    store: CrmStore,
    actor: Actor,
    *,
    q: str = "",
    owner: str | None = None,
    filters: Filters | None = None,
) -> list[list[str]]:
    """Header + one row per customer visible to ``actor`` (first contact only), limited
    like the customer list (search text, owner, filters)."""
    out: list[list[str]] = [list(COLUMNS)]
    wanted = needles(q, store.e164)
    if wanted == ("", (), ""):
        return out
    async with store.db.session() as session:
        dialect = store.db.engine.dialect.name
        stmt = filtered(select(Customer), wanted, actor, owner, filters, dialect=dialect)
        stmt = stmt.order_by(Customer.id)
        result = await session.stream_scalars(stmt.execution_options(yield_per=1000))
        async for batch in result.partitions(1000):
            ids = [c.id for c in batch]
            contacts: dict[int, Contact] = {}
            for ct in await session.scalars(
                select(Contact).where(Contact.customer_id.in_(ids)).order_by(Contact.id)
            ):
                contacts.setdefault(ct.customer_id, ct)
            phones: dict[int, list[str]] = {}
            for p in await session.scalars(
                select(Phone).where(Phone.customer_id.in_(ids)).order_by(Phone.id)
            ):
                if contacts.get(p.customer_id) and contacts[p.customer_id].id == p.contact_id:
                    phones.setdefault(p.customer_id, []).append(p.raw)
            emails: dict[int, list[str]] = {}
            for e in await session.scalars(
                select(Email).where(Email.customer_id.in_(ids)).order_by(Email.id)
            ):
                if contacts.get(e.customer_id) and contacts[e.customer_id].id == e.contact_id:
                    emails.setdefault(e.customer_id, []).append(e.address)
            for c in batch:
                first = contacts.get(c.id)
                out.append(
                    [
                        c.name,
                        c.kind,
                        c.company,
                        c.tier,
                        ";".join(tags_list(c.tags)),
                        c.notes,
                        c.owner or "",
                        first.name if first else "",
                        ";".join(phones.get(c.id, [])),
                        ";".join(emails.get(c.id, [])),
                        first.birthday.isoformat() if first and first.birthday else "",
                    ]
                )
    return out


def to_csv(rows: list[list[str]]) -> bytes:
    """UTF-8 with BOM (Excel reads it so); no cell is ever a formula
    (:func:`cti.spreadsheet.neutralise_text`, undone by :func:`read_csv`)."""
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([[neutralise_text(v) for v in row] for row in rows])
    return buf.getvalue().encode("utf-8-sig")


def to_xlsx(rows: list[list[str]]) -> bytes:
    """Cells are written as text, never as formulas ("=cmd|..." stays a string). Control
    characters Excel cannot hold become U+FFFD (CSV keeps them)."""
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("customers")
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(ws, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
            cell.data_type = "s"
            cells.append(cell)
        ws.append(cells)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
