"""AmiScreen: what a caller's CR/LF in a caller ID can make of Asterisk's events, and that
none of it is acted on. Events are written exactly as Asterisk 22 writes them (measured
with SIPp callers: the From user part and the request URI are percent-decoded; the
display name is not). No sockets."""

from __future__ import annotations

import pytest

from cti.ami.protocol import AmiParser, Message
from cti.ami.screen import REASONS, AmiScreen

SYSTEM = "cti-site-5f1c0e9a7b3d2c41"
OURS = "cti-0a1b2c3d4e5f-"
VICTIM = f"{SYSTEM}-1795923066.0"
ATTACKER = f"{SYSTEM}-1795923068.2"


def snapshot(uid: str, *, prefix: str = "", num: str = "13800138000", name: str = "Zhang",
             exten: str = "4008001234", context: str = "cti-inbound",
             channel: str = "PJSIP/trunk-00000001") -> list[str]:  # fmt: skip
    p = prefix
    return [
        f"{p}Channel: {channel}", f"{p}ChannelState: 4", f"{p}ChannelStateDesc: Ring",
        f"{p}CallerIDNum: {num}", f"{p}CallerIDName: {name}",
        f"{p}ConnectedLineNum: <unknown>", f"{p}ConnectedLineName: <unknown>",
        f"{p}Language: en", f"{p}AccountCode: ", f"{p}Context: {context}",
        f"{p}Exten: {exten}", f"{p}Priority: 1", f"{p}Uniqueid: {uid}", f"{p}Linkedid: {uid}",
    ]  # fmt: skip


def event(name: str, lines: list[str], *, system: str = SYSTEM, ts: str = "1795923068.184496",
          privilege: str = "call,all") -> bytes:  # fmt: skip
    head = [f"Event: {name}", f"Privilege: {privilege}", f"Timestamp: {ts}"]
    if system:
        head.append(f"SystemName: {system}")
    return ("\r\n".join(head + lines) + "\r\n\r\n").encode()


def forged(name: str, *lines: str, system: str = "cti") -> str:
    """What a caller writes after an early message end (percent-encoded in SIP)."""
    head = [f"Event: {name}", "Privilege: agent,all", "Timestamp: 1795923068.2"]
    if system:
        head.append(f"SystemName: {system}")
    return "\r\n".join([*head, *lines])


FORGED_ABANDON = forged(
    "QueueCallerAbandon", *snapshot(VICTIM, context="cti-queue", exten="support"),
    "Queue: support", "Position: 1", "OriginalPosition: 1", "HoldTime: 1",
)  # fmt: skip
FORGED_CONNECT = forged(
    "AgentConnect", *snapshot(VICTIM, context="cti-queue", exten="support"),
    *snapshot(f"{SYSTEM}-1795923066.5", prefix="Dest", channel="Local/101@agents-1;1"),
    "Queue: support", "MemberName: agent101", "Interface: Local/101@agents/n",
    "RingTime: 1", "HoldTime: 3",
)  # fmt: skip
# A "head" that mimics the rest of the cut Newchannel and names the victim's call.
MIMIC = "\r\n".join(snapshot(VICTIM)[4:])


def hostile(field: str, value: str) -> bytes:
    """The attacker's Newchannel as Asterisk writes it, ``value`` decoded into ``field``."""
    lines = snapshot(ATTACKER)
    lines = [f"{field}: {value}" if line.startswith(f"{field}: ") else line for line in lines]
    return event("Newchannel", lines)


def screen_stream(*chunks: bytes, backlogged: bool = False) -> tuple[list[Message], AmiScreen]:
    parser = AmiParser()
    screen = AmiScreen(OURS)
    screen.set_system_name(SYSTEM, at_boundary=True)
    out: list[Message] = []
    for i, chunk in enumerate(chunks):
        parser.receive_data(chunk)
        last = i == len(chunks) - 1
        out += screen.feed(
            parser.events_received(), at_boundary=parser.at_boundary and (last or not backlogged)
        )
    return out, screen


def victim_calls() -> bytes:
    return event("Newchannel", snapshot(VICTIM)) + event(
        "QueueCallerJoin",
        [*snapshot(VICTIM, context="cti-queue", exten="support"), "Queue: support", "Position: 1"],
        privilege="agent,all",
    )


def linkedids(messages: list[Message]) -> list[str]:
    return [m.get("Linkedid", "") for m in messages]


# --- genuine traffic passes ------------------------------------------------------------------


def test_genuine_events_pass_in_order() -> None:
    out, screen = screen_stream(victim_calls())
    assert [m.event for m in out] == ["Newchannel", "QueueCallerJoin"]
    assert screen.drops == []


