"""What the websocket hub sends is encoded in one place (cti.web.ws.encode): orjson for
speed, the same text a browser parsed before (the json module with ``default=str``), and
always text that can be sent."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from cti.web.ws import encode


def before(message: Any) -> Any:
    """What the hub sent before orjson, parsed as the page parses it."""
    return json.loads(json.dumps(message, ensure_ascii=False, default=str))


@dataclass
class Card:
    name: str


@pytest.mark.parametrize(
    "message",
    [
        {"type": "pop", "caller_num": "13800138000", "name": "张三 <b>&", "customer": None},
        {"type": "wallboard", "at": datetime(2026, 11, 30, 15, 4, 5, 123456, tzinfo=UTC),
         "day": date(2026, 11, 30), "queues": [{"agents": [], "sl": 0.8125, "n": 3}]},
        {"type": "x", "tiny": 1e-7, "big": 1e300, "neg": -0.0, "t": (1, 2)},
        {1: "an int key", "card": Card("dataclass, as default=str did"), "s": {"set"}},
        {"text": "line\nbreak \u2028 \u0000 \"quoted\" \\ back"},
    ],
)  # fmt: skip
def test_the_page_gets_what_it_got_before(message: dict[Any, Any]) -> None:
    text = encode(message)
    assert isinstance(text, str)
    assert json.loads(text) == before(message)


def test_what_orjson_cannot_encode_still_goes_out_as_sendable_text() -> None:
    huge = {"n": 2**70}
    assert json.loads(encode(huge)) == {"n": 2**70}
    lone = {"name": "bad \udcff byte from a hostile caller id"}
    text = encode(lone)
    text.encode("utf-8")  # sendable: a lone surrogate is escaped, not raw
    assert json.loads(text) == lone


def test_not_a_number_is_null_which_a_browser_can_parse() -> None:
    assert json.loads(encode({"sl": math.nan, "aht": math.inf})) == {"sl": None, "aht": None}
