"""IVR menus as data: the admin's TOML file, validated, with line-precise errors.

Syntax errors carry tomllib's line/column. Semantic errors (a wrong value, an unknown
menu or prompt, a bad digit) are reported at the line of the offending key, found with a
small index of dotted key -> line built by scanning the file (tomllib keeps no
positions). Every problem is listed, one per line, ``file:line: key: message``.

See docs/ivr.md for the format; ivr/menus.example.toml is a complete example.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cti.phone import normalize
from cti.store.models import clean_text

__all__ = [
    "Action",
    "IvrData",
    "MenuError",
    "load_menus",
    "parse_menus",
    "to_document",
    "validate_document",
]

DIGITS = frozenset("0123456789*#")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
# [cti-queue] matches _[a-z0-9]. and its FILTER(a-z0-9_-) drops "-" (a trailing "-" is no
# range in FILTER), so queue names are lower case letters, digits and "_"
_QUEUE = re.compile(r"[a-z0-9][a-z0-9_]{1,39}")
_EXTENSION = re.compile(r"[0-9]{2,12}")
_MAILBOX = re.compile(r"[0-9]{1,12}")
_SOUND = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")
_VOICE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")
_SPAN = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
#: an uploaded recording: the SHA-256 prefix of its converted audio (ivr.audio)
UPLOAD_ID = re.compile(r"[0-9a-f]{40}")

ActionName = Literal[
    "queue", "menu", "collect", "extension", "external", "voicemail",
    "callback", "repeat", "back", "operator", "hangup",
]  # fmt: skip


class MenuError(ValueError):
    """The menu file is invalid; ``str()`` lists every problem with its line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prompt(_M):
    """A recorded file (Asterisk sound name, or absolute path without extension), a
    recording uploaded through the API (``upload``: its id, see :mod:`ivr.audio`) or a
    text spoken by espeak-ng in ``voice`` (``cmn`` Mandarin, ``en`` English, ...)."""

    file: str | None = None
    upload: str | None = None
    text: str | None = Field(None, min_length=1, max_length=2000)
    voice: str = "en"
    speed: int = Field(150, ge=80, le=400)

    @field_validator("upload")
    @classmethod
    def _upload(cls, v: str | None) -> str | None:
        if v is not None and UPLOAD_ID.fullmatch(v) is None:
            raise ValueError("an uploaded recording's id (40 hexadecimal digits)")
        return v

    @field_validator("file")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        if v is not None and (_SOUND.fullmatch(v.lstrip("/")) is None or ".." in v):
            raise ValueError("a sound name or absolute path of letters, digits, _ . / -")
        return v

    @field_validator("voice")
    @classmethod
    def _voice(cls, v: str) -> str:
        if _VOICE.fullmatch(v) is None:
            raise ValueError("an espeak-ng voice name like cmn or en")
        return v

    @model_validator(mode="after")
    def _whole(self) -> Self:
        if sum(x is not None for x in (self.file, self.upload, self.text)) != 1:
            raise ValueError("give exactly one of file, upload or text")
        return self


class Action(_M):
    action: ActionName
    target: str = ""
    prompt: str = ""  # played before the action (e.g. "we are closed" then hangup)

    @model_validator(mode="after")
    def _whole(self) -> Self:
        a, t = self.action, self.target
        checks: dict[str, tuple[re.Pattern[str], str]] = {
            "queue": (_QUEUE, "a queue name (lower case letters, digits, _; 2-40)"),
            "menu": (_NAME, "a menu name"),
            "collect": (_NAME, "a collect step name"),
            "extension": (_EXTENSION, "an extension of 2-12 digits"),
            "voicemail": (_MAILBOX, "a mailbox number"),
        }
        if a in checks:
            pattern, what = checks[a]
            if pattern.fullmatch(t) is None:
                raise ValueError(f"target of {a} must be {what} (got {t!r})")
        elif a == "callback":
            if t and _QUEUE.fullmatch(t) is None:
                raise ValueError(f"target of callback must be a queue name (got {t!r})")
        elif a == "external":
            if not t:
                raise ValueError("target of external must be a phone number")
        elif t:
            raise ValueError(f"{a} takes no target")
        return self


class Menu(_M):
    greeting: str
    timeout: float = Field(5.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=10)
    invalid: str = ""
    timeout_prompt: str = ""
    fallback: Action = Action(action="operator")
    options: dict[str, Action] = Field(default_factory=dict)