def test_chanvariable_may_repeat_and_tenant_is_allowed() -> None:
    lines = [*snapshot(VICTIM), "ChanVariable: A=1", "ChanVariable: B=2", "TenantID: t1"]
    lines += [*snapshot(VICTIM, prefix="Dest"), "DestChanVariable: A=1", "DestChanVariable: B=3"]
    out, screen = screen_stream(
        event("AgentCalled", [*lines, "Queue: q", "Interface: i", "MemberName: m"])
    )
    assert len(out) == 1, screen.drops


def test_our_responses_and_list_items_pass_without_system_name() -> None:
    data = (
        f"Response: Success\r\nActionID: {OURS}7\r\nEventList: start\r\n\r\n"
        f"Event: CoreShowChannel\r\nActionID: {OURS}7\r\nChannel: x\r\n\r\n"
    ).encode()
    out, screen = screen_stream(data)
    assert [m.action_id for m in out] == [f"{OURS}7", f"{OURS}7"]
    assert screen.drops == []


def test_events_wait_for_the_system_name() -> None:
    parser = AmiParser()
    screen = AmiScreen(OURS)
    parser.receive_data(victim_calls() + f"Response: Success\r\nActionID: {OURS}2\r\n\r\n".encode())
    out = screen.feed(parser.events_received(), at_boundary=True)
    assert [m.response for m in out] == ["Success"]  # the answer we wait for passes
    released = screen.set_system_name(SYSTEM, at_boundary=True)
    assert [m.event for m in released] == ["Newchannel", "QueueCallerJoin"]


def test_the_login_notice_is_not_a_drop() -> None:
    """manager.c's action_login writes FullyBooted after its answer, without Timestamp or
    SystemName: discarded quietly. One without SystemName later is foreign."""
    parser = AmiParser()
    screen = AmiScreen(OURS)
    notice = "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 3\r\nLastReload: 3\r\n"
    parser.receive_data(
        f"Response: Success\r\nActionID: {OURS}1\r\nMessage: Authentication accepted\r\n\r\n"
        f"{notice}Status: Fully Booted\r\n\r\n".encode()
        + victim_calls()
    )
    out = screen.feed(parser.events_received(), at_boundary=True)
    assert [m.response for m in out] == ["Success"]
    released = screen.set_system_name(SYSTEM, at_boundary=True)
    assert [m.event for m in released] == ["Newchannel", "QueueCallerJoin"]
    assert screen.drops == []
    parser.receive_data(f"{notice}Status: Fully Booted\r\n\r\n".encode())
    assert screen.feed(parser.events_received(), at_boundary=True) == []
    assert [(d.reason, d.event) for d in screen.drops] == [("foreign_system", "FullyBooted")]


def test_asterisk_without_system_name() -> None:
    parser = AmiParser()
    screen = AmiScreen(OURS)
    screen.set_system_name("", at_boundary=True)
    parser.receive_data(event("Newchannel", snapshot("1.0"), system=""))
    out = screen.feed(parser.events_received(), at_boundary=True)
    parser.receive_data(event("Newchannel", snapshot("2.0"), system=SYSTEM))
    out += screen.feed(parser.events_received(), at_boundary=True)
    assert linkedids(out) == ["1.0"]
    assert [d.reason for d in screen.drops] == ["foreign_system"]


def test_unknown_system_name_checks_shape_only() -> None:
    parser = AmiParser()
    screen = AmiScreen(OURS)
    screen.set_system_name(None, at_boundary=True)
    parser.receive_data(event("Newchannel", snapshot("1.0"), system="whatever"))
    assert len(screen.feed(parser.events_received(), at_boundary=True)) == 1


# --- hostile caller IDs ---------------------------------------------------------------------

HARMLESS = {
    # a bare LF or CR is data: one Newchannel, the attacker's own ids
    "lf in number": ("CallerIDNum", f"1\nLinkedid: {VICTIM}"),
    "cr in number": ("CallerIDNum", f"1\rLinkedid: {VICTIM}"),
    "lf-lf in number": ("CallerIDNum", f"1\n\nEvent: QueueCallerAbandon\nLinkedid: {VICTIM}"),
    "lf in exten": ("Exten", f"4008\nLinkedid: {VICTIM}"),
    # the display name is not percent-decoded by Asterisk: it arrives literally
    "encoded lf in name": ("CallerIDName", "x%0aLinkedid%3a VICTIM"),
    "encoded crlf in name": ("CallerIDName", "x%0d%0a%0d%0aEvent%3a Forged"),
}


@pytest.mark.parametrize("case", sorted(HARMLESS))
def test_bare_lf_or_cr_stays_data(case: str) -> None:
    field, value = HARMLESS[case]
    out, screen = screen_stream(victim_calls() + hostile(field, value))
    assert linkedids(out) == [VICTIM, VICTIM, ATTACKER]
    assert out[-1][field] == value
    assert screen.drops == []


