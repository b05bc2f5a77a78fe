"""Bodies are read whole (cti.web.body.read_body): a body that reaches the server in several
parts, as a browser's upload does on a loaded machine, is read to its end, never cut at the
first part; and never more than one byte past the limit.

A real aiohttp server; the client sends each body in parts, 50 ms apart (chunked).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cti.web.body import json_body, read_body

LIMIT = 100_000


async def _raw(request: web.Request) -> web.Response:
    body = await read_body(request.content, LIMIT)
    return web.json_response({"size": len(body), "head": body[:4].decode()})


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"got": await json_body(request)})


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_post("/raw", _raw)
    app.router.add_post("/json", _json)
    async with TestServer(app) as srv:
        yield srv


async def _in_parts(*parts: bytes) -> AsyncIterator[bytes]:
    for i, part in enumerate(parts):
        if i:
            await asyncio.sleep(0.05)
        yield part


async def _post(server: TestServer, path: str, *parts: bytes) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url(path), data=_in_parts(*parts)) as resp:
            assert resp.status == 200, await resp.text()
            answer: dict[str, object] = await resp.json()
            return answer


async def test_a_body_arriving_in_parts_is_read_to_its_end(server: TestServer) -> None:
    parts = (b"RIFF" + b"a" * 16_380, b"b" * 16_384, b"c" * 9_000)
    assert await _post(server, "/raw", *parts) == {"size": 41_768, "head": "RIFF"}


async def test_a_body_over_the_limit_is_read_one_byte_past_it_and_no_further(
    server: TestServer,
) -> None:
    parts = (b"RIFF" + b"a" * 59_996, b"b" * 60_000, b"c" * 60_000)
    assert await _post(server, "/raw", *parts) == {"size": LIMIT + 1, "head": "RIFF"}


async def test_a_json_body_arriving_in_parts_is_parsed_whole(server: TestServer) -> None:
    text = '{"name": "' + "x" * 20_000 + '", "n": 1}'
    raw = text.encode()
    answer = await _post(server, "/json", raw[:7_000], raw[7_000:15_000], raw[15_000:])
    assert answer == {"got": {"name": "x" * 20_000, "n": 1}}
