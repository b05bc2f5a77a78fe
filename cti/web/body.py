"""Request bodies read whole and bounded; JSON bodies and frames parsed once, bounded in size
and nesting.

:func:`parse_json` is the one decoder for untrusted JSON (HTTP bodies and websocket
frames): at most ``max_bytes``, valid UTF-8, nested at most ``max_depth`` deep (counted
before decoding, so a ``[[[[…`` bomb never reaches the recursive decoder and can never
raise RecursionError — which used to be a 500 / a 1011 close). Any violation is a
:class:`~cti.web.errors.BadRequest` with a clear message.

:func:`read_body` reads a whole body (a request's, or a client response's), bounded: every
handler that takes raw bytes reads through it. :func:`json_body` reads a request's body
through it and :func:`parse_json` once and caches the result on the request;
:func:`json_object` additionally requires an object, :func:`model_body` validates it with
a pydantic model (whose errors the middleware maps to 400).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from aiohttp import StreamReader, web
from pydantic import BaseModel

from cti.web.errors import BadRequest, PayloadTooLarge

__all__ = [
    "MAX_BODY",
    "MAX_DEPTH",
    "json_body",
    "json_object",
    "model_body",
    "parse_json",
    "read_body",
]

MAX_BODY = 256 * 1024
MAX_DEPTH = 32
_BODY = web.RequestKey("cti_json_body", object)
M = TypeVar("M", bound=BaseModel)

# strings (with escapes) and the brackets that nest; everything else is skipped
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def nesting_depth(raw: bytes, limit: int) -> int:
    """The deepest bracket nesting of ``raw`` (stops counting past ``limit``)."""
    depth = deepest = 0
    for m in _TOKENS.finditer(raw):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif c in (b"]", b"}"):
            depth -= 1
    return deepest


def parse_json(
    raw: bytes | str, *, max_bytes: int = MAX_BODY, max_depth: int = MAX_DEPTH, what: str = "body"
) -> Any:
    """Decode untrusted JSON or raise :class:`BadRequest` saying what is wrong."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the {what} is larger than {max_bytes} bytes")
    if b"[" in data or b"{" in data:
        if nesting_depth(data, max_depth) > max_depth:
            raise BadRequest(
                f"the {what} is nested deeper than {max_depth} levels", code="too-deep"
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the {what} is not valid UTF-8", code="bad-encoding") from None
    try:
        return json.loads(text)
    except RecursionError:  # belt and braces: the depth check should have caught it
        raise BadRequest(f"the {what} is nested too deeply", code="too-deep") from None
    except ValueError:
        raise BadRequest(f"the {what} is not valid JSON", code="bad-json") from None


async def read_body(stream: StreamReader, max_bytes: int) -> bytes:
    """All of a body (``request.content``, or a client response's ``content``) to its end,
    but never more than ``max_bytes + 1`` bytes: one byte over tells the caller it is too
    large. ``StreamReader.read(n)`` alone returns what has arrived so far: a body that
    came in several parts lost the rest (a browser's 42 KB recording upload, cut to its
    first 16 KiB on a loaded machine: 0.96 s of sound of 2.6)."""
    parts: list[bytes] = []
    size = 0
    while size <= max_bytes:
        part = await stream.read(max_bytes + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


async def json_body(request: web.Request, *, max_bytes: int = MAX_BODY, empty: Any = None) -> Any:
    """The request's JSON body, read and decoded once (cached on the request).

    An empty body is ``empty`` when given, else a 400."""
    if _BODY in request:
        return request[_BODY]
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    raw = await read_body(request.content, max_bytes)
    if not raw.strip():
        if empty is None:
            raise BadRequest("a JSON body is required", code="bad-json")
        value = empty
    else:
        value = parse_json(raw, max_bytes=max_bytes)
    request[_BODY] = value
    return value


async def json_object(
    request: web.Request, *, max_bytes: int = MAX_BODY, allow_empty: bool = False
) -> dict[str, Any]:
    """The body as a JSON object (``{}`` for an empty body when ``allow_empty``)."""
    value = await json_body(request, max_bytes=max_bytes, empty={} if allow_empty else None)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="bad-json")
    return value


async def model_body(request: web.Request, model: type[M], *, max_bytes: int = MAX_BODY) -> M:
    """The body validated by a pydantic ``model`` (errors become 400 with details)."""
    return model.model_validate(await json_object(request, max_bytes=max_bytes))
