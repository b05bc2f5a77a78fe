"""Query and path parameters, parsed in one place: bounded, ASCII, clear 400s.

Each kind of parameter is a small declaration (:class:`Int`, :class:`Text`,
:class:`Choice`, :class:`Flag`, :class:`When`, :class:`Day`) whose ``read(request)``
returns the typed value or raises :class:`~cti.web.errors.BadRequest`, and whose
``openapi()`` describes it for the API description — declare a parameter once at module
level, use it in the handler and in the route's description. The functions
(:func:`int_param`, :func:`datetime_param`, :func:`time_range`, :func:`path_int`, …) are
shorthands for one-off reads.

Rules kept here once:
- integers are ASCII digits only (superscripts, Arabic-Indic or full-width digits are 400, not 500),
  at most 18 digits, within the declared bounds;
- date-times are ISO 8601; a value without an offset is in the given zone (UTC unless
  said), years 1970-9999 only; dates are ``YYYY-MM-DD``;
- a time range has ``since <= until`` and at most ``max_span``;
- text is bounded in length (and may be held to a pattern).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from aiohttp import web

from cti.web.errors import BadRequest

__all__ = [
    "Choice",
    "Day",
    "Flag",
    "Int",
    "Param",
    "Text",
    "When",
    "choice_param",
    "date_param",
    "datetime_param",
    "flag_param",
    "int_param",
    "parse_int",
    "path_int",
    "text_param",
    "time_range",
]

_INT = re.compile(r"[+-]?[0-9]{1,18}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_MIN_YEAR, _MAX_YEAR = 1970, 9999


def parse_int(raw: str, name: str, lo: int, hi: int) -> int:
    """``raw`` as an integer within [lo, hi], ASCII digits only, else 400."""
    if not _INT.fullmatch(raw):
        raise BadRequest(
            f"{name} must be an integer between {lo} and {hi}",
            code="bad-parameter",
            details={"parameter": name},
        )
    value = int(raw)
    if not lo <= value <= hi:
        raise BadRequest(
            f"{name} must be an integer between {lo} and {hi}",
            code="bad-parameter",
            details={"parameter": name},
        )
    return value


def parse_datetime(raw: str, name: str, tz: tzinfo = UTC) -> datetime:
    """An ISO 8601 date-time (or date: midnight) as an aware datetime, else 400."""
    try:
        if not raw.isascii() or len(raw) > 40:
            raise ValueError(raw)
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        if not _MIN_YEAR <= value.astimezone(UTC).year <= _MAX_YEAR:
            raise ValueError(raw)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{name} must be an ISO 8601 date-time (years {_MIN_YEAR}-{_MAX_YEAR})",
            code="bad-parameter",
            details={"parameter": name},
        ) from None
    return value


def parse_date(raw: str, name: str) -> date:
    try:
        if not raw.isascii() or len(raw) != 10:
            raise ValueError(raw)
        value = date.fromisoformat(raw)
        if not _MIN_YEAR <= value.year <= _MAX_YEAR:
            raise ValueError(raw)
    except ValueError:
        raise BadRequest(
            f"{name} must be a date YYYY-MM-DD", code="bad-parameter", details={"parameter": name}
        ) from None
    return value


@dataclass(frozen=True, kw_only=True)
class Param:
    """One named parameter of a route (query string by default, or path)."""

    name: str
    description: str = ""
    required: bool = False
    where: str = "query"  # or "path"

    def raw(self, request: web.Request) -> str | None:
        if self.where == "path":
            return request.match_info.get(self.name)
        value = request.query.get(self.name)
        if value is None or value == "":
            if self.required:
                raise BadRequest(
                    f"{self.name} is required",
                    code="missing-parameter",
                    details={"parameter": self.name},
                )
            return None
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "schema": self.schema(),
        }
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, kw_only=True)
class Int(Param):
    default: int | None = None
    lo: int = 0
    hi: int = 10**18

    def read(self, request: web.Request) -> int | None:
        raw = self.raw(request)
        return self.default if raw is None else parse_int(raw, self.name, self.lo, self.hi)

    def value(self, request: web.Request) -> int:
        """Like :meth:`read` for a parameter that has a default or is required."""
        v = self.read(request)
        assert v is not None, f"{self.name} has no default"
        return v

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "integer", "minimum": self.lo, "maximum": self.hi}
        if self.default is not None:
            s["default"] = self.default
        return s


@dataclass(frozen=True, kw_only=True)
class Text(Param):
    default: str = ""
    max_len: int = 128
    pattern: str | None = None  # full match

    def read(self, request: web.Request) -> str:
        raw = self.raw(request)
        if raw is None:
            return self.default
        if len(raw) > self.max_len:
            raise BadRequest(
                f"{self.name} is longer than {self.max_len} characters",
                code="bad-parameter",
                details={"parameter": self.name},
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise BadRequest(
                f"{self.name} is not of the expected form",
                code="bad-parameter",
                details={"parameter": self.name},
            )
        return raw

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "string", "maxLength": self.max_len}
        if self.pattern is not None:
            s["pattern"] = f"^(?:{self.pattern})$"
        return s


@dataclass(frozen=True, kw_only=True)
class Choice(Param):
    choices: tuple[str, ...]
    default: str | None = None

    def read(self, request: web.Request) -> str | None:
        raw = self.raw(request)
        if raw is None:
            return self.default
        if raw not in self.choices:
            raise BadRequest(
                f"{self.name} must be one of {', '.join(self.choices)}",
                code="bad-parameter",
                details={"parameter": self.name},
            )
        return raw

    def value(self, request: web.Request) -> str:
        """Like :meth:`read` for a parameter that has a default or is required."""
        v = self.read(request)
        assert v is not None, f"{self.name} has no default"
        return v

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "string", "enum": list(self.choices)}
        if self.default is not None:
            s["default"] = self.default
        return s


@dataclass(frozen=True, kw_only=True)
class Flag(Param):
    default: bool = False

    def read(self, request: web.Request) -> bool:
        raw = self.raw(request)
        if raw is None:
            return self.default
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise BadRequest(
            f"{self.name} must be true or false",
            code="bad-parameter",
            details={"parameter": self.name},
        )

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": [*_TRUE, *_FALSE]}


@dataclass(frozen=True, kw_only=True)
class When(Param):
    """An ISO 8601 date-time; naive values are UTC."""

    def read(self, request: web.Request) -> datetime | None:
        raw = self.raw(request)
        return None if raw is None else parse_datetime(raw, self.name)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True, kw_only=True)
class Day(Param):
    """A calendar date ``YYYY-MM-DD``."""

    def read(self, request: web.Request) -> date | None:
        raw = self.raw(request)
        return None if raw is None else parse_date(raw, self.name)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date"}


# --- shorthands -------------------------------------------------------------------------


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    return Int(name=name, default=default, lo=lo, hi=hi).value(request)


def optional_int(request: web.Request, name: str, lo: int = 0, hi: int = 10**18) -> int | None:
    return Int(name=name, lo=lo, hi=hi).read(request)


def text_param(request: web.Request, name: str, default: str = "", max_len: int = 128) -> str:
    return Text(name=name, default=default, max_len=max_len).read(request)


def choice_param(request: web.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = Choice(name=name, choices=choices, default=default).read(request)
    assert value is not None
    return value


def flag_param(request: web.Request, name: str, default: bool = False) -> bool:
    return Flag(name=name, default=default).read(request)


def datetime_param(request: web.Request, name: str, tz: tzinfo = UTC) -> datetime | None:
    raw = request.query.get(name)
    return None if not raw else parse_datetime(raw, name, tz)


def date_param(request: web.Request, name: str) -> date | None:
    raw = request.query.get(name)
    return None if not raw else parse_date(raw, name)


def path_int(request: web.Request, name: str = "id") -> int:
    """A positive integer path segment (ids), else 400."""
    return parse_int(request.match_info[name], name, 0, 10**18)


def time_range(
    request: web.Request,
    *,
    since: str = "since",
    until: str = "until",
    default_span: timedelta = timedelta(days=1),
    max_span: timedelta | None = None,
    now: datetime | None = None,
    tz: tzinfo = UTC,
) -> tuple[datetime, datetime]:
    """``[since, until]`` from the query: until defaults to now, since to until minus
    ``default_span``; since must not be after until, nor the span longer than max_span."""
    end = datetime_param(request, until, tz) or now or datetime.now(UTC)
    start = datetime_param(request, since, tz) or end - default_span
    if start > end:
        raise BadRequest(
            f"{since} is after {until}", code="bad-range", details={"parameter": since}
        )
    if max_span is not None and end - start > max_span:
        raise BadRequest(
            f"the range {since}..{until} is longer than {max_span.days} days",
            code="bad-range",
            details={"parameter": since},
        )
    return start, end


def date_range(
    request: web.Request,
    today: date,
    *,
    first: str = "from",
    last: str = "to",
    max_days: int = 366,
) -> tuple[date, date]:
    """``[from, to]`` calendar days: from defaults to today, to to from."""
    start = date_param(request, first) or today
    end = date_param(request, last) or start
    if end < start:
        raise BadRequest(
            f"'{last}' is before '{first}'", code="bad-range", details={"parameter": last}
        )
    if (end - start).days > max_days:
        raise BadRequest(
            f"at most {max_days} days per request", code="bad-range", details={"parameter": last}
        )
    return start, end
