"""The asyncio FastAGI server (design.md §5 FastAGI rules).

Asterisk connects once per ``AGI(agi://host:port/<route>,arg1,...)``; the route is the
path of that URL (``agi_network_script``) and picks the handler; arguments arrive as
``agi_arg_N`` header lines (never as a query string, design.md §6).

Hardening: the header must arrive within ``header_timeout`` (≤ 5 s) and fit in
64 KiB; every command waits at most ``command_timeout``; concurrent connections are
bounded; garbage closes the connection; a peer outside ``allow`` (networks: the Asterisk
servers', loopback by default) is closed before anything is read. A peer that sends half
a header and goes silent costs one sleeping task, never a spinning loop.

Commands that play media (STREAM FILE, GET DATA...) legitimately stay unanswered while a
prompt plays, up to ``media_timeout``. A peer that sends a valid header and then never
answers must not hold its task that long (issue 13): while a command waits longer than
``command_timeout``, the server asks ``channel_alive(agi_uniqueid)`` every
``command_timeout`` seconds (the daemon answers from its AMI call model); a channel
Asterisk does not have ends the session at once. ``None`` (AMI down: cannot tell) keeps
waiting, up to ``media_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from cti.agi.protocol import (
    AgiHangup,
    AgiParser,
    AgiProtocolError,
    AgiRequest,
    AgiResponse,
    encode_command,
)

__all__ = [
    "AgiChannelGone",
    "AgiError",
    "AgiRouter",
    "AgiSession",
    "ChannelAlive",
    "FastAgiServer",
    "Handler",
]

log = logging.getLogger(__name__)

READ_CHUNK = 4096

#: Is the channel with this Uniqueid up in Asterisk? None: cannot tell now.
ChannelAlive = Callable[[str], "bool | None"]


class AgiError(RuntimeError):
    """A command failed (timeout, 510/520 error)."""


class AgiChannelGone(AgiError):
    """The channel hung up (HANGUP, 511, result=-1 of a media command) or the
    connection closed."""


class AgiSession:
    """One FastAGI connection, as the handler sees it."""

    def __init__(
        self,
        request: AgiRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: AgiParser,
        command_timeout: float,
        *,
        media_timeout: float = 600.0,
        channel_alive: ChannelAlive | None = None,
    ) -> None:
        self.request = request
        self.env = request.env
        self.args = request.args
        self._reader = reader
        self._writer = writer
        self._parser = parser
        self._pending: list[AgiResponse] = []
        self.command_timeout = command_timeout
        self.media_timeout = media_timeout
        self._channel_alive = channel_alive
        self.hung_up = False

    async def command(
        self, name: str, *args: str | int, timeout: float | None = None
    ) -> AgiResponse:
        """Send one command, wait for its response. Raises :class:`AgiChannelGone` once the
        channel is gone and :class:`AgiError` on timeout or a 510/520 error."""
        if self.hung_up:
            raise AgiChannelGone("channel hung up")
        line = encode_command(name, *args)
        try:
            self._writer.write(line)
            await asyncio.wait_for(self._writer.drain(), self.command_timeout)
            limit = self.command_timeout if timeout is None else min(timeout, self.media_timeout)
            response = await self._response_within(limit)
        except TimeoutError:
            raise AgiError(f"{name}: no response in time") from None
        except (ConnectionError, OSError) as exc:
            self.hung_up = True
            raise AgiChannelGone(f"connection lost: {exc}") from None
        if response.code == 511:
            self.hung_up = True
            raise AgiChannelGone(response.text)
        if response.code != 200:
            raise AgiError(f"{name}: {response.code} {response.text}")
        return response

    async def _response_within(self, limit: float) -> AgiResponse:
        """The next response within ``limit`` seconds; past ``command_timeout``, only
        while the channel is alive in Asterisk (see the module docstring)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        read = asyncio.ensure_future(self._next_response())
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                done, _ = await asyncio.wait({read}, timeout=min(left, self.command_timeout))
                if done:
                    return read.result()
                if self._channel_alive is not None and loop.time() < deadline:
                    uniqueid = self.env.get("agi_uniqueid", "")
                    if self._channel_alive(uniqueid) is False:
                        self.hung_up = True
                        raise AgiChannelGone(f"channel {uniqueid[:64]!r} is not in Asterisk")
        finally:
            if not read.done():
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await read

    async def _next_response(self) -> AgiResponse:
        while not self._pending:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                self.hung_up = True
                raise AgiChannelGone("connection closed by Asterisk")
            try:
                events = self._parser.feed(data)
            except AgiProtocolError as exc:
                raise AgiError(str(exc)) from None
            for event in events:
                if isinstance(event, AgiHangup):
                    self.hung_up = True
                elif isinstance(event, AgiResponse):
                    self._pending.append(event)
        return self._pending.pop(0)

    # --- conveniences ------------------------------------------------------------------------
    async def answer(self) -> None:
        await self.command("ANSWER")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        r = await self.command("GET VARIABLE", name)
        return r.data if r.result == "1" else None

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, level)

    async def stream_file(self, filename: str, escape_digits: str = "") -> str:
        """Play a file; returns the digit that interrupted it ("" if none)."""
        r = await self.command("STREAM FILE", filename, escape_digits, timeout=self.media_timeout)
        return self._digit_result(r)

    async def get_data(self, filename: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``filename`` and collect up to ``max_digits`` digits (``#`` ends input).
        Returns (digits, timed_out)."""
        r = await self.command(
            "GET DATA", filename, timeout_ms, max_digits, timeout=self.media_timeout
        )
        if r.result_int == -1:
            self.hung_up = True
            raise AgiChannelGone("hung up during GET DATA")
        return r.result, r.data == "timeout"

    async def wait_for_digit(self, timeout_ms: int) -> str:
        r = await self.command("WAIT FOR DIGIT", timeout_ms, timeout=5 + timeout_ms / 1000)
        return self._digit_result(r)

    def _digit_result(self, r: AgiResponse) -> str:
        code = r.result_int
        if code is None or code < 0:
            self.hung_up = True
            raise AgiChannelGone("hung up")
        return chr(code) if code > 0 else ""


Handler = Callable[[AgiSession], Awaitable[None]]


class AgiRouter(Protocol):
    """What a feature needs from the FastAGI server (FeatureContext.agi)."""

    def add_route(self, route: str, handler: Handler) -> None: ...


class FastAgiServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        header_timeout: float = 5.0,
        command_timeout: float = 10.0,
        media_timeout: float = 600.0,
        max_connections: int = 1000,
        max_header: int = 64 * 1024,
        channel_alive: ChannelAlive | None = None,
        allow: Sequence[str] = ("127.0.0.0/8", "::1/128"),
    ) -> None:
        if not 0 < header_timeout <= 5.0:
            raise ValueError("header_timeout must be in (0, 5] seconds")
        if not 0 < command_timeout <= media_timeout:
            raise ValueError("timeouts must be positive, command_timeout <= media_timeout")
        self.host = host
        self._port = port
        self.allow = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
        self.header_timeout = header_timeout
        self.command_timeout = command_timeout
        self.media_timeout = media_timeout
        self.channel_alive = channel_alive
        self.max_connections = max_connections
        self.max_header = max_header
        self._routes: dict[str, Handler] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.rejected = 0  # connections closed for garbage, timeout, size or load

    @property
    def routes(self) -> dict[str, Handler]:
        return dict(self._routes)

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`; port 0 means an ephemeral one)."""
        return self._port

    def add_route(self, route: str, handler: Handler) -> None:
        route = route.strip("/")
        if not route or route in self._routes:
            raise ValueError(f"invalid or duplicate AGI route {route!r}")
        self._routes[route] = handler

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        sockets = self._server.sockets or ()
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        log.info("FastAGI listening", extra={"host": self.host, "port": self._port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if not self._allowed(writer.get_extra_info("peername")):
                self.rejected += 1
                log.warning("FastAGI connection refused: peer not in agi.allow")
                return
            if len(self._tasks) > self.max_connections:
                self.rejected += 1
                log.warning("FastAGI connection refused: too many connections")
                return
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _allowed(self, peer: object) -> bool:
        if not isinstance(peer, tuple) or not peer:
            return False
        try:
            addr = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.allow)

    async def _read_header(
        self, reader: asyncio.StreamReader, parser: AgiParser
    ) -> AgiRequest | None:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                return None
            for event in parser.feed(data):
                if isinstance(event, AgiRequest):
                    return event

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = AgiParser(max_header=self.max_header)
        try:
            request = await asyncio.wait_for(self._read_header(reader, parser), self.header_timeout)
        except TimeoutError:
            self.rejected += 1
            log.warning("FastAGI header not received in %.1f s: closing", self.header_timeout)
            return
        except AgiProtocolError as exc:
            self.rejected += 1
            log.warning("FastAGI garbage: %s", exc)
            return
        except (ConnectionError, OSError):
            return
        if request is None:
            self.rejected += 1
            return
        route = request.script.split("?", 1)[0]
        handler = self._routes.get(route)
        if handler is None:
            self.rejected += 1
            log.warning("FastAGI: no handler for route %r", route[:80])
            return
        session = AgiSession(
            request, reader, writer, parser, self.command_timeout,
            media_timeout=self.media_timeout, channel_alive=self.channel_alive,
        )  # fmt: skip
        try:
            await handler(session)
        except AgiChannelGone:
            log.debug("FastAGI %s: channel gone", route)
        except AgiError as exc:
            log.warning("FastAGI %s: %s", route, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("FastAGI handler %s failed", route)
