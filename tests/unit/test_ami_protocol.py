"""AmiParser: framing, chunking independence, hostile input. No sockets."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from cti.ami.protocol import AmiParser, Greeting, Message, ParseError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"

Item = Greeting | Message | ParseError


def _msg(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


# A session as Asterisk 22 writes it (banner has no blank line after it).
INLINE = b"".join(
    [
        b"Asterisk Call Manager/11.0.0\r\n",
        _msg("Response: Success", "ActionID: cti-1", "Message: Authentication accepted"),
        _msg(
            "Event: FullyBooted",
            "Privilege: system,all",
            "Uptime: 12",
            "LastReload: 12",
            "Status: Fully Booted",
        ),
        _msg(
            "Event: Newchannel",
            "Privilege: call,all",
            "Channel: Local/4008001234@cti-inbound-00000001;1",
            "ChannelState: 0",
            "ChannelStateDesc: Down",
            "CallerIDNum: 13800138000",
            "CallerIDName: 张三",
            "ConnectedLineNum: <unknown>",
            "ConnectedLineName: <unknown>",
            "Language: en",
            "AccountCode: ",
            "Context: cti-inbound",
            "Exten: 4008001234",
            "Priority: 1",
            "Uniqueid: 1795390549.0",
            "Linkedid: 1795390549.0",
        ),
        _msg(
            "Event: QueueCallerJoin",
            "Privilege: agent,all",
            "Channel: Local/4008001234@cti-inbound-00000001;2",
            "CallerIDNum: 13800138000",
            "CallerIDName: 张三",
            "Uniqueid: 1795390549.1",
            "Linkedid: 1795390549.0",
            "Queue: support",
            "Position: 1",
            "Count: 1",
        ),
        _msg(
            "Event: AgentCalled",
            "Privilege: agent,all",
            "Channel: Local/4008001234@cti-inbound-00000001;2",
            "CallerIDNum: 13800138000",
            "CallerIDName: 张三",
            "Linkedid: 1795390549.0",
            "DestChannel: Local/101@cti-sim-agents-00000002;1",
            "Queue: support",
            "Interface: Local/101@cti-sim-agents/n",
            "MemberName: agent101",
            "ChanVariable: CTI_A=1",
            "ChanVariable: CTI_B=2",
        ),
        _msg(
            "Response: Success",
            "ActionID: list-1",
            "EventList: start",
            "Message: Channels will follow",
        ),
        _msg(
            "Event: CoreShowChannel",
            "ActionID: list-1",
            "Channel: Local/101@cti-sim-agents-00000002;1",
            "CallerIDName: 张三",
            "Linkedid: 1795390549.0",
        ),
        _msg(
            "Event: CoreShowChannel",
            "ActionID: list-1",
            "Channel: Local/4008001234@cti-inbound-00000001;2",
            "Linkedid: 1795390549.0",
        ),
        _msg(
            "Event: CoreShowChannelsComplete",
            "ActionID: list-1",
            "EventList: Complete",
            "ListItems: 2",
        ),
        _msg("Response: Success", "ActionID: cti-2", "Ping: Pong", "Timestamp: 1795390550.1"),
    ]
)

STREAMS = {"inline": INLINE} | {p.name: p.read_bytes() for p in sorted(FIXTURES.glob("*.raw"))}


def parse(*chunks: bytes, max_message_size: int = 1 << 20, eof: bool = True) -> list[Item]:
    parser = AmiParser(max_message_size=max_message_size)
    out: list[Item] = []
    for chunk in chunks:
        parser.receive_data(chunk)
        out += parser.events_received()
    if eof:
        parser.receive_eof()
        out += parser.events_received()
    return out


def segments(stream: bytes) -> list[bytes]:
    """The stream cut after the banner line and after every message terminator."""
    cuts = [0]
    if stream.startswith(b"Asterisk Call Manager/"):
        cuts.append(stream.index(b"\n") + 1)
    at = cuts[-1]
    while (i := stream.find(b"\r\n\r\n", at)) >= 0:
        at = i + 4
        cuts.append(at)
    if cuts[-1] != len(stream):
        cuts.append(len(stream))
    return [stream[a:b] for a, b in itertools.pairwise(cuts)]


# --- every stream (inline + recorded fixtures) -----------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_parses_cleanly(name: str) -> None:
    items = parse(STREAMS[name])
    assert isinstance(items[0], Greeting)
    assert items[0].version
    assert not [i for i in items if isinstance(i, ParseError)]
    messages = [i for i in items if isinstance(i, Message)]
    assert messages
    assert all(m.event is not None or m.response is not None for m in messages)
    assert len(messages) == STREAMS[name].count(b"\r\n\r\n")


def _split_cases() -> list[tuple[str, int, int]]:
    """(stream, first segment, end segment): long streams in ~8 KB slices, one test each."""
    cases = []
    for name, stream in sorted(STREAMS.items()):
        segs = segments(stream)
        first, size = 0, 0
        for n, seg in enumerate(segs):
            size += len(seg)
            if size >= 8192 or n == len(segs) - 1:
                cases.append((name, first, n + 1))
                first, size = n + 1, 0
    return cases


def test_small_stream_split_at_every_byte_boundary() -> None:
    """Two chunks, cut at every offset of the whole inline stream."""
    whole = parse(INLINE)
    for k in range(1, len(INLINE)):
        assert parse(INLINE[:k], INLINE[k:]) == whole, k


@pytest.mark.parametrize(("name", "first", "end"), _split_cases())
def test_split_at_every_byte_boundary(name: str, first: int, end: int) -> None:
    """Two chunks, cut at every offset, give what the whole gives.

    Messages are independent once framed, so each cut is checked on the message it falls
    in followed by a short sentinel message: linear in the stream size, not quadratic.
    """
    sentinel = _msg("Event: Sentinel")
    for n, seg in enumerate(segments(STREAMS[name])[first:end], first):
        window = seg + sentinel
        whole = parse(window)
        assert whole[-1] == Message([("Event", "Sentinel")])
        for k in range(1, len(seg) + 1):
            assert parse(window[:k], window[k:]) == whole, (n, k)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_one_byte_at_a_time(name: str) -> None:
    stream = STREAMS[name]
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == parse(stream)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_random_chunking(name: str) -> None:
    stream = STREAMS[name]
    whole = parse(stream)
    rng = random.Random(name)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), 30))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert parse(*chunks) == whole


# --- the inline stream's content --------------------------------------------------------


def test_inline_content() -> None:
    items = parse(INLINE)
    assert items[0] == Greeting("11.0.0")
    messages = [i for i in items if isinstance(i, Message)]
    login, booted, newchannel, join, called = messages[:5]
    assert login.response == "Success"
    assert login.action_id == "cti-1"
    assert booted.event == "FullyBooted"
    assert newchannel["CallerIDName"] == "张三"
    assert newchannel["AccountCode"] == ""
    assert join.event == "QueueCallerJoin"
    assert join["callerIdName"] == "张三"
    assert called.event == "AgentCalled"
    assert called["Interface"] == "Local/101@cti-sim-agents/n"
    assert called.get_all("chanvariable") == ["CTI_A=1", "CTI_B=2"]
    assert called["ChanVariable"] == "CTI_A=1"
    list_response, item1, item2, complete, ping = messages[5:]
    assert list_response["EventList"] == "start"
    assert [item1.action_id, item2.action_id] == ["list-1", "list-1"]
    assert complete["EventList"] == "Complete"
    assert ping["Ping"] == "Pong"


def test_fixture_caller_names_decode() -> None:
    path = FIXTURES / "queue_answered.raw"
    if not path.exists():
        pytest.skip("fixture not recorded")
    names = {m.get("CallerIDName") for m in parse(path.read_bytes()) if isinstance(m, Message)}
    assert "张三 Zhang" in names


def test_utf8_character_split_across_chunks() -> None:
    data = _msg("Event: Newchannel", "CallerIDName: 张三")
    cut = data.index("张".encode()) + 1  # inside the 3-byte sequence
    for k in (cut, cut + 1, cut + 3):
        (msg,) = parse(data[:k], data[k:])
        assert isinstance(msg, Message)
        assert msg["CallerIDName"] == "张三"


# --- Message ----------------------------------------------------------------------------


def test_message_mapping() -> None:
    msg = Message([("Event", "Hangup"), ("Channel", "A"), ("channel", "B"), ("Cause", "16")])
    assert msg["EVENT"] == "Hangup"
    assert msg.event == "Hangup"
    assert msg.response is None
    assert msg.action_id is None
    assert msg["channel"] == "A"
    assert msg.get_all("Channel") == ["A", "B"]
    assert len(msg) == 3
    assert list(msg) == ["Event", "Channel", "Cause"]
    assert "cause" in msg
    assert "Missing" not in msg
    assert 3 not in msg  # type: ignore[comparison-overlap]
    assert msg.get("missing") is None
    assert msg.get("missing", "x") == "x"
    assert msg.get("cause", "x") == "16"
    assert msg.headers[2] == ("channel", "B")
    assert msg == Message(list(msg.headers))
    assert msg != Message([("Event", "Hangup")])
    assert dict(msg) == {"Event": "Hangup", "Channel": "A", "Cause": "16"}
    with pytest.raises(KeyError):
        msg["nope"]
    assert "Hangup" in repr(msg)


# --- framing variants -------------------------------------------------------------------


def test_no_banner_first_line_is_a_header() -> None:
    assert parse(_msg("Event: A"), _msg("Event: B")) == [
        Message([("Event", "A")]),
        Message([("Event", "B")]),
    ]


def test_blank_lines_before_banner_and_between_messages() -> None:
    items = parse(b"\r\nAsterisk Call Manager/11.0.0\r\n\r\n" + _msg("Event: A") + b"\r\n")
    assert items == [Greeting("11.0.0"), Message([("Event", "A")])]


def test_only_crlf_ends_lines_and_messages() -> None:
    """A bare LF or CR is data (caller-controlled text), never a line or message end."""
    data = b"Asterisk Call Manager/11.0.0\r\nEvent: A\nX: 1\n\nEvent: B\r\rY: 2\r\n\r\n"
    expected = [Greeting("11.0.0"), Message([("Event", "A\nX: 1\n\nEvent: B\r\rY: 2")])]
    assert parse(data) == expected
    assert parse(*(data[i : i + 1] for i in range(len(data)))) == expected


def test_lf_only_peer_frames_nothing() -> None:
    """A bare-LF stream is not AMI: nothing is framed until CRLF CRLF, then it is one
    value (or, without ": ", a malformed line)."""
    items = parse(b"Asterisk Call Manager/11.0.0\nEvent: A\n\nEvent: B\n\n", eof=False)
    assert items == []
    (err,) = parse(b"Asterisk Call Manager/11.0.0\nEvent: A\n\n")
    assert isinstance(err, ParseError)
    assert err.reason.startswith("truncated")


def test_key_with_empty_value() -> None:
    (msg,) = parse(b"Event: X\r\nEmpty: \r\nBare:\r\nValue: a: b\r\n\r\n")
    assert isinstance(msg, Message)
    assert msg.headers == (("Event", "X"), ("Empty", ""), ("Bare", ""), ("Value", "a: b"))


def test_unicode_line_separators_do_not_split_values() -> None:
    name = "a\u2028b\x85c\x1cd\u2029e\x0bf\x0cg"
    (msg,) = parse(_msg("Event: Newchannel", f"CallerIDName: {name}", "Linkedid: 1.0"))
    assert isinstance(msg, Message)
    assert msg["CallerIDName"] == name
    assert msg["Linkedid"] == "1.0"


def test_invalid_utf8_is_replaced_never_raises() -> None:
    (msg,) = parse(b"Event: X\r\nCallerIDName: \xff\xfe\xe5\xbc\r\n\r\n")
    assert isinstance(msg, Message)
    assert msg["CallerIDName"].startswith("\ufffd")


def test_events_received_drains() -> None:
    parser = AmiParser()
    parser.receive_data(b"Asterisk Call Manager/11.0.0\r\n" + _msg("Event: A"))
    assert len(parser.events_received()) == 2
    assert parser.events_received() == []
    parser.receive_data(b"")
    assert parser.events_received() == []


def test_data_after_eof_is_refused() -> None:
    parser = AmiParser()
    parser.receive_eof()
    parser.receive_eof()  # idempotent
    with pytest.raises(EOFError):
        parser.receive_data(b"x")


# --- hostile / broken input -------------------------------------------------------------


def test_garbage_block_between_messages() -> None:
    data = _msg("Event: A") + b"\x00\xffGARBAGE no colon\r\n\r\n" + _msg("Event: B")
    a, err, b = parse(data)
    assert a == Message([("Event", "A")])
    assert isinstance(err, ParseError)
    assert err.reason == "malformed header line"
    assert b"GARBAGE" in err.excerpt
    assert b == Message([("Event", "B")])


def test_a_message_with_a_malformed_line_is_dropped_whole() -> None:
    first, err, nxt = parse(
        _msg("Event: Z") + b"Event: A\r\ngarbage\r\nKey: v\r\n\r\n" + _msg("Event: B")
    )
    assert first == Message([("Event", "Z")])
    assert isinstance(err, ParseError)
    assert err.reason == "malformed header line"
    assert err.excerpt == b"garbage"
    assert nxt == Message([("Event", "B")])


@pytest.mark.parametrize(
    "line",
    [b" Linkedid: x", b"Linked id: x", b"Key\x00: x", b"K\xc3\xa9y: x", b"Key :x", b": x"],
)
def test_header_names_are_tokens(line: bytes) -> None:
    err, nxt = parse(b"Event: A\r\n" + line + b"\r\n\r\n" + _msg("Event: B"))
    assert isinstance(err, ParseError)
    assert nxt == Message([("Event", "B")])


def test_not_an_ami_banner() -> None:
    err, msg = parse(b"SSH-2.0-OpenSSH_9.2\r\n" + _msg("Event: A"))
    assert isinstance(err, ParseError)
    assert err.reason == "not an AMI banner"
    assert msg == Message([("Event", "A")])


@pytest.mark.parametrize("chunk", [None, 1, 7, 100, 4096])
def test_oversized_message_is_dropped_and_parser_resyncs(chunk: int | None) -> None:
    big = _msg("Event: Big", "Data: " + "x" * 500)
    data = b"Asterisk Call Manager/11.0.0\r\n" + _msg("Event: A") + big + _msg("Event: B")
    chunks = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    items = parse(*chunks, max_message_size=200)
    assert items[:2] == [Greeting("11.0.0"), Message([("Event", "A")])]
    err = items[2]
    assert isinstance(err, ParseError)
    assert "larger than 200 bytes" in err.reason
    assert err.excerpt.startswith(b"Event: Big")
    assert items[3:] == [Message([("Event", "B")])]


def test_oversized_without_terminator_reports_before_the_end() -> None:
    parser = AmiParser(max_message_size=100)
    parser.receive_data(b"Event: Big\r\nData: " + b"y" * 200)
    (err,) = parser.events_received()
    assert isinstance(err, ParseError)
    for _ in range(50):  # a stream of junk is dropped, memory stays bounded
        parser.receive_data(b"z" * 1000)
    assert parser.events_received() == []
    assert len(parser._buf) <= 3
    parser.receive_data(b"\r\n\r\n" + _msg("Event: After"))
    assert parser.events_received() == [Message([("Event", "After")])]


def test_oversized_banner_line() -> None:
    items = parse(b"A" * 300 + b"\r\n" + b"more\r\n\r\n" + _msg("Event: B"), max_message_size=100)
    assert isinstance(items[0], ParseError)
    assert items[1:] == [Message([("Event", "B")])]


@pytest.mark.parametrize(
    "tail",
    [b"Event: Half\r\nChan", b"Event: Half\r\n", b"Event: Half\r\n\r", b"Asterisk Call"],
)
def test_truncated_at_eof(tail: bytes) -> None:
    prefix = b"" if tail.startswith(b"Asterisk") else _msg("Event: A")
    items = parse(prefix + tail)
    err = items[-1]
    assert isinstance(err, ParseError)
    assert err.reason.startswith("truncated")
    assert err.excerpt == tail[:64]


def test_whitespace_at_eof_is_not_truncation() -> None:
    assert parse(_msg("Event: A") + b"\r\n") == [Message([("Event", "A")])]


def test_random_bytes_never_raise() -> None:
    rng = random.Random(1234)
    alphabet = b"ab: \r\n\x00\xff\xe5"
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 200)))
        items = parse(data, max_message_size=50)
        k = rng.randrange(0, len(data) + 1)
        assert parse(data[:k], data[k:], max_message_size=50) == items
