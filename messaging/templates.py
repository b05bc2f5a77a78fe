"""Templates with fields: ``{name}`` in a template's subject or body is replaced by the
field's value (the customer's ``name``, ``company``, ``owner``, ``tier``, ``region``,
custom fields, and what the sender adds, e.g. ``agent``). ``{{`` and ``}}`` are literal
braces; an unknown field is left as written. Values are inserted as plain text: an e-mail
is sent as text/plain, so nothing in a value can become markup or a header."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["FIELD", "fields_of", "render"]

FIELD = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_]{0,63})\}")


def render(text: str, values: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        whole = m.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        key = m.group(1)
        return str(values[key]) if key in values else whole

    return FIELD.sub(sub, text)


def fields_of(text: str) -> list[str]:
    """The field names a template uses, in order of first use."""
    return list(dict.fromkeys(m.group(1) for m in FIELD.finditer(text) if m.group(1)))
