"""The FastAGI server over real sockets: routing, arguments, hang-up, and hostile peers
(half-open, slow header, garbage, oversize) that must never block the loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from cti.agi.server import AgiChannelGone, AgiSession, FastAgiServer


def header(route: str, *args: str) -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {route}",
        f"agi_request: agi://127.0.0.1/{route}",
        "agi_channel: PJSIP/trunk-00000001",
        "agi_callerid: 13800138000",
        "agi_uniqueid: cti-5f1c-1795923066.7",
    ]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, ...]]] = []
        self.gone = asyncio.Event()
        self.responses: list[str] = []

    async def handler(self, agi: AgiSession) -> None:
        self.seen.append((agi.request.script, agi.args))
        try:
            r = await agi.command("GET VARIABLE", "CTI_X")
            self.responses.append(r.data)
            await agi.get_data("beep", 1000, 1)
        except AgiChannelGone:
            self.gone.set()
            raise


@pytest.fixture
async def server() -> AsyncIterator[tuple[FastAgiServer, Recorder]]:
    rec = Recorder()
    srv = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    srv.add_route("ivr", rec.handler)
    await srv.start()
    yield srv, rec
    await srv.stop()


async def open_(srv: FastAgiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.port)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(100), within)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


async def loop_latency() -> float:
    t = time.monotonic()
    await asyncio.sleep(0.01)
    return time.monotonic() - t


async def test_route_args_commands_and_hangup(server: tuple[FastAgiServer, Recorder]) -> None:
    srv, rec = server
    reader, writer = await open_(srv)
    writer.write(header("ivr", "4008001234", "t-1"))
    assert await reader.readline() == b"GET VARIABLE CTI_X\n"
    writer.write(b"200 result=1 (hello world)\n")
    assert await reader.readline() == b"GET DATA beep 1000 1\n"
    writer.write(b"HANGUP\n200 result=-1\n")
    await asyncio.wait_for(rec.gone.wait(), 2)
    assert rec.seen == [("ivr", ("4008001234", "t-1"))]
    assert rec.responses == ["hello world"]
    assert await closed_by_server(reader, 2)
    writer.close()


async def test_unknown_route_is_closed(server: tuple[FastAgiServer, Recorder]) -> None:
    srv, rec = server
    reader, writer = await open_(srv)
    writer.write(header("nope"))
    assert await closed_by_server(reader, 2)
    assert rec.seen == []
    writer.close()


async def test_half_open_and_slow_header_are_cut_without_blocking(
    server: tuple[FastAgiServer, Recorder],
) -> None:
    srv, _rec = server
    silent = [await open_(srv) for _ in range(20)]
    slow = [await open_(srv) for _ in range(20)]
    for _, w in slow:
        w.write(b"agi_network: yes\n")  # one header line, then nothing (panoramisk spins here)
    t0 = time.monotonic()
    assert await loop_latency() < 0.2
    for r, _ in silent + slow:
        assert await closed_by_server(r, 2)
    assert time.monotonic() - t0 < 2.0
    for _, w in silent + slow:
        w.close()
    # a proper client still gets served afterwards
    reader, writer = await open_(srv)
    writer.write(header("ivr"))
    assert await reader.readline() == b"GET VARIABLE CTI_X\n"
    writer.close()
    assert srv.rejected >= 40


async def test_one_line_then_close_does_not_spin(server: tuple[FastAgiServer, Recorder]) -> None:
    srv, _ = server
    for _ in range(10):
        _, w = await open_(srv)
        w.write(b"agi_network: yes\n")
        await w.drain()
        w.close()
    t0 = time.process_time()
    await asyncio.sleep(0.3)
    assert time.process_time() - t0 < 0.15  # no busy loop


@pytest.mark.parametrize(
    "payload",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\x01\x02\xff\n", b"agi_x: " + b"a" * 70000],
)
async def test_garbage_and_oversize_are_closed(
    server: tuple[FastAgiServer, Recorder], payload: bytes
) -> None:
    srv, rec = server
    reader, writer = await open_(srv)
    writer.write(payload)
    assert await closed_by_server(reader, 1.0)  # well before the header timeout would matter
    assert rec.seen == []
    writer.close()


async def test_command_timeout_frees_the_handler(server: tuple[FastAgiServer, Recorder]) -> None:
    srv, _rec = server
    reader, writer = await open_(srv)
    writer.write(header("ivr"))
    assert await reader.readline() == b"GET VARIABLE CTI_X\n"
    # never answer: the server gives up after command_timeout (2 s) and closes
    assert await closed_by_server(reader, 4)
    writer.close()


def test_header_timeout_is_bounded() -> None:
    with pytest.raises(ValueError):
        FastAgiServer(header_timeout=30)


# --- a peer that sends a header and goes silent (issue 13 item 9) --------------------------


class Prompt:
    """A handler that plays a long prompt (GET DATA): its answer may take minutes."""

    def __init__(self) -> None:
        self.results: list[str] = []

    async def handler(self, agi: AgiSession) -> None:
        try:
            digits, _ = await agi.get_data("long-prompt", 5000, 1)
            self.results.append(digits)
        except AgiChannelGone as exc:
            self.results.append(f"gone: {exc}")
            raise


@contextlib.asynccontextmanager
async def prompting(
    alive: bool | None, media_timeout: float = 30.0
) -> AsyncIterator[tuple[Prompt, list[str], asyncio.StreamReader, asyncio.StreamWriter]]:
    """A server whose ``ivr`` route plays a long prompt, the liveness answers given
    (``alive``) and the Uniqueids asked, and a peer that sent the header and got GET DATA."""
    prompt = Prompt()
    asked: list[str] = []

    def channel_alive(uniqueid: str) -> bool | None:
        asked.append(uniqueid)
        return alive

    srv = FastAgiServer(
        "127.0.0.1", 0, header_timeout=0.5, command_timeout=0.2, media_timeout=media_timeout,
        channel_alive=channel_alive,
    )  # fmt: skip
    srv.add_route("ivr", prompt.handler)
    await srv.start()
    try:
        reader, writer = await open_(srv)
        writer.write(header("ivr"))
        assert await reader.readline() == b"GET DATA long-prompt 5000 1\n"
        yield prompt, asked, reader, writer
        writer.close()
    finally:
        await srv.stop()


async def silent_peer(alive: bool | None, media_timeout: float = 30.0) -> tuple[float, Prompt]:
    async with prompting(alive, media_timeout) as (prompt, asked, reader, _):
        t0 = time.monotonic()
        assert await closed_by_server(reader, media_timeout + 5)  # silence, until cut
        elapsed = time.monotonic() - t0
    if alive is not None:  # the channel named in the header was asked after
        assert set(asked) == {"cti-5f1c-1795923066.7"}
    return elapsed, prompt


async def test_silent_peer_on_a_channel_asterisk_does_not_have_is_cut() -> None:
    elapsed, prompt = await silent_peer(alive=False)
    assert elapsed < 2.0  # not media_timeout (30 s): the first liveness check ends it
    assert prompt.results and prompt.results[0].startswith("gone: channel")


async def test_a_long_prompt_on_a_live_channel_is_waited_for() -> None:
    async with prompting(alive=True) as (prompt, asked, reader, writer):
        await asyncio.sleep(1.0)  # five times command_timeout: the prompt is still playing
        writer.write(b"200 result=7\n")
        assert await closed_by_server(reader, 2)
    assert prompt.results == ["7"]
    assert len(asked) >= 3


async def test_silent_peer_when_liveness_is_unknown_waits_for_media_timeout() -> None:
    elapsed, prompt = await silent_peer(alive=None, media_timeout=1.5)
    assert 1.3 < elapsed < 4.0
    assert prompt.results == []  # a timeout (AgiError), not a hang-up


def test_timeouts_are_consistent() -> None:
    with pytest.raises(ValueError):
        FastAgiServer(command_timeout=20, media_timeout=10)


async def test_a_peer_outside_agi_allow_is_closed_before_its_header_is_read() -> None:
    rec = Recorder()
    srv = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, allow=["10.0.0.0/8"])
    srv.add_route("ivr", rec.handler)
    await srv.start()
    try:
        reader, writer = await open_(srv)  # from 127.0.0.1: not an allowed Asterisk
        writer.write(header("ivr", "4008001234", "t-1"))
        assert await closed_by_server(reader, within=1.0)
        writer.close()
        assert rec.seen == [] and srv.rejected == 1
    finally:
        await srv.stop()
