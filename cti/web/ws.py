"""The websocket hub: pushes events to desktops and wallboards, never waits on one.

Each connection authenticates (``Authorization: Bearer`` on the upgrade, the browser's
session cookie, or a first frame ``{"type": "auth", "token": …}`` within
``auth_timeout_s``), then has a bounded send queue. :meth:`WsHub.publish` only enqueues:
a desktop whose queue is full has stopped reading and is dropped (close code 4008) rather
than delaying anyone. Frames are bounded (``max_frame``), compression is off (no
compression bombs), the Origin must be allowed, and heartbeats detect dead peers.

The hub knows which credential each connection rides on and closes its connections with
4003 (``CLOSE_CREDENTIAL_ENDED``: sign in again, do not reconnect) when it ends:

- revoked, disabled or deleted in this process: at once (the accounts call
  :meth:`WsHub.end_credentials`);
- the same by anyone else (the CLI, another node on the same database, SQL): within
  ``sweep_s``. Every ``sweep_s`` :meth:`WsHub.sweep` reads the credential change marker
  (one row, moved by database triggers with every such write:
  :mod:`cti.store.credential_changes`); only when it moved are all connections'
  credentials checked again. Otherwise only the connections that joined since the last
  sweep are (their credential was verified before a change the sweep may have missed);
- expired: at its ``expires_at``, by a timer per connection, no query;
- a session idling out cannot happen while its websocket is open: each session is
  checked again (its idle timer refreshed) every ``session_recheck_s`` of the accounts
  (a quarter of the idle timeout), in batches.

A connection also keeps the permissions it had at connect (its :class:`Principal`: role,
agent, queues and agents of a supervisor's teams). When what its credential may see
changes (a role, an agent binding, a team's members or queues, a user's or token's queue
scope), by anyone, the triggers move the same marker and the full check compares each
connection's principal with the one verifying would build now: one whose
:attr:`Principal.access` differs is closed with 4005 (``CLOSE_ACCESS_CHANGED``: the
credential holds, reconnect and get what it may see now), within ``sweep_s``.

So a sweep with nothing changed costs one query of one row, whatever the number of
connections (before: a query over every connection's credential every ``sweep_s``).

Audience rules live here, once: an event addressed to an agent reaches that agent's
connections only; an event addressed to a role reaches that role and those above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from cti.principal import ROLE_RANK, Principal
from cti.store.db import Database
from cti.store.models import utcnow
from cti.web.body import parse_json
from cti.web.credentials import SESSION_COOKIE, Authenticator, bearer_of
from cti.web.errors import ApiError
from cti.web.origins import OriginPolicy

log = logging.getLogger(__name__)

# close codes (4000-4999 are ours). The pages (cti/web/static/common/cti.js) reconnect
# on every code but 4001 and 4003, which mean "sign in again".
CLOSE_UNAUTHORIZED = 4001
CLOSE_CREDENTIAL_ENDED = 4003
CLOSE_ACCESS_CHANGED = 4005  # the credential holds but what it may see changed: reconnect
CLOSE_TOO_SLOW = 4008
CLOSE_BAD_FRAME = 4400

Snapshot = Callable[[Principal], Awaitable[list[dict[str, Any]]]]
Command = Callable[[Principal, dict[str, Any]], Awaitable[dict[str, Any] | None]]


#: orjson's output for what the hub sends equals ``json.dumps(message, ensure_ascii=False,
#: default=str)``'s (what it sent before): datetimes and dataclasses go to ``default`` as
#: they did, keys that are not strings become strings
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def encode(message: Any) -> str:
    """A message's JSON text, every message the hub sends encoded here. orjson: a
    wallboard frame of 500 agents (100 kB) took a millisecond of the event loop with the
    json module, a tenth of that with orjson (decision 0027, session 14). What orjson
    cannot encode (an integer beyond 64 bits, text that is not UTF-8 such as a lone
    surrogate) goes to the json module, escaped to ASCII so that it can always be sent.
    Not a number (NaN, infinity) becomes null: the json module wrote ``NaN``, which
    JSON.parse refuses."""
    try:
        return orjson.dumps(message, default=str, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(message, default=str)


class BadFrame(ValueError):
    """A client frame we cannot accept; the message goes back to the client."""


@dataclass(frozen=True, slots=True)
class Audience:
    agents: frozenset[str] = frozenset()
    min_role: str | None = None  # "supervisor": supervisors and admins
    queue: str | None = None  # about this queue: only those whose scope includes it

    def includes(self, principal: Principal) -> bool:
        if principal.name in self.agents:
            return True
        if self.min_role is None:
            return False
        if ROLE_RANK.get(principal.role, -1) < ROLE_RANK[self.min_role]:
            return False
        return self.queue is None or principal.sees_queue(self.queue)


def to_agent(name: str) -> Audience:
    return Audience(agents=frozenset({name}))


def to_role(role: str, *, queue: str | None = None) -> Audience:
    """Everyone with ``role`` or above; with ``queue``, only those who see that queue (a
    supervisor scoped to teams gets only their queues' events)."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")
    return Audience(min_role=role, queue=queue)


@dataclass(eq=False)
class Connection:
    principal: Principal
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str]
    transport: asyncio.BaseTransport | None
    dropped: bool = False
    ended: bool = False  # its credential was revoked or expired, or its access changed
    access_changed: bool = False  # ended because what its credential may see changed
    sent: int = 0
    idle: bool = False  # its sender waits for the next message (nothing queued or in flight)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    checked: float = 0.0  # loop time its credential was last verified (at connect, then sweeps)
    expires_at: datetime | None = None  # its credential's expiry, as last verified
    expiry: asyncio.TimerHandle | None = None  # ends it at expires_at

    def drop(self) -> None:
        """Stop serving this connection now (called from publish: must not await)."""
        if not self.dropped:
            self.dropped = True
            for task in self.tasks:
                task.cancel()

    def end(self, *, access_changed: bool = False) -> None:
        """Its credential ended (or, ``access_changed``, holds but may see something else
        now): stop serving it now (must not await)."""
        if not self.ended and not self.dropped:
            self.ended = True
            self.access_changed = access_changed
            for task in self.tasks:
                task.cancel()


