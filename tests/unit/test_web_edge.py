"""The HTTP edge's parsers: integers, date-times, ranges and JSON, hostile input → 400."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from cti.web.body import nesting_depth, parse_json
from cti.web.errors import ApiError, BadRequest, PayloadTooLarge
from cti.web.params import Choice, Flag, Int, Text, When, parse_int, time_range


def req(query: str) -> web.Request:
    return make_mocked_request("GET", f"/api/v1/x?{query}")


@pytest.mark.parametrize(
    "raw",
    [
        "\u00b2",
        "1\u00b2",
        "\u0661\u0662",
        "\uff11\uff12",
        "12.0",
        "1e3",
        " 12",
        "0x10",
        "",
        "+",
        "9" * 19,
    ],
)
def test_integers_are_ascii_digits_only(raw: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_int(raw, "limit", 0, 10**18)
    assert err.value.status == 400 and err.value.details == {"parameter": "limit"}


def test_integers_within_bounds() -> None:
    assert parse_int("42", "n", 1, 100) == 42
    assert parse_int("-3", "n", -5, 5) == -3
    with pytest.raises(BadRequest, match="between 1 and 100"):
        parse_int("101", "n", 1, 100)


def test_declared_parameters_read_and_describe_themselves() -> None:
    limit = Int(name="limit", default=100, lo=1, hi=1000)
    assert limit.value(req("")) == 100
    assert limit.value(req("limit=7")) == 7
    with pytest.raises(BadRequest):
        limit.read(req("limit=%C2%B2"))
    assert limit.openapi()["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    status = Choice(name="status", choices=("open", "done"), default="open")
    with pytest.raises(BadRequest, match="one of open, done"):
        status.read(req("status=x"))
    assert Flag(name="open", default=True).read(req("open=no")) is False
    with pytest.raises(BadRequest):
        Flag(name="open").read(req("open=maybe"))
    with pytest.raises(BadRequest, match="longer than 3"):
        Text(name="q", max_len=3).read(req("q=abcd"))
    with pytest.raises(BadRequest):
        Text(name="q", pattern="[a-z]+").read(req("q=a1"))


def test_date_times_are_iso_aware_and_bounded() -> None:
    when = When(name="since")
    assert when.read(req("since=2026-01-02T03:04:05")) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for bad in (
        "yesterday",
        "0001-01-01T00:00:00%2B01:00",
        "\uff12\uff10\uff12\uff16-01-01",
        "9999-12-31T23:59:59-14:00",
    ):
        with pytest.raises(BadRequest):
            when.read(req(f"since={bad}"))


def test_time_ranges_are_ordered_and_bounded() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    since, until = time_range(req(""), now=now)
    assert (since, until) == (now - timedelta(days=1), now)
    with pytest.raises(BadRequest, match="after"):
        time_range(req("since=2026-05-02T00:00:00&until=2026-05-01T00:00:00"))
    with pytest.raises(BadRequest, match="longer"):
        time_range(
            req("since=2020-01-01T00:00:00&until=2026-01-01T00:00:00"), max_span=timedelta(days=30)
        )


def test_json_nesting_is_refused_before_decoding() -> None:
    bomb = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BadRequest, match="nested deeper"):
        parse_json(bomb, max_bytes=1 << 20)
    with pytest.raises(BadRequest, match="nested deeper"):
        parse_json('{"a":' * 40 + "1" + "}" * 40)
    # brackets inside strings do not count
    assert parse_json(json.dumps({"s": "[[[[[[" * 20})) == {"s": "[[[[[[" * 20}
    assert nesting_depth(b'{"a": [1, {"b": "]]]"}]}', 99) == 3
    assert parse_json('{"a":' * 32 + "1" + "}" * 32) is not None


def test_json_errors_are_400_with_codes() -> None:
    for raw, code in ((b"\xff\xfe", "bad-encoding"), (b"{", "bad-json"), (b"nope", "bad-json")):
        with pytest.raises(BadRequest) as err:
            parse_json(raw)
        assert err.value.code == code
    with pytest.raises(PayloadTooLarge):
        parse_json(b"[" + b"1," * 100 + b"1]", max_bytes=50)


def test_error_body_shape() -> None:
    exc = ApiError("duplicate", status=409, extra={"candidates": [1]}, details={"x": 1})
    assert exc.code == "conflict"
    assert exc.body() == {
        "candidates": [1],
        "error": "duplicate",
        "code": "conflict",
        "details": {"x": 1},
    }
