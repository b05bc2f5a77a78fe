"""I/O-free AMI parser: bytes in, messages out.

Modelled on python-websockets' Sans-I/O protocol: the caller feeds whatever bytes the
socket gave (``receive_data``), signals the end of the stream (``receive_eof``) and drains
what was parsed (``events_received``). Nothing here touches a socket or the event loop,
so every framing case is tested without one.

Framing follows the protocol strictly, because caller-controlled text reaches this stream
unescaped (Asterisk percent-decodes the SIP From user part and the request URI, so a
caller can put CR and LF into ``CallerIDNum`` and ``Exten``, design.md §5): a line ends
with ``\r\n`` and a message with ``\r\n\r\n``, nothing else. A bare ``\n`` or ``\r``
is part of the value it stands in, never a line or message end. A message is decoded only
after it is complete, so a UTF-8 character split across TCP chunks decodes correctly;
undecodable bytes become U+FFFD and never raise. The first line the server sends is the
banner (``Asterisk Call Manager/<version>``, no blank line after it) and becomes a
:class:`Greeting`.

What this layer cannot know is whether a well-framed message is authentic: a caller who
writes ``\r\n\r\n`` into a header value ends Asterisk's message early and makes the
rest look like messages of its own. :mod:`cti.ami.screen` decides that.

Bad input never raises and never costs the messages after it; it becomes a
:class:`ParseError` in the output:

- a line that is not ``Name: value`` (a name is letters, digits, ``-``, ``_``, ``(``,
  ``)`` and ``.``): the whole message is dropped with one ParseError (a message with a
  line we cannot read is not one we act on);
- a message larger than ``max_message_size``: one ParseError, everything up to the next
  blank line is discarded (the parser resynchronises there), whether the oversized
  message arrived whole or in pieces;
- a partial message at EOF: ParseError("truncated ...").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, KeysView, Mapping
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

    def lower_keys(self) -> KeysView[str]:
        """The distinct keys, lower-cased (a view: cheap set operations)."""
        return self._index.keys()

    @property
    def header_count(self) -> int:
        """Header lines, repeats included (``len()`` counts distinct keys)."""
        parts = self._parts
        return len(parts) if parts is not None else len(self.headers)

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

    @property
    def at_boundary(self) -> bool:
        """No part of a message is waiting for more bytes: everything received so far
        has been framed (:mod:`cti.ami.screen` releases what it held back then)."""
        return not self._buf and not self._banner_pending

    # --- internals ------------------------------------------------------------------------

    def _parse_banner(self) -> bool:
        """Consume the banner line if complete. False: wait for more bytes."""
        buf = self._buf
        while True:
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > self._max:
                    self._oversized(0)
                    self._banner_pending = False
                    return True
                return False
            line = bytes(buf[:nl])
            if not line.strip():
                # Blank lines before the banner carry nothing; skip them.
                del buf[: nl + 2]
                continue
            self._banner_pending = False
            if b": " in line:
                # No banner (a mid-stream capture, a proxy): parse as messages.
                return True
            if nl > self._max:
                self._oversized(0)
                return True
            text = line.decode("utf-8", "replace")
            if text.startswith(BANNER_PREFIX) and _is_banner_version(text[len(BANNER_PREFIX) :]):
                self._events.append(Greeting(text[len(BANNER_PREFIX) :]))
            else:
                self._events.append(ParseError("not an AMI banner", line[:_EXCERPT]))
            del buf[: nl + 2]
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
            # A message ends with "\r\n\r\n" and nothing else (see the module docstring).
            end = buf.find(b"\r\n\r\n", max(pos, scanned - 3))
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
            elif end - pos > self._max:
                self._oversized(pos)
                self._discarding = False
            else:
                self._parse_one(buf[pos:end])
            pos = end + 4

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
        parts = [line.partition(": ") for line in body.decode("utf-8", "replace").split("\r\n")]
        # Fast path: every line is "Key: value" with a key already seen to be well formed
        # (C-level checks; the set of good keys is small and bounded).
        if "" in map(_SEP, parts) or not _GOOD_KEYS.issuperset(map(_KEY, parts)):
            self._parse_irregular(parts)
        else:
            self._events.append(Message._from_parts(parts))

    def _parse_irregular(self, parts: list[tuple[str, str, str]]) -> None:
        """Leading blank lines, "Key:" without a space, new keys; any other line drops
        the whole message."""
        good: list[tuple[str, str, str]] = []
        for key, sep, value in parts:
            if sep and _good_key(key):
                good.append((key, sep, value))
                continue
            line = key + sep + value
            if not line and not good:
                continue  # blank lines between messages
            if line[-1:] == ":" and _good_key(line[:-1]):
                # "Key:" with an empty value and no trailing space.
                good.append((line[:-1], ": ", ""))
                continue
            self._events.append(
                ParseError("malformed header line", line.encode("utf-8", "replace")[:_EXCERPT])
            )
            return
        if good:
            self._events.append(Message._from_parts(good))


# A header name as Asterisk writes them ("Cause-txt", "CID-CallingPres", "Line-000001-
# 000002"); never a space, a colon, CR or LF.
_KEY_RE = re.compile(r"[A-Za-z0-9_()./-]{1,128}")
_GOOD_KEYS: set[str] = set()
_GOOD_KEYS_MAX = 8192  # keys are few; an unbounded set would grow with hostile input


def _good_key(key: str) -> bool:
    if key in _GOOD_KEYS:
        return True
    if _KEY_RE.fullmatch(key) is None:
        return False
    if len(_GOOD_KEYS) < _GOOD_KEYS_MAX:
        _GOOD_KEYS.add(key)
    return True


def _is_banner_version(version: str) -> bool:
    return bool(version) and all(c.isalnum() or c in ".-_+~" for c in version)
