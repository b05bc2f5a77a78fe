"""Custom fields an admin adds to every customer card (``crm_custom_fields``).

A field has a key (``[a-z][a-z0-9_]{0,63}``), labels in English and Chinese, a kind
(``text`` up to 1024 characters, ``number``, ``date`` YYYY-MM-DD, ``choice`` from its
list) and a position. A customer's values are one JSON object (``Customer.custom``);
:func:`check_values` refuses a value for an unknown key or of the wrong kind (400 naming
the field), ``null`` removes a value. Removing a field keeps the values already stored
(they are no longer shown).
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.errors import CrmError
from crm_bridge.models import CustomField
from crm_bridge.schemas import _storable

__all__ = ["FieldDef", "FieldsIn", "check_values", "load_fields", "save_fields"]

TEXT_LEN = 1024
Label = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_storable)]
Choice = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_storable)]


class FieldDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    label_en: Label
    label_zh: Label
    kind: Literal["text", "number", "date", "choice"] = "text"
    choices: Annotated[list[Choice], Field(max_length=100)] = Field(default_factory=list)


def _unique(items: list[FieldDef]) -> list[FieldDef]:
    keys = [f.key for f in items]
    if len(set(keys)) != len(keys):
        raise ValueError("field keys must be unique")
    for f in items:
        if f.kind == "choice" and not f.choices:
            raise ValueError(f"field {f.key}: a choice field needs choices")
    return items


class FieldsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: Annotated[list[FieldDef], Field(max_length=100), AfterValidator(_unique)]


async def load_fields(session: AsyncSession) -> list[FieldDef]:
    rows = await session.scalars(select(CustomField).order_by(CustomField.position))
    return [
        FieldDef(
            key=r.key,
            label_en=r.label_en,
            label_zh=r.label_zh,
            kind=r.kind,
            choices=json.loads(r.choices),
        )
        for r in rows
    ]


async def save_fields(session: AsyncSession, fields: list[FieldDef]) -> None:
    await session.execute(delete(CustomField))
    for i, f in enumerate(fields):
        session.add(
            CustomField(
                key=f.key,
                label_en=f.label_en,
                label_zh=f.label_zh,
                kind=f.kind,
                choices=json.dumps(f.choices, ensure_ascii=False),
                position=i,
            )
        )
    await session.flush()


def _value(f: FieldDef, value: Any) -> Any:
    where = f"custom.{f.key}"
    if f.kind == "number":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise CrmError(f"{where}: a number")
        return value
    if not isinstance(value, str):
        raise CrmError(f"{where}: a string")
    try:
        _storable(value)
    except ValueError as exc:
        raise CrmError(f"{where}: {exc}") from None
    if f.kind == "date":
        try:
            return date.fromisoformat(value).isoformat() if value else ""
        except ValueError:
            raise CrmError(f"{where}: a date YYYY-MM-DD") from None
    if f.kind == "choice":
        if value and value not in f.choices:
            raise CrmError(f"{where}: one of {f.choices}")
        return value
    if len(value) > TEXT_LEN:
        raise CrmError(f"{where}: at most {TEXT_LEN} characters")
    return value


def check_values(
    fields: list[FieldDef], current: dict[str, Any], new: dict[str, Any]
) -> dict[str, Any]:
    """``current`` updated with ``new`` (checked against ``fields``; None removes)."""
    by_key = {f.key: f for f in fields}
    out = dict(current)
    for key, value in new.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", key):
            raise CrmError("custom: unknown field")
        f = by_key.get(key)
        if f is None:
            raise CrmError(f"custom.{key}: no such field (an admin defines them)")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _value(f, value)
    return out
