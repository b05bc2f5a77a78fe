"""The one HTTP error type and the one place it becomes a response.

A handler (or anything it calls) raises :class:`ApiError` — or one of the small
subclasses named for their status — and :func:`error_middleware` turns it into JSON::

    {"error": "<message for a person>", "code": "<stable-id>", "details": {...}}

plus any ``extra`` top-level fields (e.g. a duplicate's ``candidates``). The same
middleware maps aiohttp's own HTTP errors under ``/api/`` (unknown route 404, 405, 413
body too large) and pydantic validation errors (400 with one detail per field) to that
shape, a database integrity violation (a reference to a missing row, a duplicate) to 409,
and logs anything else once as a 500 "internal error" without leaking it.
Bad input is never a 500: the parsers in :mod:`cti.web.params` and :mod:`cti.web.body`
raise :class:`BadRequest`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "error_middleware",
    "error_response",
]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DEFAULT_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    416: "range-not-satisfiable",
    422: "unprocessable",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer that is not a success: status, a stable ``code``, a ``message`` for a
    person, optional structured ``details`` and ``extra`` top-level fields."""

    status: int = 400

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message
        self.code = code or _DEFAULT_CODES.get(self.status, f"http-{self.status}")
        self.details = details
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.extra, "error": self.message, "code": self.code}
        if self.details is not None:
            out["details"] = self.details
        return out

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers or None)


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    status = 429


class Unavailable(ApiError):
    status = 503


def error_response(status: int, message: str, **kw: Any) -> web.Response:
    """The JSON error response for ``status`` (for code that returns rather than raises)."""
    return ApiError(message, status=status, **kw).response()


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(x) for x in e["loc"]), "message": e["msg"]}
        for e in exc.errors(include_input=False, include_url=False)[:20]
    ]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except ValidationError as exc:
        return BadRequest("invalid input", details=validation_details(exc)).response()
    except IntegrityError as exc:
        # a reference to a row that does not exist, or a duplicate the handler did not
        # check for: the request conflicts with the stored data, it is not a server fault
        log.warning("refused %s %s: %s", request.method, request.path, exc.orig)
        return Conflict(
            "conflicts with stored data (a referenced item does not exist, "
            "or an item like it exists already)",
            code="integrity",
        ).response()
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            return ApiError(exc.reason, status=exc.status).response()
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return ApiError("internal error", status=500).response()
