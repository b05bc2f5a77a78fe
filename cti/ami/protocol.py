"""I/O-free AMI parser: bytes in, messages out.

Modelled on python-websockets' Sans-I/O protocol: the caller feeds whatever bytes the
socket gave (``receive_data``), signals the end of the stream (``receive_eof``) and drains
what was parsed (``events_received``). Nothing here touches a socket or the event loop,
so every framing case is tested without one.

Framing: bytes are buffered and split on the blank line that ends every AMI message
(``\\r\\n\\r\\n``; a bare ``\\n\\n`` is tolerated too). A message is decoded only after it
is complete, so a UTF-8 character split across TCP chunks decodes correctly; undecodable
bytes become U+FFFD and never raise. The first line the server sends is the banner
(``Asterisk Call Manager/<version>``, no blank line after it) and becomes a
:class:`Greeting`.

Bad input never raises and never costs the messages after it; it becomes a
:class:`ParseError` in the output:

- a header line without ``": "`` (garbage): one ParseError for the message, and the
  message's valid header lines are still returned as a :class:`Message` (so garbage that
  precedes a message without a blank line does not swallow that message);
- a message larger than ``max_message_size``: one ParseError, everything up to the next
  blank line is discarded (the parser resynchronises there), whether the oversized
  message arrived whole or in pieces;
- a partial message at EOF: ParseError("truncated ...").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import TypeVar, overload

__all__ = ["BANNER_PREFIX", "AmiParser", "Greeting", "Message", "ParseError"]

BANNER_PREFIX = "Asterisk Call Manager/"

_T = TypeVar("_T")

# How many bytes of offending input a ParseError carries (for a log line, not forensics).
_EXCERPT = 64

_KEY = itemgetter(0)
_SEP = itemgetter(1)


@dataclass(frozen=True, slots=True)
class Greeting:
    """The banner line, e.g. ``Asterisk Call Manager/11.0.0`` -> version "11.0.0"."""

    version: str


@dataclass(frozen=True, slots=True)
class ParseError:
    """Input that was not a valid AMI message; the parser went on after it."""

    reason: str
    excerpt: bytes


class Message(Mapping[str, str]):
    """One AMI message (event, response). Case-insensitive keys; repeated keys kept in order.

    ``msg["Event"]`` / ``msg.get("linkedid")`` give the first value of a key;
    :meth:`get_all` gives every value of a repeated key (``ChanVariable``, ``Output``...);
    ``headers`` is the message exactly as received, in order. ``len()`` and iteration
    count distinct keys (in the case of their first occurrence).
    """

    __slots__ = ("_headers", "_index", "_parts")

    # The parser keeps str.partition()'s (key, ": ", value) triples and builds the
    # (key, value) tuple only if someone asks for ``headers``: this is the hot path.
    _parts: list[tuple[str, str, str]] | None
    _headers: tuple[tuple[str, str], ...] | None
    _index: dict[str, str]

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        items = tuple((k, v) for k, v in headers)
        self._parts = None
        self._headers = items
        self._index = {k.lower(): v for k, v in reversed(items)}

    @classmethod
    def _from_parts(cls, parts: list[tuple[str, str, str]]) -> Message:
        msg = object.__new__(cls)
        msg._parts = parts
        msg._headers = None
        msg._index = {k.lower(): v for k, _, v in reversed(parts)}
        return msg

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        headers = self._headers
        if headers is None:
            assert self._parts is not None
            headers = self._headers = tuple([(k, v) for k, _, v in self._parts])
            self._parts = None
        return headers

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()]

    @overload
    def get(self, key: str, /) -> str | None: ...

    @overload
    def get(self, key: str, /, default: str | _T) -> str | _T: ...

    def get(self, key: str, /, default: object = None) -> object:
        return self._index.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self.headers:
            lowered = key.lower()
            if lowered not in seen:
                seen.add(lowered)
                yield key

    def __len__(self) -> int:
        return len(self._index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            return self.headers == other.headers
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Message({list(self.headers)!r})"

    def get_all(self, key: str) -> list[str]:
        lowered = key.lower()
        return [v for k, v in self.headers if k.lower() == lowered]

    @property
    def event(self) -> str | None:
        return self._index.get("event")

    @property
    def response(self) -> str | None:
        return self._index.get("response")

    @property
    def action_id(self) -> str | None:
        return self._index.get("actionid")


Item = Greeting | Message | ParseError


class AmiParser:
    """Incremental AMI parser for one connection (server -> client direction)."""

    __slots__ = ("_banner_pending", "_buf", "_discarding", "_eof", "_events", "_max", "_scanned")

    def __init__(self, *, max_message_size: int = 1 << 20) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._max = max_message_size
        self._buf = bytearray()
        self._events: list[Item] = []
        self._banner_pending = True
        # After an oversized message: drop bytes until the next message terminator.
        self._discarding = False
        # Bytes at the start of _buf already searched for a terminator (none found).
        self._scanned = 0
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the server (any chunking)."""
        if self._eof:
            raise EOFError("receive_data() after receive_eof()")
        if not data:
            return
        self._buf += data
        if self._banner_pending and not self._parse_banner():
            return
        self._parse_messages()

    def receive_eof(self) -> None:
        """The server closed the stream; a partial message becomes a ParseError."""
        if self._eof:
            return
        self._eof = True
        buf = self._buf
        if not self._discarding and buf.strip():
            self._events.append(
                ParseError("truncated message at end of stream", bytes(buf[:_EXCERPT]))
            )
        buf.clear()
        self._scanned = 0

    def events_received(self) -> list[Item]:
        """Return (and forget) everything parsed so far, in stream order."""
        events = self._events
        self._events = []
        return events

    # --- internals ------------------------------------------------------------------------

    def _parse_banner(self) -> bool:
        """Consume the banner line if complete. False: wait for more bytes."""
        buf = self._buf
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > self._max:
                    self._oversized(0)
                    self._banner_pending = False
                    return True
                return False
            line = bytes(buf[:nl]).rstrip(b"\r")
            if not line.strip():
                # Blank lines before the banner carry nothing; skip them.
                del buf[: nl + 1]
                continue
            self._banner_pending = False
            if b": " in line:
                # No banner (a mid-stream capture, a proxy): parse as messages.
                return True
            if nl > self._max:
                self._oversized(0)
                return True
            text = line.decode("utf-8", "replace")
            if text.startswith(BANNER_PREFIX):
                self._events.append(Greeting(text[len(BANNER_PREFIX) :].strip()))
            else:
                self._events.append(ParseError("not an AMI banner", line[:_EXCERPT]))
            del buf[: nl + 1]
            return True

    def _oversized(self, pos: int) -> None:
        excerpt = bytes(self._buf[pos : pos + min(_EXCERPT, self._max)])
        self._events.append(
            ParseError(f"message larger than {self._max} bytes, discarded", excerpt)
        )
        self._discarding = True

    def _parse_messages(self) -> None:
        buf = self._buf
        size = len(buf)
        pos = 0
        scanned = self._scanned
        while True:
            # A message ends with a line end followed by an empty line: "\r\n\r\n", or
            # "\n\n" for bare-LF peers. The two can't overlap, so the earliest of both
            # is the same however the bytes were chunked.
            crlf = buf.find(b"\r\n\r\n", max(pos, scanned - 3))
            lf = buf.find(b"\n\n", max(pos, scanned - 1), crlf if crlf >= 0 else size)
            if lf >= 0:
                end, nxt = lf, lf + 2
                if end > pos and buf[end - 1] == 0x0D:  # "...\r\n\n"
                    end -= 1
            elif crlf >= 0:
                end, nxt = crlf, crlf + 4
            else:
                break
            if self._discarding:
                self._discarding = False
            elif end - pos > self._max:
                self._oversized(pos)
                self._discarding = False
            else:
                self._parse_one(buf[pos:end])
            pos = nxt

        pending = size - pos
        if not self._discarding and pending > self._max + 3:
            # No terminator within max_message_size bytes (the last 3 could be the
            # start of one): report now, drop it, resync on the next terminator.
            self._oversized(pos)
        if self._discarding:
            # Keep 3 bytes: a terminator may straddle this chunk and the next.
            pos = max(pos, size - 3)
        if pos:
            del buf[:pos]
        self._scanned = len(buf)

    def _parse_one(self, body: bytearray) -> None:
        text = body.decode("utf-8", "replace")
        lines = text.split("\r\n")
        if len(lines) - 1 != text.count("\n"):  # some line ends with a bare LF
            lines = text.replace("\r\n", "\n").split("\n")
        parts = [line.partition(": ") for line in lines]
        # Fast path: every line is "Key: value" with a non-empty key (C-level checks).
        if "" in map(_SEP, parts) or "" in map(_KEY, parts):
            self._parse_irregular(parts)
        else:
            self._events.append(Message._from_parts(parts))

    def _parse_irregular(self, parts: list[tuple[str, str, str]]) -> None:
        """Blank lines, "Key:" without a space, garbage lines (kept valid lines)."""
        good: list[tuple[str, str, str]] = []
        bad: str | None = None
        for key, sep, value in parts:
            if sep and key:
                good.append((key, sep, value))
                continue
            line = key + sep + value
            if not line:
                continue
            if line[-1] == ":" and " " not in line and len(line) > 1:
                # "Key:" with an empty value and no trailing space.
                good.append((line[:-1], ": ", ""))
            elif bad is None:
                bad = line
        if bad is not None:
            self._events.append(
                ParseError("malformed header line", bad.encode("utf-8", "replace")[:_EXCERPT])
            )
        if good:
            self._events.append(Message._from_parts(good))
