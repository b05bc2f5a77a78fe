"""Which AMI messages are Asterisk's own: the screen between the parser and everything
that acts on events. No I/O, like the parser.

The threat (issue 13, design.md §5): Asterisk writes caller-controlled text into AMI
events unescaped. It percent-decodes the SIP From user part (``CallerIDNum``) and the
request URI (``Exten``), so a caller can put CR and LF into them. The parser
(:mod:`cti.ami.protocol`) frames on CRLF only, so a bare LF or CR stays inside its value;
but a caller who writes ``\\r\\n`` adds header lines to Asterisk's event, and one who
writes ``\\r\\n\\r\\n`` ends it early: the rest of that single event then reads as
messages of the caller's choosing. No framing can tell them apart. What an injection
always produces, and what this screen drops (each drop has a reason code, counted and
logged by the client):

- ``foreign_system``: an event without Asterisk's ``SystemName`` header (Asterisk writes
  it right after ``Event``/``Privilege``/``Timestamp`` in every event when ``systemname``
  is set; the client asks Asterisk for it with ``CoreSettings`` after login). Whatever a
  caller makes up after an early message end lacks it, unless the caller knows the system
  name, which ``cti asterisk up`` makes a per-install secret (it also prefixes every
  Uniqueid and Linkedid, so no caller can name another caller's call).
- ``fragment``: a message that is neither an event nor a response (the remainder of the
  cut event when the caller wrote nothing before it), ``foreign_response``: a response
  whose ActionID is not one of ours (ActionIDs carry a random prefix), ``malformed``:
  what the parser could not read.
- ``repeated_header``: an event naming a header twice (an added ``Linkedid``);
  ``ChanVariable`` lines are the only headers Asterisk repeats in events.
- ``unknown_header``: a header its event type cannot have, per Asterisk's documentation
  (:mod:`cti.ami.event_headers`); ``incomplete``: a channel or bridge snapshot without its
  identity (``Channel``, ``Uniqueid``, ``Linkedid``; a cut event misses them).
- ``injected_head``: the event just before any of the fragments above. The part of a cut
  event before the caller's message end is genuine (its ``SystemName`` too) up to the
  caller's text, and the caller's fake remainder follows it in the same write. So every
  event is held back until the next message proves authentic, or until the stream is at
  a message boundary (everything received framed), which is where a single write of
  Asterisk's ends: no delay in practice, nothing waits for a timer.
- ``backlog``: events received before the system name was known, beyond a bound.

Not a drop: Asterisk's login notice. manager.c's ``action_login`` writes ``FullyBooted``
right after its answer to our Login, by hand, with neither ``Timestamp`` nor
``SystemName``; a ``FullyBooted`` without ``SystemName`` as the first event of a
connection is that notice and is discarded quietly (nothing acts on it; anything else
without ``SystemName`` is still ``foreign_system``).

Responses and list items carrying our ActionID prefix are Asterisk's answers to us (a
caller cannot guess the prefix); they pass unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cti.ami.event_headers import BRIDGE_SNAPSHOT, CHANNEL_SNAPSHOT, EVENTS
from cti.ami.protocol import Greeting, Message, ParseError

__all__ = ["REASONS", "AmiScreen", "Drop"]

#: Every reason code a drop can have (the metric's label values).
REASONS = (
    "malformed",
    "fragment",
    "foreign_response",
    "foreign_system",
    "repeated_header",
    "unknown_header",
    "incomplete",
    "injected_head",
    "backlog",
)
# Drops that only an injection produces right after the cut event: they condemn the
# event held before them.
_CONDEMNS = frozenset({"malformed", "fragment", "foreign_response", "foreign_system"})

# Headers any event may carry: manager.c writes Event, Privilege, Timestamp
# (timestampevents), SystemName; SequenceNumber/File/Line/Func with manager debug on.
_GENERIC = frozenset(
    h.lower()
    for h in ("Event", "Privilege", "Timestamp", "SystemName", "ActionID", "SequenceNumber",
              "File", "Line", "Func")
)  # fmt: skip
# Per channel snapshot, besides CHANNEL_SNAPSHOT: channelvars and a tenant id, when set.
_SNAPSHOT_EXTRA = ("ChanVariable", "TenantID")
_IDENTITY = ("Channel", "Uniqueid", "Linkedid")
_REPEATABLE = re.compile(r"(?:[a-z]*)chanvariable")
# Events whose headers are the dialplan's choice (UserEvent(name,key: value...)).
_OPEN = frozenset({"UserEvent"})
BACKLOG_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Drop:
    """A message the screen refused: why, and what (for a log line, not forensics)."""

    reason: str
    event: str
    excerpt: str


@dataclass(frozen=True, slots=True)
class _Shape:
    allowed: frozenset[str]  # lower-case header names
    blocks: tuple[tuple[frozenset[str], frozenset[str]], ...]  # (block headers, required)


def _shape(prefixes: Iterable[str], bridges: Iterable[str], params: Iterable[str]) -> _Shape:
    allowed = set(_GENERIC) | {p.lower() for p in params}
    blocks = []
    for prefix in prefixes:
        names = {(prefix + h).lower() for h in (*CHANNEL_SNAPSHOT, *_SNAPSHOT_EXTRA)}
        allowed |= names
        required = {(prefix + h).lower() for h in _IDENTITY}
        blocks.append((frozenset(names), frozenset(required)))
    for prefix in bridges:
        names = {(prefix + h).lower() for h in BRIDGE_SNAPSHOT}
        allowed |= names
        blocks.append((frozenset(names), frozenset({(prefix + "BridgeUniqueid").lower()})))
    return _Shape(frozenset(allowed), tuple(blocks))


# Headers Asterisk 22 sends that its XML documentation (event_headers.py) leaves out.
_UNDOCUMENTED: dict[str, tuple[str, ...]] = {
    "AttendedTransfer": ("IsExternal",),  # documented for BlindTransfer only
}
_SHAPES = {
    name: _shape(s, b, (*p, *_UNDOCUMENTED.get(name, ())))
    for name, (s, b, p) in EVENTS.items()
    if name not in _OPEN
}


class AmiScreen:
    """Judges parsed AMI messages for one connection (see the module docstring).

    ``feed(items, at_boundary=...)`` returns the messages to act on, in stream order;
    ``drops`` collects what was refused (the caller drains it). Until
    :meth:`set_system_name` is called, events are kept (bounded) and responses pass, so
    the client can ask Asterisk for its system name first.
    """

    def __init__(self, action_prefix: str) -> None:
        if not action_prefix:
            raise ValueError("action_prefix must not be empty")
        self._ours = action_prefix.lower()
        self._system: str | None = None
        self._learning = True
        self._held: Message | None = None
        # events read before the system name was known, per read (its boundary kept)
        self._backlog: list[tuple[list[Message], bool]] = []
        self._backlog_size = 0
        self.drops: list[Drop] = []

    @property
    def system_name(self) -> str | None:
        return self._system

    @property
    def holding(self) -> bool:
        """An event is held back, waiting for the next message or a boundary."""
        return self._held is not None

    def set_system_name(self, name: str | None, *, at_boundary: bool) -> list[Message]:
        """Asterisk's ``systemname`` ("" when it has none: then an event naming one is
        foreign; None when Asterisk would not say: not checked). Returns the events kept
        meanwhile that pass."""
        self._learning = False
        self._system = name
        backlog, self._backlog, self._backlog_size = self._backlog, [], 0
        out: list[Message] = []
        for events, boundary in backlog:
            out += self.feed(events, at_boundary=boundary)
        return out + self.feed((), at_boundary=at_boundary)

    def feed(
        self, items: Iterable[Greeting | Message | ParseError], *, at_boundary: bool
    ) -> list[Message]:
        out: list[Message] = []
        kept: list[Message] = []
        ours, system, learning = self._ours, self._system, self._learning
        for item in items:
            if type(item) is not Message:
                if isinstance(item, ParseError):
                    excerpt = item.excerpt.decode("utf-8", "replace")
                    self._refuse_fragment("malformed", "", excerpt, out)
                continue  # a Greeting is the client's business
            # hot path: the message's lower-case index, read directly (same package)
            index = item._index
            action_id = index.get("actionid")
            if action_id is not None and action_id.lower().startswith(ours):
                self._release(out)
                out.append(item)
                continue
            event = index.get("event")
            if event is None:
                reason = "fragment" if "response" not in index else "foreign_response"
                self._refuse_fragment(reason, "", _excerpt(item), out)
                continue
            if learning:
                if (
                    event == "FullyBooted"
                    and "systemname" not in index
                    and not self._backlog
                    and not kept
                ):
                    continue  # Asterisk's login notice (module docstring)
                if self._backlog_size < BACKLOG_MAX:
                    kept.append(item)
                    self._backlog_size += 1
                else:
                    self.drops.append(Drop("backlog", event, _excerpt(item)))
                continue
            if system is not None and index.get("systemname", "") != system:
                self._refuse_fragment("foreign_system", event, _excerpt(item), out)
                continue
            refused = _check(item, event)
            if self._held is not None:
                out.append(self._held)
            if refused is None:
                self._held = item
            else:
                self._held = None
                self.drops.append(Drop(refused, event, _excerpt(item)))
        if kept:
            self._backlog.append((kept, at_boundary))
        if at_boundary:
            self._release(out)
        return out

    def flush(self) -> list[Message]:
        """Release the event held back (the client's fallback when no more bytes came)."""
        out: list[Message] = []
        self._release(out)
        return out

    # --- internals ------------------------------------------------------------------------
    def _is_ours(self, msg: Message) -> bool:
        action_id = msg.action_id
        return action_id is not None and action_id.lower().startswith(self._ours)

    def _release(self, out: list[Message]) -> None:
        if self._held is not None:
            out.append(self._held)
            self._held = None

    def _refuse_fragment(self, reason: str, event: str, excerpt: str, out: list[Message]) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.drops.append(Drop("injected_head", held.event or "", _excerpt(held)))
        self.drops.append(Drop(reason, event, excerpt))


def _check(msg: Message, event: str) -> str | None:
    keys = msg._index.keys()
    if len(keys) != msg.header_count and _repeats(msg):
        return "repeated_header"
    shape = _SHAPES.get(event)
    if shape is None:
        return None
    # dict views compare against sets without building a temporary set
    if not keys <= shape.allowed:
        return "unknown_header"
    for names, required in shape.blocks:
        if not names.isdisjoint(keys) and not keys >= required:
            return "incomplete"
    return None


def _repeats(msg: Message) -> bool:
    seen: set[str] = set()
    for key, _ in msg.headers:
        k = key.lower()
        if k in seen and _REPEATABLE.fullmatch(k) is None:
            return True
        seen.add(k)
    return False


def _excerpt(msg: Message) -> str:
    text = "|".join(f"{k}: {v}" for k, v in msg.headers[:8])
    return text[:160]
