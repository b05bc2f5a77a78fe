"""The I/O-free AGI codec: framing at every byte boundary, responses, garbage, limits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cti.agi.protocol import (
    AgiHangup,
    AgiParser,
    AgiProtocolError,
    AgiRequest,
    AgiResponse,
    encode_command,
)

HEADER = (
    "agi_network: yes\n"
    "agi_network_script: ivr\n"
    "agi_request: agi://127.0.0.1:4573/ivr\n"
    "agi_channel: Local/4008001234@cti-inbound-00000001;2\n"
    "agi_calleridname: 张三\n"
    "agi_callerid: 13800138000\n"
    "agi_arg_1: 4008001234\n"
    "agi_arg_2: t-abc\n"
    "\n"
).encode()
RESPONSES = (
    b"200 result=49 (timeout) endpos=1234\n"
    b"HANGUP\n"
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n"
    b"520 End of proper usage.\n"
    b"511 Command Not Permitted on a dead channel or intercept routine\n"
    b"200 result=1 (a (nested) value)\n"
)


def check(events: Sequence[object]) -> None:
    assert len(events) == 6
    req = events[0]
    assert isinstance(req, AgiRequest)
    assert req.script == "ivr"
    assert req.args == ("4008001234", "t-abc")
    assert req.env["agi_calleridname"] == "张三"
    assert "agi_arg_1" not in req.env
    r1 = events[1]
    assert isinstance(r1, AgiResponse)
    assert (r1.code, r1.result, r1.data, r1.endpos) == (200, "49", "timeout", 1234)
    assert isinstance(events[2], AgiHangup)
    usage = events[3]
    assert isinstance(usage, AgiResponse) and usage.code == 520
    assert usage.text.startswith("Usage: GET DATA")
    assert isinstance(events[4], AgiResponse) and events[4].code == 511
    last = events[5]
    assert isinstance(last, AgiResponse) and last.data == "a (nested) value"


def test_whole_stream_in_one_piece() -> None:
    check(AgiParser().feed(HEADER + RESPONSES))


def test_split_at_every_byte_boundary() -> None:
    data = HEADER + RESPONSES
    for cut in range(1, len(data)):
        p = AgiParser()
        events = p.feed(data[:cut]) + p.feed(data[cut:])
        check(events)


def test_byte_by_byte_and_crlf() -> None:
    p = AgiParser()
    events = []
    for b in (HEADER + RESPONSES).replace(b"\n", b"\r\n"):
        events += p.feed(bytes([b]))
    check(events)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
        b"\n",
        b"agi_network yes\n",
    ],
)
def test_garbage_header_is_refused(data: bytes) -> None:
    with pytest.raises(AgiProtocolError):
        AgiParser().feed(data)


def test_garbage_response_is_refused_and_parser_stays_failed() -> None:
    p = AgiParser()
    p.feed(HEADER)
    with pytest.raises(AgiProtocolError):
        p.feed(b"hello there\n")
    with pytest.raises(AgiProtocolError):
        p.feed(b"200 result=1\n")


def test_oversized_header_without_newline() -> None:
    p = AgiParser(max_header=1024)
    p.feed(b"agi_x: " + b"a" * 1000)
    with pytest.raises(AgiProtocolError, match="larger"):
        p.feed(b"a" * 100)


def test_oversized_header_of_many_lines() -> None:
    p = AgiParser()
    with pytest.raises(AgiProtocolError):
        for i in range(2000):
            p.feed(f"agi_k{i}: {'v' * 100}\n".encode())


def test_oversized_usage_block() -> None:
    p = AgiParser(max_response=200)
    p.feed(HEADER)
    p.feed(b"520-usage\n")
    with pytest.raises(AgiProtocolError):
        for _ in range(20):
            p.feed(b"x" * 20 + b"\n")


def test_utf8_split_across_chunks_is_kept() -> None:
    data = "agi_calleridname: 李四\n\n".encode()
    cut = data.index("李".encode()) + 1
    p = AgiParser()
    events = p.feed(data[:cut]) + p.feed(data[cut:])
    assert isinstance(events[0], AgiRequest)
    assert events[0].env["agi_calleridname"] == "李四"


def test_result_without_data() -> None:
    p = AgiParser()
    p.feed(HEADER)
    (r,) = p.feed(b"200 result=-1\n")
    assert isinstance(r, AgiResponse) and r.result_int == -1 and r.data == ""
    (r,) = p.feed(b"200 result= (timeout)\n")
    assert isinstance(r, AgiResponse) and r.result == "" and r.data == "timeout"
    (r,) = p.feed(b"510 Invalid or unknown command\n")
    assert isinstance(r, AgiResponse) and r.code == 510 and not r.ok


def test_encode_quotes_and_refuses_newlines() -> None:
    assert encode_command("get data", "beep", 3000, 1) == b"GET DATA beep 3000 1\n"
    assert encode_command("SET VARIABLE", "X", 'a "b" c\\') == b'SET VARIABLE X "a \\"b\\" c\\\\"\n'
    assert encode_command("STREAM FILE", "x", "") == b'STREAM FILE x ""\n'
    for bad in ("a\nHANGUP", "a\rb", "a\0"):
        with pytest.raises(ValueError):
            encode_command("SET VARIABLE", "X", bad)
    with pytest.raises(ValueError):
        encode_command("EXEC\nSystem", "x")
