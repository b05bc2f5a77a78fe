"""The API's OpenAPI 3 description, generated from the routes and what is written next to
each handler.

Describe a handler where it is written::

    @doc("Finished and live calls", role="supervisor", query=[LIMIT, SINCE],
         response=obj({"calls": arr(), "live": arr()}))
    async def list_calls(request): ...

:func:`doc` stores a :class:`Doc` on the function (wrappers made with ``functools.wraps``
keep it; bound methods expose it). :func:`build_spec` walks ``app.router``: every route
under ``/api/`` becomes an operation; its path parameters (with their regex) come from
the route itself, query parameters from the same :mod:`cti.web.params` declarations the
handler reads, errors from one shared schema. A route without a :class:`Doc` is listed by
:func:`undescribed` — the test suite fails on any (tests/integration/test_openapi.py), so
a route cannot be added without being described.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from cti.web.params import Param

__all__ = [
    "Doc",
    "add_openapi",
    "arr",
    "build_spec",
    "doc",
    "obj",
    "undescribed",
]

F = TypeVar("F", bound=Callable[..., Any])
Schema = dict[str, Any]

_ATTR = "__openapi__"
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})+))?\}")
_ERROR_STATUSES = {
    400: "Bad input (error says what)",
    401: "No valid credential",
    403: "Not allowed for this role or scope",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflicts with the current state",
    413: "Body too large",
    422: "Semantically invalid",
    429: "Too many attempts",
    503: "A dependency (Asterisk, …) is unavailable",
}
ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong, for a person"},
        "code": {"type": "string", "description": "stable identifier, for programs"},
        "details": {},
    },
    "additionalProperties": True,
}


def obj(properties: Mapping[str, Schema] | None = None, *, required: Sequence[str] = (),
        extra: bool = True) -> Schema:  # fmt: skip
    """A JSON object schema (additional properties allowed unless ``extra=False``)."""
    s: Schema = {"type": "object", "additionalProperties": extra}
    if properties:
        s["properties"] = dict(properties)
    if required:
        s["required"] = list(required)
    return s


def arr(items: Schema | None = None) -> Schema:
    return {"type": "array", "items": items or {}}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
NULLABLE_STR: Schema = {"type": ["string", "null"]}


@dataclass(frozen=True)
class Doc:
    summary: str
    role: str | None = "agent"  # None: no credential needed
    query: Sequence[Param] = ()
    body: Schema | type[BaseModel] | None = None
    body_required: bool = True
    body_type: str = "application/json"
    response: Schema | None = None
    status: int = 200
    content_type: str | Sequence[str] = "application/json"  # or several (?format=)
    errors: Sequence[int] = ()  # beyond the ones every route may answer
    tags: Sequence[str] = ()
    description: str = ""
    extra_responses: Mapping[int, str] = field(default_factory=dict)


def doc(summary: str, **kw: Any) -> Callable[[F], F]:
    """Describe a route handler for the API description (see the module docstring)."""

    def mark(fn: F) -> F:
        setattr(fn, _ATTR, Doc(summary, **kw))
        return fn

    return mark


def doc_of(handler: object) -> Doc | None:
    d = getattr(handler, _ATTR, None)
    return d if isinstance(d, Doc) else None


def _api_routes(app: web.Application) -> list[tuple[str, str, web.AbstractRoute]]:
    out = []
    for route in app.router.routes():
        method = route.method.upper()
        if method in ("HEAD", "*", "OPTIONS"):
            continue
        resource = route.resource
        if resource is None:
            continue
        path = resource.canonical
        if not path.startswith("/api/"):
            continue
        out.append((method, path, route))
    return out


def undescribed(app: web.Application) -> list[str]:
    """``METHOD /path`` of every API route without a :class:`Doc`."""
    return sorted(f"{m} {p}" for m, p, r in _api_routes(app) if doc_of(r.handler) is None)


def _path_and_params(path: str) -> tuple[str, list[Schema]]:
    params: list[Schema] = []

    def repl(m: re.Match[str]) -> str:
        name, pattern = m.group(1), m.group(2)
        schema: Schema = {"type": "string"}
        if pattern:
            schema["pattern"] = f"^(?:{pattern})$"
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PATH_PARAM.sub(repl, path), params


def _body_schema(body: Schema | type[BaseModel]) -> Schema:
    if isinstance(body, type) and issubclass(body, BaseModel):
        return body.model_json_schema(ref_template="#/components/schemas/{model}")
    assert isinstance(body, dict)
    return body


def _operation(method: str, d: Doc, path_params: list[Schema], components: Schema) -> Schema:
    op: Schema = {"summary": d.summary, "operationId": None}
    if d.description:
        op["description"] = d.description
    if d.tags:
        op["tags"] = list(d.tags)
    params = list(path_params)
    for q in d.query:
        params.append(q.openapi())
    if params:
        op["parameters"] = params
    if d.body is not None:
        schema = _body_schema(d.body)
        defs = schema.pop("$defs", None)
        if defs:
            components.update(defs)
        op["requestBody"] = {
            "required": d.body_required,
            "content": {d.body_type: {"schema": schema}},
        }
    ok: Schema = {"description": "OK"}
    types = [d.content_type] if isinstance(d.content_type, str) else list(d.content_type)
    content: Schema = {}
    for ctype in types:
        if ctype == "application/json":
            content[ctype] = {"schema": d.response or {}}
        else:
            content[ctype] = {"schema": {"type": "string"}}
    if content:
        ok["content"] = content
    responses: Schema = {str(d.status): ok}
    for status, text in d.extra_responses.items():
        responses[str(status)] = {"description": text}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    statuses = {400, 404, 405, 413, 422, *d.errors}
    if method != "GET":
        statuses.add(409)  # a write may conflict with stored data (cti.web.errors)
    if d.role is not None:
        statuses |= {401, 403}
        op["security"] = [{"bearer": []}, {"session": []}]
        op["x-role"] = d.role
    else:
        op["security"] = []
    for status in sorted(statuses):
        responses.setdefault(str(status), {"description": _ERROR_STATUSES.get(status, "Error"),
                                           "content": error_ref})  # fmt: skip
    op["responses"] = responses
    return op


def build_spec(app: web.Application, *, title: str = "CTI call-center API",
               version: str = "1") -> Schema:  # fmt: skip
    """The OpenAPI 3.1 document of every described API route of ``app``."""
    components: Schema = {"Error": ERROR_SCHEMA}
    paths: dict[str, Schema] = {}
    for method, raw_path, route in _api_routes(app):
        d = doc_of(route.handler)
        if d is None:
            continue
        path, path_params = _path_and_params(raw_path)
        op = _operation(method, d, path_params, components)
        op["operationId"] = f"{method.lower()}_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Errors are JSON {error, code, details?}. Authenticate with an API token "
                "(Authorization: Bearer) or a browser session (cookie cti_session; "
                "state-changing requests then need the X-CSRF-Token header)."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "cti_session"},
            },
        },
    }


SPEC_PATH = "/api/v1/openapi.json"


@doc("This API description (OpenAPI 3.1)", role=None, tags=["meta"], response=obj())
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_spec(request.app))


def add_openapi(app: web.Application) -> None:
    """Serve the description at ``/api/v1/openapi.json`` (public: it holds no data)."""
    app.router.add_get(SPEC_PATH, openapi_json)
