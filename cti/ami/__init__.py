"""Asterisk Manager Interface: I/O-free parser, safe action encoding, supervised client.

- :mod:`cti.ami.protocol` -- bytes in, :class:`Greeting` / :class:`Message` /
  :class:`ParseError` out (no sockets).
- :mod:`cti.ami.actions` -- :func:`encode_action` (refuses CR/LF/NUL) and
  :class:`PendingActions` (responses and list items correlated to futures by ActionID).
- :mod:`cti.ami.client` -- :class:`AmiClient`: connect, login, read, ping, reconnect with
  backoff, connected/disconnected handlers for state resync.

Why not panoramisk: docs/decisions/0001-ami-client.md.
"""

from cti.ami.actions import (
    ActionHeaders,
    AmiActionError,
    PendingActions,
    UnsafeActionValue,
    encode_action,
)
from cti.ami.client import AmiClient, LoginFailed, NotConnected
from cti.ami.protocol import AmiParser, Greeting, Message, ParseError

__all__ = [
    "ActionHeaders",
    "AmiActionError",
    "AmiClient",
    "AmiParser",
    "Greeting",
    "LoginFailed",
    "Message",
    "NotConnected",
    "ParseError",
    "PendingActions",
    "UnsafeActionValue",
    "encode_action",
]