class Collect(_M):
    """Collect digits (account or order number), validated, stored on the call."""

    prompt: str
    min_length: int = Field(1, ge=1, le=32)
    max_length: int = Field(12, ge=1, le=32)
    charset: str = "0123456789"
    timeout: float = Field(6.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=10)
    invalid: str = ""
    then: Action
    fallback: Action = Action(action="operator")

    @field_validator("charset")
    @classmethod
    def _charset(cls, v: str) -> str:
        if not v or not set(v) <= set("0123456789*"):
            raise ValueError("charset must be made of 0-9 and * (# ends input)")
        return v

    @model_validator(mode="after")
    def _whole(self) -> Self:
        if self.min_length > self.max_length:
            raise ValueError("min_length must not exceed max_length")
        return self

    def valid(self, digits: str) -> bool:
        return self.min_length <= len(digits) <= self.max_length and set(digits) <= set(
            self.charset
        )


Span = Annotated[str, Field(pattern=_SPAN.pattern)]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Schedule(_M):
    """Opening hours per weekday, public holidays (``holidays`` package) and the site's
    own days off and make-up working days (调休: a weekend day that is a working day,
    open with the hours of ``workday_hours``). The country's own make-up workdays come
    from the package (``weekend_workdays``); ``extra_*`` dates win over the package."""

    timezone: str = ""  # "" -> settings.site.timezone
    holidays: str = ""  # country code for the ``holidays`` package, "" for none
    subdivision: str = ""
    extra_holidays: list[date] = Field(default_factory=list, max_length=366)
    extra_workdays: list[date] = Field(default_factory=list, max_length=366)
    workday_hours: Weekday = "mon"  # the hours a make-up workday keeps
    closed: Action
    holiday: Action | None = None  # defaults to ``closed``
    emergency: Action | None = None  # the emergency override's action (default: closed)
    mon: list[Span] = Field(default_factory=list, max_length=12)
    tue: list[Span] = Field(default_factory=list, max_length=12)
    wed: list[Span] = Field(default_factory=list, max_length=12)
    thu: list[Span] = Field(default_factory=list, max_length=12)
    fri: list[Span] = Field(default_factory=list, max_length=12)
    sat: list[Span] = Field(default_factory=list, max_length=12)
    sun: list[Span] = Field(default_factory=list, max_length=12)

    @model_validator(mode="after")
    def _whole(self) -> Self:
        for day in range(7):
            for start, end in self.spans(day):
                if start >= end:
                    raise ValueError(f"{WEEKDAYS[day]}: a span must end after it starts")
        both = sorted(set(self.extra_holidays) & set(self.extra_workdays))
        if both:
            raise ValueError(f"{both[0]} is both an extra holiday and an extra workday")
        return self

    def spans(self, weekday: int) -> list[tuple[time, time]]:
        out = []
        for span in getattr(self, WEEKDAYS[weekday]):
            m = _SPAN.fullmatch(span)
            assert m is not None
            h1, m1, h2, m2 = (int(x) for x in m.groups())
            end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
            out.append((time(h1, m1), end))
        return out


class Number(_M):
    menu: str = ""
    schedule: str = ""


class Recognition(_M):
    greeting: str = ""  # prompt played to a known customer
    owner_routing: bool = True  # set CTI_OWNER_AGENT for the ACD
    tiers: dict[str, Action] = Field(default_factory=dict)


class Defaults(_M):
    menu: str = ""  # the start menu; "" only while there is no menu (calls: operator)
    schedule: str = ""
    operator: str = "support"  # the operator queue

    @field_validator("operator")
    @classmethod
    def _op(cls, v: str) -> str:
        if _QUEUE.fullmatch(v) is None:
            raise ValueError("operator must be a queue name")
        return v


class IvrData(_M):
    defaults: Defaults = Defaults()
    prompts: dict[str, Prompt] = Field(default_factory=dict, max_length=500)
    menus: dict[str, Menu] = Field(default_factory=dict, max_length=200)
    collect: dict[str, Collect] = Field(default_factory=dict, max_length=100)
    schedules: dict[str, Schedule] = Field(default_factory=dict, max_length=50)
    numbers: dict[str, Number] = Field(default_factory=dict, max_length=1000)
    recognition: Recognition = Recognition()


