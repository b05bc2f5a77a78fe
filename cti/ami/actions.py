"""AMI actions: safe encoding, and I/O-free correlation of responses to futures.

As in panoramisk's ``actions.py`` an action is a future keyed by its ActionID, but:

- values are checked before any byte is produced: CR, LF or NUL in an action name, header
  key or value raises :class:`UnsafeActionValue` (a CR/LF in a value would otherwise inject
  headers or whole actions -- design.md section 5);
- a non-list action is resolved by its Response, whatever its Message text (QueueAdd too);
- a list action (CoreShowChannels, QueueStatus, Status...) is resolved by the event with
  ``EventList: Complete`` and gives ``(response, items)``;
- ``Response: Error`` fails the future with :class:`AmiActionError`;
- :meth:`PendingActions.fail_all` fails every pending future at once (disconnect), so an
  action never hangs.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cti.ami.protocol import Message

__all__ = [
    "ActionHeaders",
    "AmiActionError",
    "PendingActions",
    "UnsafeActionValue",
    "encode_action",
]

ActionHeaders = Mapping[str, str | int | Sequence[str]]

_KEY = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE = re.compile(r"[\r\n\x00]")
_RESERVED = frozenset({"action", "actionid"})


class UnsafeActionValue(ValueError):
    """An action name, header key or value that would corrupt the AMI stream.

    The message names the offending key, never the value (it may be a secret).
    """


class AmiActionError(Exception):
    """Asterisk answered ``Response: Error``; ``response`` is the whole message."""

    def __init__(self, response: Message) -> None:
        self.response = response
        super().__init__(response.get("Message") or "AMI action failed")


def _check_value(key: str, value: str) -> str:
    if _UNSAFE.search(value) is not None:
        raise UnsafeActionValue(f"value of {key!r} contains CR, LF or NUL")
    return value


def _scalar(key: str, value: object) -> str:
    if isinstance(value, str):
        return _check_value(key, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"value of {key!r} must be str, int or a sequence of str")


def encode_action(action: str, headers: ActionHeaders | None, action_id: str) -> bytes:
    """Encode one action: ``Action: X\\r\\nActionID: id\\r\\nKey: value\\r\\n...\\r\\n\\r\\n``.

    A sequence value repeats its key (``Variable``). Keys must match ``[A-Za-z0-9_-]+``;
    ``Action`` / ``ActionID`` may not be passed as headers (the correlation is ours). Every
    value is checked before anything is encoded, so a refused action produces no bytes.
    """
    if not isinstance(action, str) or _KEY.fullmatch(action) is None:
        raise UnsafeActionValue("action name must match [A-Za-z0-9_-]+")
    lines = [f"Action: {action}", f"ActionID: {_check_value('ActionID', action_id)}"]
    if headers:
        for key, value in headers.items():
            if not isinstance(key, str) or _KEY.fullmatch(key) is None:
                raise UnsafeActionValue(f"header key {key!r} must match [A-Za-z0-9_-]+")
            if key.lower() in _RESERVED:
                raise UnsafeActionValue(f"header {key!r} is set by the client")
            if isinstance(value, str | int):
                lines.append(f"{key}: {_scalar(key, value)}")
            elif isinstance(value, Sequence):
                lines.extend(f"{key}: {_scalar(key, item)}" for item in value)
            else:
                raise TypeError(f"value of {key!r} must be str, int or a sequence of str")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


class _Pending:
    __slots__ = ("future", "is_list", "items", "response")

    def __init__(self, future: asyncio.Future[Any], is_list: bool) -> None:
        self.future = future
        self.is_list = is_list
        self.response: Message | None = None
        self.items: list[Message] = []


class PendingActions:
    """Actions sent and not yet answered, keyed by ActionID. No I/O, no loop access."""

    def __init__(self, prefix: str = "cti") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def prefix(self) -> str:
        """What every ActionID of this instance starts with (before ``-<n>``)."""
        return self._prefix

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._pending

    def new_id(self) -> str:
        """A fresh ActionID (``cti-1``, ``cti-2``...), never reused by this instance."""
        return f"{self._prefix}-{next(self._counter)}"

    def add(self, action_id: str, *, is_list: bool, loop_future: asyncio.Future[Any]) -> None:
        """Track ``loop_future``; it gets a :class:`Message` (non-list action) or
        ``(response, items)`` (list action), or :class:`AmiActionError`."""
        if action_id in self._pending:
            raise ValueError(f"ActionID {action_id!r} is already pending")
        self._pending[action_id] = _Pending(loop_future, is_list)

    def discard(self, action_id: str) -> None:
        """Forget an action (its caller gave up: timeout, cancellation)."""
        self._pending.pop(action_id, None)

    def feed(self, msg: Message) -> bool:
        """Offer a received message; True if it belonged to a pending action."""
        action_id = msg.action_id
        if action_id is None:
            return False
        entry = self._pending.get(action_id)
        if entry is None:
            return False
        if entry.future.done():  # cancelled by a timeout that raced this message
            del self._pending[action_id]
            return True
        if msg.event is None:
            response = msg.response
            if response is None:
                return False
            if response.lower() == "error":
                del self._pending[action_id]
                entry.future.set_exception(AmiActionError(msg))
            elif not entry.is_list:
                del self._pending[action_id]
                entry.future.set_result(msg)
            elif _starts_list(msg):
                entry.response = msg
            else:
                # A list action answered without a list (nothing will follow).
                del self._pending[action_id]
                entry.future.set_result((msg, []))
            return True
        if not entry.is_list:
            # e.g. OriginateResponse (it has a "Response:" header too) carries the
            # ActionID of its Originate: an event for the handlers, not the answer.
            return False
        if (msg.get("EventList") or "").lower() == "complete":
            del self._pending[action_id]
            entry.future.set_result((entry.response or msg, entry.items))
        else:
            entry.items.append(msg)
        return True

    def fail_all(self, exc: BaseException) -> None:
        """Fail every pending future with ``exc`` (the connection is gone)."""
        pending = self._pending
        self._pending = {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(exc)


def _starts_list(response: Message) -> bool:
    if (response.get("EventList") or "").lower() == "start":
        return True
    return "will follow" in (response.get("Message") or "").lower()
