"""The AGI wire protocol without I/O, in the style of python-websockets' sans-I/O core.

Bytes go in with :meth:`AgiParser.feed`, events come out: first one :class:`AgiRequest`
(the ``agi_*: value`` header block ending with a blank line), then one
:class:`AgiResponse` per command sent and :class:`AgiHangup` when Asterisk reports that the
channel hung up (``HANGUP`` line, FastAGI's SIGHUP). Lines are split on bytes and decoded
afterwards, so a UTF-8 character split across TCP segments is never mangled. Everything is
bounded: the header block, a single response line and a multi-line usage message.

Responses (res_agi.c)::

    200 result=1 (timeout) endpos=1234
    510 Invalid or unknown command
    511 Command Not Permitted on a dead channel or intercept routine
    520-Invalid command syntax.  Proper usage follows:
    Usage: ...
    520 End of proper usage.

:func:`encode_command` builds one command line, quoting arguments as res_agi's parser
expects and refusing CR, LF and NUL (a newline in an argument would be a second command).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_RESPONSE_BYTES",
    "AgiHangup",
    "AgiParser",
    "AgiProtocolError",
    "AgiRequest",
    "AgiResponse",
    "encode_command",
]

MAX_HEADER_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
MAX_HEADER_LINES = 256

_HEADER_LINE = re.compile(r"(agi_[A-Za-z0-9_]+):[ \t]?(.*)")
_RESULT = re.compile(r"result=(\S*)(?:\s+\((.*)\))?(?:\s+endpos=(-?\d+))?\s*$", re.DOTALL)
_COMMAND_NAME = re.compile(r"[A-Za-z][A-Za-z ]*[A-Za-z]")


class AgiProtocolError(ValueError):
    """The peer does not speak AGI (garbage, oversized input); close the connection."""


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """The header block: ``env`` without arguments, ``args`` from ``agi_arg_1..n``."""

    env: dict[str, str]
    args: tuple[str, ...]

    @property
    def script(self) -> str:
        """The route: the path of ``agi://host:port/<route>`` without leading slash."""
        return self.env.get("agi_network_script", "").strip().lstrip("/")


@dataclass(frozen=True, slots=True)
class AgiResponse:
    code: int
    result: str = ""
    data: str = ""
    endpos: int | None = None
    text: str = ""  # the whole response text for non-200 codes (usage message)
    raw: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class AgiHangup:
    """Asterisk sent ``HANGUP``: the channel is gone, commands now fail with 511."""


AgiEvent = AgiRequest | AgiResponse | AgiHangup


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


class AgiParser:
    """Feed bytes, get events. Raises :class:`AgiProtocolError` on anything malformed;
    after that the parser is unusable (close the connection)."""

    def __init__(
        self, *, max_header: int = MAX_HEADER_BYTES, max_response: int = MAX_RESPONSE_BYTES
    ) -> None:
        self._buf = bytearray()
        self._max_header = max_header
        self._max_response = max_response
        self._header_done = False
        self._header_bytes = 0
        self._env: dict[str, str] = {}
        self._args: dict[int, str] = {}
        self._usage: list[str] | None = None  # lines of a 520- block in progress
        self._usage_bytes = 0
        self._failed = False

    @property
    def header_done(self) -> bool:
        return self._header_done

    def feed(self, data: bytes) -> list[AgiEvent]:
        if self._failed:
            raise AgiProtocolError("parser already failed")
        self._buf += data
        events: list[AgiEvent] = []
        try:
            while True:
                nl = self._buf.find(b"\n")
                if nl < 0:
                    self._check_pending()
                    return events
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                event = self._line(line, nl + 1)
                if event is not None:
                    events.append(event)
        except AgiProtocolError:
            self._failed = True
            raise

    def _check_pending(self) -> None:
        if not self._header_done:
            if self._header_bytes + len(self._buf) > self._max_header:
                raise AgiProtocolError(f"AGI header larger than {self._max_header} bytes")
        elif len(self._buf) + self._usage_bytes > self._max_response:
            raise AgiProtocolError(f"AGI response larger than {self._max_response} bytes")

    def _line(self, raw: bytes, size: int) -> AgiEvent | None:
        if not self._header_done:
            return self._header_line(raw, size)
        return self._response_line(raw, size)

    def _header_line(self, raw: bytes, size: int) -> AgiRequest | None:
        self._header_bytes += size
        if self._header_bytes > self._max_header:
            raise AgiProtocolError(f"AGI header larger than {self._max_header} bytes")
        if not raw:
            if not self._env:
                raise AgiProtocolError("empty AGI header")
            self._header_done = True
            args = tuple(self._args[i] for i in sorted(self._args))
            return AgiRequest(env=self._env, args=args)
        if len(self._env) + len(self._args) >= MAX_HEADER_LINES:
            raise AgiProtocolError("too many AGI header lines")
        m = _HEADER_LINE.fullmatch(_decode(raw))
        if m is None:
            raise AgiProtocolError(f"not an AGI header line: {raw[:60]!r}")
        key, value = m.group(1), m.group(2)
        if key.startswith("agi_arg_"):
            try:
                index = int(key[len("agi_arg_") :])
            except ValueError:
                raise AgiProtocolError(f"bad AGI argument key {key!r}") from None
            self._args[index] = value
        else:
            self._env[key] = value
        return None

    def _response_line(self, raw: bytes, size: int) -> AgiEvent | None:
        text = _decode(raw)
        if self._usage is not None:
            self._usage_bytes += size
            if self._usage_bytes > self._max_response:
                raise AgiProtocolError(f"AGI response larger than {self._max_response} bytes")
            if text.startswith("520 "):
                lines = (*self._usage, text)
                self._usage = None
                self._usage_bytes = 0
                return AgiResponse(code=520, text="\n".join(lines[1:-1]), raw=lines)
            self._usage.append(text)
            return None
        if size > self._max_response:
            raise AgiProtocolError(f"AGI response larger than {self._max_response} bytes")
        if text == "HANGUP":
            return AgiHangup()
        if not text:
            return None  # stray blank line (after the header or between responses)
        if text.startswith("520-"):
            self._usage = [text]
            self._usage_bytes = size
            return None
        if len(text) < 3 or not text[:3].isdigit() or (len(text) > 3 and text[3] != " "):
            raise AgiProtocolError(f"not an AGI response: {raw[:60]!r}")
        code = int(text[:3])
        rest = text[4:]
        if code == 200:
            m = _RESULT.match(rest)
            if m is None:
                raise AgiProtocolError(f"malformed 200 response: {raw[:60]!r}")
            endpos = int(m.group(3)) if m.group(3) is not None else None
            return AgiResponse(
                code=200, result=m.group(1), data=m.group(2) or "", endpos=endpos, raw=(text,)
            )
        return AgiResponse(code=code, text=rest, raw=(text,))


def _quote(arg: str) -> str:
    if arg and not any(c in arg for c in ' \t"\\'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_command(name: str, *args: str | int) -> bytes:
    """One AGI command line, e.g. ``encode_command("GET DATA", "beep", 3000, 1)``."""
    if _COMMAND_NAME.fullmatch(name) is None:
        raise ValueError(f"invalid AGI command name {name!r}")
    parts = [name.upper()]
    for arg in args:
        s = str(arg)
        if any(c in s for c in "\r\n\0"):
            raise ValueError("AGI arguments must not contain CR, LF or NUL")
        parts.append(_quote(s))
    return (" ".join(parts) + "\n").encode("utf-8")