class WsHub:
    def __init__(
        self,
        db: Database,
        *,
        queue_size: int = 256,
        max_frame: int = 64 * 1024,
        heartbeat_s: float = 20.0,
        auth_timeout_s: float = 5.0,
        allowed_origins: Iterable[str] = (),
        sweep_s: float = 2.0,
    ) -> None:
        self.db = db
        self.auth = Authenticator(db)  # create_app installs the one that knows sessions
        self.sweep_s = sweep_s
        self.queue_size = queue_size
        self.max_frame = max_frame
        self.heartbeat_s = heartbeat_s
        self.auth_timeout_s = auth_timeout_s
        self.origins = OriginPolicy.of(extra=allowed_origins)
        self.connections: set[Connection] = set()
        # by principal name and by role: a message to named agents (a pop) or to a role
        # (supervisors) visits only those connections, not every desktop
        self._by_name: dict[str, set[Connection]] = {}
        self._by_role: dict[str, set[Connection]] = {}
        self.dropped_slow = 0
        self._snapshots: list[Snapshot] = []
        self._commands: dict[str, Command] = {}
        # the sweep: the change marker as of the last check of every connection (None:
        # none yet), the connections that joined since the last sweep, and the loop time
        # at which the first session connection is due its periodic check
        self._mark: int | None = None
        self._unchecked: set[Connection] = set()
        self._sessions_due_at = math.inf

    # --- what features plug in ------------------------------------------------------------
    def add_snapshot(self, provider: Snapshot) -> None:
        """Messages a client gets right after (re)connecting: its current state."""
        self._snapshots.append(provider)

    def add_command(self, kind: str, handler: Command) -> None:
        """Handle client frames ``{"type": kind, …}``; the returned dict is the reply."""
        if kind in self._commands or kind == "auth":
            raise ValueError(f"command {kind!r} already registered")
        self._commands[kind] = handler

    def publish(self, audience: Audience, message: dict[str, Any]) -> int:
        """Queue ``message`` for every connection in ``audience``; never blocks.
        Returns how many connections it was queued for."""
        return self.publish_each(audience, lambda _: message)

    def publish_each(
        self, audience: Audience, render: Callable[[Principal], dict[str, Any] | None]
    ) -> int:
        """Like :meth:`publish`, but each connection gets ``render(its principal)`` (None:
        nothing), e.g. a wallboard frame cut to a supervisor's teams. One message object
        returned for several principals is encoded once."""
        texts: dict[int, tuple[dict[str, Any], str]] = {}  # id -> (kept alive, its JSON)
        n = 0
        for conn in self._candidates(audience):
            if conn.dropped or not audience.includes(conn.principal):
                continue
            message = render(conn.principal)
            if message is None:
                continue
            if id(message) not in texts:
                texts[id(message)] = (message, encode(message))
            text = texts[id(message)][1]
            if self._write_now(conn, text):
                n += 1
                continue
            try:
                conn.queue.put_nowait(text)
                n += 1
            except asyncio.QueueFull:
                self.dropped_slow += 1
                log.warning(
                    "websocket client too slow, dropped", extra={"who": conn.principal.name}
                )
                conn.drop()
        return n

    def has_audience(self, audience: Audience) -> bool:
        """Some open connection is in ``audience`` (a message for it would go somewhere):
        a producer may skip building it otherwise."""
        return any(
            not c.dropped and audience.includes(c.principal) for c in self._candidates(audience)
        )

    def _candidates(self, audience: Audience) -> list[Connection]:
        """The connections ``audience`` may include (it still decides, e.g. queue scope)."""
        named = [c for name in audience.agents for c in self._by_name.get(name, ())]
        if audience.min_role is None:
            return named
        floor = ROLE_RANK[audience.min_role]
        ranked = [
            c for role, conns in self._by_role.items()
            if ROLE_RANK.get(role, -1) >= floor for c in conns
        ]  # fmt: skip
        return list(dict.fromkeys([*named, *ranked])) if named else ranked

    # --- credentials ---------------------------------------------------------------------
    def end_credentials(self, kind: str, ids: set[int]) -> int:
        """Close every connection riding on one of these credentials; never blocks."""
        n = 0
        for conn in list(self.connections):
            c_kind, c_id = conn.principal.credential
            if c_kind == kind and c_id in ids:
                conn.end()
                n += 1
        if n:
            log.info("closed %d websocket(s) whose %s ended", n, kind)
        return n

    async def sweep(self) -> int:
        """Close connections whose credential no longer holds or whose access changed;
        returns how many.

        One query of one row (the change marker) when nothing changed and no connection
        joined or is due its session check; every connection's credential checked again
        when the marker moved (module docstring). With no connection, nothing at all (the
        next one to join is checked at the sweep after)."""
        if not self.connections:
            return 0
        fresh, self._unchecked = self._unchecked, set()
        try:
            mark = await self.auth.changes()
            if mark != self._mark:
                due = set(self.connections)
            else:
                due = fresh | self._sessions_due()
            n = await self._check([c for c in due if self._open(c)])
        except BaseException:
            self._unchecked |= fresh  # checked at the next sweep instead
            raise
        self._mark = mark
        return n

    def _open(self, conn: Connection) -> bool:
        return conn in self.connections and not conn.dropped and not conn.ended

    def _sessions_due(self) -> set[Connection]:
        """The session connections due their periodic check, once the first is due: with
        them, every one past half its period (so they go in batches, not one a sweep)."""
        recheck = self.auth.session_recheck_s
        now = asyncio.get_running_loop().time()
        if recheck is None or now < self._sessions_due_at:
            return set()
        due = {
            c for c in self.connections
            if c.principal.session_id is not None and now - c.checked >= recheck / 2
        }  # fmt: skip
        if not due:  # those it was due for are gone
            self._next_session_check(recheck)
        return due

    def _next_session_check(self, recheck: float) -> None:
        self._sessions_due_at = min(
            (c.checked + recheck for c in self.connections if c.principal.session_id is not None),
            default=math.inf,
        )

    async def _check(self, conns: list[Connection]) -> int:
        """Ask the accounts about these connections' credentials: end those that no longer
        hold, and those whose access changed since they connected (they reconnect and get
        what they may see now); note when the others were checked and when they expire."""
        if not conns:
            return 0
        live = await self.auth.live({c.principal.credential for c in conns})
        now = asyncio.get_running_loop().time()
        ended = changed = 0
        for conn in conns:
            current = live.get(conn.principal.credential)
            if current is None:
                conn.end()
                ended += 1
            elif current.access != conn.principal.access:
                conn.end(access_changed=True)
                changed += 1
            elif self._open(conn):
                conn.checked = now
                self._expire_at(conn, current.expires_at)
        if ended:
            log.info("closed %d websocket(s) whose credential ended", ended)
        if changed:
            log.info("closed %d websocket(s) whose access changed", changed)
        recheck = self.auth.session_recheck_s
        if recheck is not None:
            self._next_session_check(recheck)
        return ended + changed

    def _expire_at(self, conn: Connection, when: datetime | None) -> None:
        """(Re)arm the timer that ends ``conn`` when its credential expires."""
        if conn.expires_at == when and (when is None or conn.expiry is not None):
            return
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None
        conn.expires_at = when
        if when is not None:
            delay = max(0.0, (when - utcnow()).total_seconds())
            conn.expiry = asyncio.get_running_loop().call_later(delay, self._expire, conn)

    def _expire(self, conn: Connection) -> None:
        conn.expiry = None
        if conn.expires_at is None or not self._open(conn):
            return
        left = (conn.expires_at - utcnow()).total_seconds()
        if left > 0:  # the wall clock was set back since the timer was armed
            conn.expiry = asyncio.get_running_loop().call_later(left, self._expire, conn)
            return
        log.info("closed a websocket whose %s expired", conn.principal.credential[0])
        conn.end()

    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self.sweep()
            except Exception:  # a database hiccup must not stop the sweeping
                log.exception("websocket credential sweep failed")

    # --- the route -------------------------------------------------------------------------
    def origin_allowed(self, request: web.Request) -> bool:
        """Browsers send Origin: it must be one of the site's (:mod:`cti.web.origins`,
        never compared with the Host header). No Origin: not a browser, the credential
        is what protects it."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        return self.origins.allows(origin, request)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.origin_allowed(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        principal = None
        token = bearer_of(request)
        if token:
            principal = await self.auth.bearer(token)
            if principal is None:
                return web.json_response({"error": "invalid or revoked token"}, status=401)
        elif SESSION_COOKIE in request.cookies:
            principal = await self.auth.session(request.cookies[SESSION_COOKIE])
            if principal is None:
                return web.json_response({"error": "session ended: sign in again"}, status=401)
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat_s, max_msg_size=self.max_frame, compress=False
        )
        await ws.prepare(request)
        try:
            if principal is None:
                principal = await self._authenticate(ws)
            if principal is None:
                await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
                return ws
            conn = Connection(principal, ws, asyncio.Queue(self.queue_size), request.transport)
            await self._serve(conn)
        finally:
            if not ws.closed:
                await ws.close()
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse) -> Principal | None:
        try:
            async with asyncio.timeout(self.auth_timeout_s):
                msg = await ws.receive()
        except TimeoutError:
            return None
        if msg.type != WSMsgType.TEXT:
            return None
        try:
            frame = parse_json(msg.data, max_bytes=self.max_frame, what="frame")
        except ApiError:
            return None
        if not isinstance(frame, dict) or frame.get("type") != "auth":
            return None
        token = frame.get("token")
        if not isinstance(token, str) or not token:
            return None
        return await self.auth.bearer(token)

    async def _serve(self, conn: Connection) -> None:
        self.connections.add(conn)
        p = conn.principal
        self._by_name.setdefault(p.name, set()).add(conn)
        self._by_role.setdefault(p.role, set()).add(conn)
        conn.checked = asyncio.get_running_loop().time()  # verified just now, at connect
        self._unchecked.add(conn)
        self._expire_at(conn, p.expires_at)
        recheck = self.auth.session_recheck_s
        if p.session_id is not None and recheck is not None:
            self._sessions_due_at = min(self._sessions_due_at, conn.checked + recheck)
        try:
            hello = {"type": "hello", "who": p.name, "role": p.role}
            conn.queue.put_nowait(encode(hello))
            for provider in self._snapshots:
                for message in await provider(p):
                    conn.queue.put_nowait(encode(message))
            conn.tasks = [
                asyncio.create_task(self._sender(conn), name=f"ws-send-{p.name}"),
                asyncio.create_task(self._receiver(conn), name=f"ws-recv-{p.name}"),
            ]
            if conn.ended:  # its credential ended while the snapshot was built
                for task in conn.tasks:
                    task.cancel()
            done, pending = await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._close_for(conn, done)
        except asyncio.QueueFull:  # a snapshot larger than the queue: the client can't keep up
            conn.drop()
            await conn.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow")
        finally:
            self.connections.discard(conn)
            self._unchecked.discard(conn)
            if conn.expiry is not None:
                conn.expiry.cancel()
                conn.expiry = None
            for index, key in ((self._by_name, p.name), (self._by_role, p.role)):
                group = index.get(key)
                if group is not None:
                    group.discard(conn)
                    if not group:
                        del index[key]

    async def _close_for(self, conn: Connection, done: set[asyncio.Task[None]]) -> None:
        """The one place where how a connection ended becomes a close code."""
        if conn.dropped:
            code, reason = CLOSE_TOO_SLOW, b"too slow"
        elif conn.access_changed:
            code, reason = CLOSE_ACCESS_CHANGED, b"access changed: reconnect"
        elif conn.ended:
            code, reason = CLOSE_CREDENTIAL_ENDED, b"credential ended"
        else:
            exc = next((t.exception() for t in done if not t.cancelled() and t.exception()), None)
            if exc is None:
                code, reason = WSCloseCode.OK, b""
            elif isinstance(exc, BadFrame):
                code, reason = CLOSE_BAD_FRAME, str(exc).encode()[:120]
            elif isinstance(exc, ConnectionError):
                return
            else:
                log.error("websocket session failed", exc_info=exc)
                code, reason = WSCloseCode.INTERNAL_ERROR, b"internal error"
        with contextlib.suppress(ConnectionError, RuntimeError):
            if code == CLOSE_TOO_SLOW:
                # the peer is not reading: a close handshake would wait on it too
                if conn.transport is not None:
                    conn.transport.abort()  # type: ignore[attr-defined]
                return
            await conn.ws.close(code=code, message=reason)

    @staticmethod
    def _write_now(conn: Connection, text: str) -> bool:
        """Write ``text`` to ``conn`` here and now when nothing is ahead of it (its sender
        idle, its queue empty, the socket's buffer empty), instead of waking its sender:
        a pop reaches the socket inside the step that made it, not after every callback
        already waiting on the loop (up to 8 ms in a burst, decision 0027). False: queue
        it as before (busy, closing, or not serving yet).

        ``send_str`` with compression off writes the frame synchronously and awaits only
        to drain a paused transport, which an empty buffer rules out; so the coroutine is
        run to its end in place. Should it wait anyway, the frame is already written and
        only that flow-control wait is skipped (the bounded queue still drops a client
        that stops reading)."""
        transport = conn.transport
        if (
            not conn.idle
            or not conn.queue.empty()
            or conn.dropped
            or conn.ended
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() != 0  # type: ignore[attr-defined]
        ):
            return False
        coro = conn.ws.send_str(text)
        try:
            coro.send(None)
        except StopIteration:
            conn.sent += 1
            return True
        except Exception:
            return False  # raised before writing (closing): the sender meets it too
        coro.close()
        conn.sent += 1
        return True

    async def _sender(self, conn: Connection) -> None:
        while True:
            conn.idle = True
            text = await conn.queue.get()
            conn.idle = False
            await conn.ws.send_str(text)
            conn.sent += 1

    async def _receiver(self, conn: Connection) -> None:
        async for msg in conn.ws:
            if msg.type == WSMsgType.TEXT:
                reply = await self._command(conn.principal, msg.data)
                if reply is not None:
                    try:
                        conn.queue.put_nowait(encode(reply))
                    except asyncio.QueueFull:
                        conn.drop()
                        return
            elif msg.type == WSMsgType.BINARY:
                raise BadFrame("binary frames are not accepted")
            elif msg.type == WSMsgType.ERROR:
                raise BadFrame("frame too large or malformed")

    async def _command(self, principal: Principal, data: str) -> dict[str, Any] | None:
        try:
            frame = parse_json(data, max_bytes=self.max_frame, what="frame")
        except ApiError as exc:
            return {"type": "error", "error": exc.message, "code": exc.code}
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return {"type": "error", "error": "frames must be JSON objects with a type"}
        kind = frame["type"]
        handler = self._commands.get(kind)
        if handler is None:
            return {
                "type": "error",
                "error": f"unknown command {kind[:40]!r}",
                "ref": frame.get("ref"),
            }
        try:
            reply = await handler(principal, frame)
        except ApiError as exc:
            return {
                "type": "error",
                "error": exc.message,
                "code": exc.code,
                "ref": frame.get("ref"),
            }
        except PermissionError as exc:
            return {"type": "error", "error": str(exc) or "forbidden", "ref": frame.get("ref")}
        except ValueError as exc:
            return {"type": "error", "error": str(exc), "ref": frame.get("ref")}
        if reply is not None and "ref" in frame:
            reply = {**reply, "ref": frame["ref"]}
        return reply

    async def close_all(self) -> None:
        for conn in list(self.connections):
            conn.drop()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