# --- line index ------------------------------------------------------------------------------
_TABLE = re.compile(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_K = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_KEYLINE = re.compile(rf"\s*({_K}(?:\s*\.\s*{_K})*)\s*=")
_PART = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*(\.|$)")


def _split_key(text: str) -> tuple[str, ...]:
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            break
        raw = m.group(1)
        parts.append(raw[1:-1] if raw[0] in "\"'" else raw)
        pos = m.end()
    return tuple(parts)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Dotted key path -> 1-based line where it is defined (tables and ``key =`` lines,
    including the keys of inline tables on that line)."""
    index: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _TABLE.match(line)
        if m is not None and line.lstrip().startswith("["):
            table = _split_key(m.group(1))
            index.setdefault(table, lineno)
            continue
        k = _KEYLINE.match(line)
        if k is not None:
            path = table + _split_key(k.group(1))
            index.setdefault(path, lineno)
            # keys inside an inline table on the same line: { action = "queue", ... }
            rest = line[k.end() :]
            for inner in re.finditer(r"[{,]\s*([A-Za-z0-9_-]+)\s*=", rest):
                index.setdefault((*path, inner.group(1)), lineno)
    return index


def _line_of(index: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in index:
            return index[loc[:n]]
    return None


def _fmt_loc(loc: tuple[str, ...]) -> str:
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in loc)


# --- loading ---------------------------------------------------------------------------------
Reporter = Callable[[tuple[str, ...], str], None]


def _validate(raw: Any, report: Reporter, region: str) -> IvrData | None:
    """The one validation of menus, from a TOML file or a stored/edited document:
    every problem goes to ``report(key path, message)``; None when there was any."""
    try:
        data = IvrData.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(str(x) for x in err["loc"])
            report(loc, err["msg"].removeprefix("Value error, "))
        return None
    failed = False

    def counting(loc: tuple[str, ...], msg: str) -> None:
        nonlocal failed
        failed = True
        report(loc, msg)

    _check_references(data, counting, region)
    return None if failed else data


def parse_menus(text: str, name: str = "menus.toml", *, region: str = "CN") -> IvrData:
    """Validate the file's text; raises :class:`MenuError` listing every problem, each
    ``file:line: key: message``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MenuError([f"{name}: invalid TOML: {exc}"]) from None
    index = key_lines(text)
    problems: list[str] = []

    def report(loc: tuple[str, ...], msg: str) -> None:
        line = _line_of(index, loc)
        where = f"{name}:{line}" if line else name
        problems.append(f"{where}: {_fmt_loc(loc) or '(top level)'}: {msg}")

    data = _validate(raw, report, region)
    if data is None or problems:
        raise MenuError(problems)
    return data


def _unstorable(value: Any, loc: tuple[str, ...], report: Reporter) -> None:
    """Report text no database can store (NUL, lone surrogates), keys and values."""
    if isinstance(value, str):
        if clean_text(value) != value:
            report(loc, "contains characters that cannot be stored (NUL or a lone surrogate)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _unstorable(k, (*loc, str(k)), report)
            _unstorable(v, (*loc, str(k)), report)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _unstorable(v, (*loc, str(i)), report)


def validate_document(doc: Any, *, region: str = "CN") -> IvrData:
    """Validate menus kept as a JSON document (the store, the API); raises
    :class:`MenuError` listing every problem as ``key.path: message``."""
    problems: list[str] = []

    def report(loc: tuple[str, ...], msg: str) -> None:
        problems.append(f"{clean_text(_fmt_loc(loc)) or '(top level)'}: {msg}")

    _unstorable(doc, (), report)
    if problems:
        raise MenuError(problems)
    data = _validate(doc, report, region)
    if data is None or problems:
        raise MenuError(problems)
    return data


def to_document(data: IvrData) -> dict[str, Any]:
    """The JSON document of validated menus (what the store keeps and the API shows);
    :func:`validate_document` of it gives ``data`` back."""
    return data.model_dump(mode="json", exclude_none=True)


def _check_references(data: IvrData, report: Reporter, region: str) -> None:
    def prompt(loc: tuple[str, ...], name: str, required: bool = False) -> None:
        if (name or required) and name not in data.prompts:
            report(loc, f"unknown prompt {name!r} (define it under [prompts])")

    def action(loc: tuple[str, ...], a: Action) -> None:
        prompt((*loc, "prompt"), a.prompt)
        if a.action == "menu" and a.target not in data.menus:
            report((*loc, "target"), f"unknown menu {a.target!r}")
        elif a.action == "collect" and a.target not in data.collect:
            report((*loc, "target"), f"unknown collect step {a.target!r}")
        elif a.action == "external" and not normalize(a.target, region):
            report((*loc, "target"), f"not a valid phone number: {a.target!r}")

    for table in ("prompts", "menus", "collect", "schedules"):
        for key in getattr(data, table):
            if _NAME.fullmatch(key) is None:
                report((table, key), "a name is 1-40 of A-Z a-z 0-9 _ -")
    for tier in data.recognition.tiers:
        if _NAME.fullmatch(tier) is None:
            report(("recognition", "tiers", tier), "a tier is 1-40 of A-Z a-z 0-9 _ -")
    if data.defaults.menu and data.defaults.menu not in data.menus:
        report(("defaults", "menu"), f"unknown menu {data.defaults.menu!r}")
    elif not data.defaults.menu and data.menus:
        report(("defaults", "menu"), "choose the start menu")
    if data.defaults.schedule and data.defaults.schedule not in data.schedules:
        report(("defaults", "schedule"), f"unknown schedule {data.defaults.schedule!r}")
    for mname, menu in data.menus.items():
        base = ("menus", mname)
        prompt((*base, "greeting"), menu.greeting, required=True)
        prompt((*base, "invalid"), menu.invalid)
        prompt((*base, "timeout_prompt"), menu.timeout_prompt)
        action((*base, "fallback"), menu.fallback)
        if menu.fallback.action in {"repeat", "back"}:
            report((*base, "fallback", "action"), "fallback must end the menu (not repeat/back)")
        for digit, opt in menu.options.items():
            if digit not in DIGITS:
                report((*base, "options", digit), "an option key is one digit 0-9, * or #")
            action((*base, "options", digit), opt)
    for cname, step in data.collect.items():
        base = ("collect", cname)
        prompt((*base, "prompt"), step.prompt, required=True)
        prompt((*base, "invalid"), step.invalid)
        for key, a in (("then", step.then), ("fallback", step.fallback)):
            action((*base, key), a)
            if a.action in {"repeat", "back", "collect", "menu"}:
                report((*base, key, "action"), f"{key} cannot be {a.action}")
    for sname, sched in data.schedules.items():
        base = ("schedules", sname)
        if sched.timezone:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(sched.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                report((*base, "timezone"), f"unknown time zone {sched.timezone!r}")
        if sched.holidays:
            import holidays as hol

            try:
                hol.country_holidays(sched.holidays, subdiv=sched.subdivision or None)
            except NotImplementedError:
                report((*base, "holidays"), f"unknown holiday country {sched.holidays!r}")
        pairs: list[tuple[str, Action | None]] = [("closed", sched.closed)]
        pairs.append(("holiday", sched.holiday))
        for key, maybe in pairs:
            if maybe is not None:
                action((*base, key), maybe)
                if maybe.action in {"repeat", "back", "collect", "menu"}:
                    report((*base, key, "action"), f"{key} cannot be {maybe.action}")
        if sched.emergency is not None:
            action((*base, "emergency"), sched.emergency)
            if sched.emergency.action in {"repeat", "back", "collect", "menu"}:
                what = sched.emergency.action
                report((*base, "emergency", "action"), f"emergency cannot be {what}")
    for num, entry in data.numbers.items():
        base = ("numbers", num)
        if re.fullmatch(r"[0-9+*#]{1,32}", num) is None:
            report(base, "a dialled number of digits, + * #")
        if entry.menu and entry.menu not in data.menus:
            report((*base, "menu"), f"unknown menu {entry.menu!r}")
        if entry.schedule and entry.schedule not in data.schedules:
            report((*base, "schedule"), f"unknown schedule {entry.schedule!r}")
    prompt(("recognition", "greeting"), data.recognition.greeting)
    for tier, a in data.recognition.tiers.items():
        action(("recognition", "tiers", tier), a)
        if a.action in {"repeat", "back"}:
            report(("recognition", "tiers", tier, "action"), f"cannot be {a.action}")


def load_menus(path: Path, *, region: str = "CN") -> IvrData:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MenuError([f"{path}: cannot read: {exc}"]) from None
    return parse_menus(text, str(path), region=region)
