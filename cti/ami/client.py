"""Supervised asyncio AMI client: connect, log in, read, ping, reconnect.

Task structure (as in wazo-websocketd's session): one supervisor task runs connection
sessions one after the other. A session opens the socket, reads the banner, logs in and
then waits (``asyncio.wait(FIRST_COMPLETED)``) on its reader task and its pinger task;
the first to finish ends the session, the others are cancelled, and the exception that
ended it travels up to :meth:`AmiClient._supervise`, the one place that maps exceptions
to outcomes (log line, disconnected handlers, backoff). Connected handlers (state resync)
run in their own task beside the reader, so the responses to the actions they send are
delivered while they wait, and so are events.

Every message read goes through the screen (:mod:`cti.ami.screen`) before anything acts on
it: after login the client asks Asterisk for its system name (``CoreSettings``), and
messages that are not Asterisk's own (a caller's CR/LF in a caller ID cutting an event
short) are dropped, counted through ``on_drop`` and logged at most once per
``drop_log_interval`` with a summary of the rest.

Guarantees: an action never hangs (NotConnected at once when there is no session, a
timeout on every action, every pending action fails with NotConnected when the session
ends); the secret is never logged (actions are logged by name and ActionID only);
``close()`` cancels the supervisor wherever it is (connecting, logged in, in backoff), so
no retry outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from cti.ami.actions import ActionHeaders, AmiActionError, PendingActions, encode_action
from cti.ami.protocol import AmiParser, Greeting, Message, ParseError
from cti.ami.screen import AmiScreen, Drop

__all__ = ["AmiClient", "EventHandler", "LoginFailed", "NotConnected"]

log = logging.getLogger(__name__)

T = TypeVar("T")

EventHandler = Callable[[Message], None]
ConnectedHandler = Callable[[bool], Awaitable[None]]
DisconnectedHandler = Callable[[str], None]
DropHandler = Callable[[str], None]

_READ_SIZE = 1 << 16
# The screen holds an event back until the next message or a message boundary. After a
# full read (a backlog: Asterisk may be in the middle of one write) a boundary proves
# nothing; the held event is released when more bytes come, or after this long.
_HELD_FLUSH_S = 0.05


class NotConnected(ConnectionError):
    """No logged-in AMI session (or it ended while the action was pending)."""


class LoginFailed(Exception):
    """Asterisk refused the Login (bad username/secret, ACL)."""


class _SessionEnded(Exception):
    """The logged-in session ended; the message is the reason."""


class AmiClient:
    """One AMI connection to Asterisk, kept up until :meth:`close`."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: str = "call,agent,cdr,user",
        ping_interval: float = 10.0,
        action_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_drop: DropHandler | None = None,
        drop_log_interval: float = 60.0,
    ) -> None:
        if min(ping_interval, action_timeout, connect_timeout, backoff_initial) <= 0:
            raise ValueError("intervals, timeouts and backoff must be positive")
        if backoff_max < backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        self._host = host
        self._port = port
        self._username = username
        self._secret = secret
        self._events = events
        self._ping_interval = ping_interval
        self._action_timeout = action_timeout
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max

        self._event_handlers: list[EventHandler] = []
        # per handler, the event names it reads (None: every event)
        self._wants: dict[EventHandler, frozenset[str] | None] = {}
        self._connected_handlers: list[ConnectedHandler] = []
        self._disconnected_handlers: list[DisconnectedHandler] = []

        # a random ActionID prefix: a caller who injects a "Response:" cannot guess it
        self._pending = PendingActions(prefix=f"cti-{secrets.token_hex(6)}")
        self._screen = AmiScreen(self._pending.prefix + "-")
        self._on_drop = on_drop
        self._drop_log = _DropLog(drop_log_interval)
        #: messages the screen dropped since start, by reason
        self.dropped: Counter[str] = Counter()
        self._writer: asyncio.StreamWriter | None = None
        self._connected = False
        self._connected_event = asyncio.Event()
        self._ever_connected = False
        self._session_up = False
        # the event names this session's Filter lets through (None: not filtered)
        self._filtered: frozenset[str] | None = None
        self._filter_tasks: set[asyncio.Task[bool]] = set()
        self._supervisor: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<AmiClient {self._username}@{self._host}:{self._port} connected={self._connected}>"

    # --- registration ---------------------------------------------------------------------

    def add_event_handler(
        self,
        handler: EventHandler,
        *,
        first: bool = False,
        events: Collection[str] | None = None,
    ) -> None:
        """Call ``handler`` for every event (synchronously, in stream order: keep it fast).
        Responses and the items of list actions go to their action, not here. ``first``
        puts it before the handlers already registered (a latency probe, say).

        ``events``: the only event names the handler reads. When every handler names its
        events, each session asks Asterisk (``Filter``, per session) to send only those:
        the rest of the ``Events:`` classes (DeviceStateChange, DialState, LocalBridge,
        NewConnectedLine...) is never written, read nor parsed. Set at each login; a
        handler registered while logged in applies from the next login (its names are
        added to the session at once when it names some)."""
        if first:
            self._event_handlers = [handler, *self._event_handlers]
        else:
            self._event_handlers = [*self._event_handlers, handler]
        names = None if events is None else frozenset(events)
        self._wants[handler] = names
        if names and self._connected and self._filtered is not None:
            new = names - self._filtered
            if new:
                self._filtered |= new
                task = asyncio.get_running_loop().create_task(self._add_filters(new))
                self._filter_tasks.add(task)
                task.add_done_callback(self._filter_tasks.discard)

    def remove_event_handler(self, handler: EventHandler) -> None:
        """Stop calling ``handler`` (no error if it was not registered). Safe from inside
        a handler: the list is replaced, never changed while being iterated."""
        self._event_handlers = [h for h in self._event_handlers if h != handler]
        self._wants.pop(handler, None)

    @property
    def wanted_events(self) -> frozenset[str] | None:
        """The event names the handlers read (None: some handler reads every event)."""
        if not self._wants:
            return None
        wanted: set[str] = set()
        for names in self._wants.values():
            if names is None:
                return None
            wanted |= names
        return frozenset(wanted)

    def add_connected_handler(self, handler: ConnectedHandler) -> None:
        """Await ``handler(is_reconnect)`` after each successful login, in registration
        order, beside the reader (it may send actions; events keep flowing meanwhile)."""
        self._connected_handlers.append(handler)

    def add_disconnected_handler(self, handler: DisconnectedHandler) -> None:
        """Call ``handler(reason)`` when a logged-in session ends (including close())."""
        self._disconnected_handlers.append(handler)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Logged in now (actions can be sent)."""
        return self._connected

    @property
    def system_name(self) -> str | None:
        """Asterisk's ``systemname`` as it said after the last login (None: not known)."""
        return self._screen.system_name

    async def start(self) -> None:
        """Start connecting (and keep reconnecting) in the background; returns at once."""
        if self._supervisor is not None and not self._supervisor.done():
            return
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"ami-supervisor-{self._host}:{self._port}"
        )

    async def wait_connected(self, timeout: float) -> None:
        """Return once logged in (connected handlers may still be running).
        Raises TimeoutError."""
        async with asyncio.timeout(timeout):
            await self._connected_event.wait()

    async def close(self) -> None:
        """Stop for good: cancel the supervisor (and with it any session, resync, pinger
        or backoff sleep); pending actions fail with NotConnected."""
        task, self._supervisor = self._supervisor, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pending.fail_all(NotConnected("AMI client closed"))

    # --- actions --------------------------------------------------------------------------

    async def send_action(
        self,
        action: str,
        headers: ActionHeaders | None = None,
        *,
        timeout: float | None = None,
    ) -> Message:
        """Send one action; return its Response. Raises NotConnected, TimeoutError,
        AmiActionError (Response: Error), UnsafeActionValue."""
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        return await self._request(action, headers, fut, is_list=False, limit=timeout)

    async def send_list_action(
        self,
        action: str,
        headers: ActionHeaders | None = None,
        *,
        timeout: float | None = None,
    ) -> tuple[Message, list[Message]]:
        """Send a list action (CoreShowChannels, QueueStatus...); return (response, items),
        items being the events between ``EventList: start`` and ``EventList: Complete``."""
        fut: asyncio.Future[tuple[Message, list[Message]]]
        fut = asyncio.get_running_loop().create_future()
        return await self._request(action, headers, fut, is_list=True, limit=timeout)

    async def _request(
        self,
        action: str,
        headers: ActionHeaders | None,
        fut: asyncio.Future[T],
        *,
        is_list: bool,
        limit: float | None,
        login: bool = False,
    ) -> T:
        writer = self._writer
        if writer is None or not (self._connected or login):
            raise NotConnected(f"AMI not connected ({action} not sent)")
        action_id = self._pending.new_id()
        data = encode_action(action, headers, action_id)  # raises before anything is sent
        if limit is None:
            limit = self._action_timeout
        self._pending.add(action_id, is_list=is_list, loop_future=fut)
        log.debug("AMI -> %s (ActionID %s)", action, action_id)
        try:
            async with asyncio.timeout(limit):
                writer.write(data)
                await writer.drain()
                return await fut
        except TimeoutError:
            raise TimeoutError(f"AMI {action} got no response within {limit:g} s") from None
        except ConnectionError as exc:
            # NotConnected from fail_all (shared instance) or a socket error from drain:
            # raise a fresh one per caller.
            raise NotConnected(f"AMI connection lost ({action}): {exc}") from None
        finally:
            self._pending.discard(action_id)

    # --- supervision ----------------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        base = min(self._backoff_max, self._backoff_initial * 2.0 ** max(0, failures - 1))
        return base * random.uniform(0.5, 1.0)

    async def _supervise(self) -> None:
        failures = 0
        try:
            while True:
                self._session_up = False
                try:
                    await self._session()
                    reason = "session ended"  # _session only returns by raising
                except _SessionEnded as exc:
                    reason = str(exc)
                    log.warning("AMI %s:%s: %s", self._host, self._port, reason)
                except LoginFailed as exc:
                    reason = f"login refused: {exc}"
                    log.error(
                        "AMI %s:%s: login as %r refused: %s",
                        self._host,
                        self._port,
                        self._username,
                        exc,
                    )
                except TimeoutError as exc:
                    reason = f"timed out ({exc or 'connect / banner'})"
                    log.warning("AMI %s:%s: %s", self._host, self._port, reason)
                except (OSError, NotConnected) as exc:
                    reason = f"connection failed: {exc}"
                    log.warning("AMI %s:%s: %s", self._host, self._port, reason)
                except Exception as exc:
                    reason = f"unexpected error: {exc!r}"
                    log.exception("AMI %s:%s: unexpected error", self._host, self._port)
                if self._session_up:
                    self._session_up = False
                    failures = 0
                    self._notify_disconnected(reason)
                failures += 1
                delay = self._backoff(failures)
                log.info("AMI %s:%s: reconnecting in %.2f s", self._host, self._port, delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if self._session_up:
                self._session_up = False
                self._notify_disconnected("closed")
            raise

    async def _session(self) -> None:
        """One connection's life. Never returns normally: raises why it ended."""
        parser = AmiParser()
        self._screen = AmiScreen(self._pending.prefix + "-")
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(self._host, self._port)
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.timeout(self._connect_timeout):
                greeting, leftovers = await self._read_greeting(reader, parser)
            log.info("AMI %s:%s: connected (AMI %s)", self._host, self._port, greeting.version)
            self._writer = writer
            tasks.append(
                asyncio.create_task(self._read_loop(reader, parser, leftovers), name="ami-reader")
            )
            await self._login()
            await self._learn_system_name(parser)
            await self._set_filter()

            self._connected = True
            self._session_up = True
            self._connected_event.set()
            is_reconnect, self._ever_connected = self._ever_connected, True
            log.info("AMI %s:%s: logged in as %r", self._host, self._port, self._username)
            tasks.append(asyncio.create_task(self._ping_loop(), name="ami-pinger"))
            watched = list(tasks)  # the reader and the pinger end the session...
            tasks.append(  # ...the resync does not (it is cancelled with the session)
                asyncio.create_task(
                    self._run_connected_handlers(is_reconnect), name="ami-connected-handlers"
                )
            )
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise _SessionEnded("session ended")  # reader and pinger never return
        finally:
            self._connected = False
            self._connected_event.clear()
            self._writer = None
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            self._pending.fail_all(NotConnected("AMI connection lost"))
            writer.transport.abort()
            writer.close()

    async def _read_greeting(
        self, reader: asyncio.StreamReader, parser: AmiParser
    ) -> tuple[Greeting, list[Greeting | Message | ParseError]]:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                raise _SessionEnded("connection closed before the AMI banner")
            parser.receive_data(data)
            items = parser.events_received()
            for i, item in enumerate(items):
                if isinstance(item, Greeting):
                    return item, items[i + 1 :]
                self._log_unexpected(item)

    async def _login(self) -> None:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        headers = {"Username": self._username, "Secret": self._secret, "Events": self._events}
        try:
            await self._request("Login", headers, fut, is_list=False, limit=None, login=True)
        except AmiActionError as exc:
            raise LoginFailed(str(exc)) from None

    async def _set_filter(self) -> None:
        """Ask Asterisk to send this session only the events the handlers read."""
        self._filtered = None
        wanted = self.wanted_events
        if wanted is None:
            return
        if await self._add_filters(wanted):
            self._filtered = wanted

    async def _add_filters(self, names: Collection[str]) -> bool:
        """One include filter per event name (``MatchCriteria: name(...)``, Asterisk 21.3
        / 20.8 and later: an exact name match, no regular expression). False if Asterisk
        refused one: the session then gets every event of its classes (handlers pick
        theirs), as before."""

        async def add(name: str) -> None:
            fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            headers = {"Operation": "Add", "MatchCriteria": f"name({name})"}
            await self._request("Filter", headers, fut, is_list=False, limit=None, login=True)

        try:
            await asyncio.gather(*(add(n) for n in sorted(names)))
        except AmiActionError as exc:
            log.warning(
                "AMI %s:%s: event filter refused (%s): reading every event of the "
                "subscribed classes (give the AMI user the 'system' write class)",
                self._host, self._port, exc,
            )  # fmt: skip
            return False
        return True

    async def _learn_system_name(self, parser: AmiParser) -> None:
        """Ask Asterisk for its ``systemname``: every genuine event carries it (the
        screen holds events until it is known)."""
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        name: str | None
        try:
            answer = await self._request(
                "CoreSettings", None, fut, is_list=False, limit=None, login=True
            )
            name = answer.get("SystemName", "")
        except AmiActionError as exc:
            log.error(
                "AMI %s:%s: CoreSettings refused (%s): events cannot be told from forged "
                "ones by SystemName; give the AMI user the 'system' read class",
                self._host, self._port, exc,
            )  # fmt: skip
            name = None
        if name == "":
            log.warning(
                "AMI %s:%s: Asterisk has no systemname: forged events are screened by "
                "shape only and Uniqueids are guessable; set [options] systemname to a "
                "secret in asterisk.conf (cti asterisk up does)",
                self._host, self._port,
            )  # fmt: skip
        self._deliver(self._screen.set_system_name(name, at_boundary=parser.at_boundary))

    async def _read_loop(
        self,
        reader: asyncio.StreamReader,
        parser: AmiParser,
        leftovers: list[Greeting | Message | ParseError],
    ) -> None:
        loop = asyncio.get_running_loop()
        flush: asyncio.TimerHandle | None = None
        backlog = False
        try:
            self._dispatch(leftovers, parser.at_boundary)
            while True:
                data = await reader.read(_READ_SIZE)
                if flush is not None:
                    flush.cancel()
                    flush = None
                if not data:
                    parser.receive_eof()
                    self._dispatch(parser.events_received(), True)
                    raise _SessionEnded("connection closed by Asterisk")
                full = len(data) == _READ_SIZE
                parser.receive_data(data)
                self._dispatch(
                    parser.events_received(), parser.at_boundary and not (full or backlog)
                )
                backlog = full
                if self._screen.holding:
                    flush = loop.call_later(_HELD_FLUSH_S, self._flush_held)
        except OSError as exc:
            raise _SessionEnded(f"read failed: {exc}") from exc
        finally:
            if flush is not None:
                flush.cancel()
            # Pending actions (the Login, a resync) fail now, not at their timeout.
            self._pending.fail_all(NotConnected("AMI connection lost"))

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                await self.send_action("Ping", timeout=self._action_timeout)
            except TimeoutError:
                raise _SessionEnded(f"no Ping response within {self._action_timeout:g} s") from None
            except NotConnected as exc:
                raise _SessionEnded(str(exc)) from None

    async def _run_connected_handlers(self, is_reconnect: bool) -> None:
        for handler in tuple(self._connected_handlers):
            try:
                await handler(is_reconnect)
            except Exception:
                log.exception("AMI connected handler %r failed", handler)

    def _notify_disconnected(self, reason: str) -> None:
        for handler in tuple(self._disconnected_handlers):
            try:
                handler(reason)
            except Exception:
                log.exception("AMI disconnected handler %r failed", handler)

    # --- dispatch (hot path) --------------------------------------------------------------

    def _dispatch(self, items: list[Greeting | Message | ParseError], at_boundary: bool) -> None:
        for item in items:
            if isinstance(item, Greeting):
                self._log_unexpected(item)
        self._deliver(self._screen.feed(items, at_boundary=at_boundary))

    def _flush_held(self) -> None:
        self._deliver(self._screen.flush())

    def _deliver(self, messages: list[Message]) -> None:
        screen = self._screen
        if screen.drops:
            drops, screen.drops = screen.drops, []
            self._dropped(drops)
        feed = self._pending.feed
        handlers = self._event_handlers
        for item in messages:
            if feed(item):
                continue
            if item.event is None:
                log.debug("AMI: unsolicited response (ActionID %s)", item.action_id)
                continue
            for handler in handlers:
                try:
                    handler(item)
                except Exception:
                    log.exception("AMI event handler %r failed on %s", handler, item.event)

    def _dropped(self, drops: list[Drop]) -> None:
        for drop in drops:
            self.dropped[drop.reason] += 1
            if self._on_drop is not None:
                try:
                    self._on_drop(drop.reason)
                except Exception:
                    log.exception("AMI drop handler failed")
        self._drop_log.add(drops)

    @staticmethod
    def _log_unexpected(item: Greeting | Message | ParseError) -> None:
        if isinstance(item, ParseError):
            log.warning("AMI parse error: %s: %r", item.reason, item.excerpt[:64])
        elif isinstance(item, Greeting):
            log.warning("AMI: unexpected banner mid-stream (AMI %s)", item.version)
        else:
            log.debug("AMI: message before the banner ignored: %r", item.headers[:3])


class _DropLog:
    """One log line for the first dropped message, then at most one summary per
    ``interval`` seconds: a hostile caller cannot flood the log."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._since: Counter[str] = Counter()

    def add(self, drops: list[Drop]) -> None:
        now = time.monotonic()
        if now < self._next:
            self._since.update(d.reason for d in drops)
            return
        first, rest = drops[0], drops[1:]
        self._since.update(d.reason for d in rest)
        earlier = ""
        if self._since:
            earlier = "; also dropped since the last report: " + ", ".join(
                f"{n} {reason}" for reason, n in sorted(self._since.items())
            )
        log.warning(
            "AMI message dropped (%s, event %r): %r%s",
            first.reason, first.event[:40], first.excerpt, earlier,
        )  # fmt: skip
        self._since.clear()
        self._next = now + self.interval