DROPPED = {
    # %0d%0a: one more header line in Asterisk's event
    "crlf adds a Linkedid": (
        "CallerIDNum", f"1\r\nLinkedid: {VICTIM}", ["repeated_header"]),
    "crlf adds an unknown header": (
        "CallerIDNum", "1\r\nHoldTime: 99", ["unknown_header"]),
    "crlf in exten": ("Exten", f"4008\r\nUniqueid: {VICTIM}", ["repeated_header"]),
    # %0d%0a%0d%0a: the event is cut short and the caller's text follows as messages
    "cut short, forged abandon": (
        "CallerIDNum", f"1\r\n\r\n{FORGED_ABANDON}", ["incomplete", "foreign_system"]),
    "cut short, forged connect": (
        "CallerIDNum", f"1\r\n\r\n{FORGED_CONNECT}", ["incomplete", "foreign_system"]),
    "forged events without system name": (
        "CallerIDName",
        f"x\r\n\r\n{forged('QueueCallerAbandon', f'Linkedid: {VICTIM}', system='')}"
        f"\r\n\r\n{forged('AgentConnect', f'Linkedid: {VICTIM}', system='')}",
        ["incomplete", "foreign_system", "foreign_system"]),
    "remainder alone": ("CallerIDNum", "1\r\n\r\n", ["incomplete", "fragment"]),
    "a forged response": (
        "CallerIDNum", f"1\r\n\r\nResponse: Success\r\nActionID: {OURS[:-1]}x-1",
        ["incomplete", "foreign_response"]),
    "garbage after the cut": ("CallerIDNum", "1\r\n\r\n garbage", ["incomplete", "malformed"]),
    # the caller completes the cut event itself: the head looks genuine (its SystemName is
    # Asterisk's own), but the caller's remainder follows it in the same write
    "mimicked head, forged connect": (
        "CallerIDNum", f"1\r\n{MIMIC}\r\n\r\n{FORGED_CONNECT}",
        ["injected_head", "foreign_system"]),
    "mimicked head, remainder": (
        "CallerIDNum", f"1\r\n{MIMIC}\r\n\r\n", ["injected_head", "fragment"]),
    "mimicked head in exten": (
        "Exten", f"4008\r\nPriority: 1\r\nUniqueid: {VICTIM}\r\nLinkedid: {VICTIM}\r\n\r\n"
        "Event: Hangup", ["injected_head", "foreign_system"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DROPPED))
def test_injections_are_dropped(case: str) -> None:
    field, value, reasons = DROPPED[case]
    data = victim_calls() + hostile(field, value) + event("Hangup", snapshot(VICTIM))
    out, screen = screen_stream(data)
    assert linkedids(out) == [VICTIM, VICTIM, VICTIM]  # the victim's own events, untouched
    assert [m.event for m in out] == ["Newchannel", "QueueCallerJoin", "Hangup"]
    assert [d.reason for d in screen.drops] == reasons
    assert set(reasons) <= set(REASONS)


@pytest.mark.parametrize("case", sorted(DROPPED))
def test_injections_are_dropped_however_the_stream_is_cut(case: str) -> None:
    """Two reads, cut at every byte. A cut exactly where the caller ended Asterisk's
    message early, while the stream is not backlogged, is the one place a mimicked head
    could pass (it names only ids the caller knows: the system name makes the victim's
    unguessable); after a full read the client reports no boundary there."""
    field, value, _ = DROPPED[case]
    data = hostile(field, value)
    whole, _ = screen_stream(data)
    assert whole == []
    for k in range(1, len(data)):
        out, _ = screen_stream(data[:k], data[k:], backlogged=True)
        assert out == [], k
        out, _ = screen_stream(data[:k], data[k:])
        if data[:k].endswith(b"\r\n\r\n") and "mimicked" in case:
            continue
        assert out == [], k


def test_injection_in_the_agent_leg_of_agent_called() -> None:
    """The caller's number is the agent channel's ConnectedLineNum: a Dest-prefixed field
    whose remainder carries no unprefixed Linkedid."""
    lines = snapshot(ATTACKER, context="cti-queue", exten="support") + snapshot(
        f"{SYSTEM}-1795923068.9", prefix="Dest", channel="Local/101@agents-1;1"
    )
    lines = [
        f"DestConnectedLineNum: 1\r\n\r\n{FORGED_CONNECT}" if x.startswith("DestConnectedLineNum")
        else x for x in lines
    ] + ["Queue: support", "Interface: Local/101@agents/n", "MemberName: agent101"]  # fmt: skip
    out, screen = screen_stream(event("AgentCalled", lines, privilege="agent,all"))
    assert out == []
    assert [d.reason for d in screen.drops] == ["incomplete", "foreign_system"]


def test_flush_releases_a_held_event() -> None:
    parser = AmiParser()
    screen = AmiScreen(OURS)
    screen.set_system_name(SYSTEM, at_boundary=True)
    parser.receive_data(victim_calls())
    assert len(screen.feed(parser.events_received(), at_boundary=False)) == 1
    assert [m.event for m in screen.flush()] == ["QueueCallerJoin"]
    assert screen.flush() == []
