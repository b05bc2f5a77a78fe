"""Issue 13 item 1: a caller can never steer the daemon through AMI.

Real SIPp callers put percent-encoded CR/LF into the From header (user part and display
name) and the request URI of calls to the real Asterisk, while other calls wait in a queue.
Asterisk percent-decodes the user part and writes it into events raw. The attacker here is
stronger than a real one: it knows the victims' Linkedids and Uniqueids (a real caller
cannot: the system name makes them secret). Whatever it injects, no other call's state or
row changes, forged QueueCallerAbandon / AgentConnect / Hangup do nothing, and every drop
is counted on the daemon's Prometheus registry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from acd.feature import AcdFeature
from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.store.models import Call as CallRow
from tests.acceptance.conftest import DaemonFactory
from tests.acceptance.harness import originate_call, start_sipp, wait_for

SIPP = Path(__file__).parent / "sipp"
VICTIM_NUMBERS = ("13800138001", "13800138002")


def hostile_from_headers(victim: str) -> list[str]:
    """From header values, each with one injection (percent-encoded as SIP carries it).

    Asterisk keeps at most 79 bytes of the decoded user part (measured), so that is the
    room an injection has; the victim's Linkedid here is short (an Originate id)."""

    def user(text: str) -> str:
        assert len(text.encode()) <= 79, text
        return f'"Caller" <sip:{quote(text, safe="")}@127.0.0.1>'

    v = victim
    return [
        user(f"1390013900\nLinkedid: {v}"),  # %0a
        user(f"1390013900\rLinkedid: {v}"),  # %0d alone
        user(f"1390013900\r\nLinkedid: {v}\r\nUniqueid: {v}-2"),  # %0d%0a
        # %0d%0a%0d%0a: Asterisk's event is cut short, the caller's text follows it
        user(f"1\r\n\r\nEvent: QueueCallerAbandon\r\nLinkedid: {v}\r\nQueue: support"),
        user(f"1\r\n\r\nEvent: AgentConnect\r\nLinkedid: {v}\r\nMemberName: agent101"),
        user(f"\r\n\r\nEvent: Hangup\r\nSystemName: cti-x\r\nLinkedid: {v}"),
        user(f"\r\n\r\nEvent: Hangup\r\nLinkedid: {v}\r\n\r\nEvent: Hangup"),
        # the cut Newchannel completed by the caller, naming the victim's call
        user(f"1\r\nUniqueid: {v}\r\nLinkedid: {v}\r\n\r\nEvent: Hangup"),
        # the display name: not percent-decoded by Asterisk, it arrives as written
        f'"x%0d%0aLinkedid: {v}" <sip:13900139000@127.0.0.1>',
        f'"x%0aLinkedid%3a {v}%0d%0a%0d%0aEvent: Hangup" <sip:13900139000@127.0.0.1>',
    ]


async def sipp(asterisk: ChrootAsterisk, scenario: str, rows: list[str], tmp: Path) -> str:
    """One SIPp call per row (``[field0]`` of the scenario), four at a time."""
    inf = tmp / f"{scenario}.csv"
    assert not any(";" in r or "\n" in r for r in rows)
    inf.write_text("SEQUENTIAL\n" + "".join(f"{r};\n" for r in rows))
    proc = await start_sipp(
        asterisk, SIPP / f"{scenario}.xml", "-inf", str(inf), "-m", str(len(rows)),
        "-r", "4", "-l", "4", "-timeout_error", cwd=tmp, timeout_s=40,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text


def dropped(daemon: Daemon, reason: str) -> float:
    value = daemon.metrics.registry.get_sample_value("cti_ami_dropped_total", {"reason": reason})
    return value or 0.0


def victim_state(daemon: Daemon, linkedid: str) -> dict[str, object]:
    call = daemon.model.calls[linkedid]
    acd = next(f for f in daemon.features if isinstance(f, AcdFeature))
    entries = [
        (e.uniqueid, e.linkedid, e.caller_num)
        for q in acd.live.queues.values()
        for e in q.entries.values()
        if e.linkedid == linkedid
    ]
    return {
        "legs": sorted((u, leg.channel, leg.ended_at) for u, leg in call.legs.items()),
        "caller": (call.caller_num, call.caller_name, call.dnis),
        "queue": (call.queue, call.agent, call.answered_at, call.outcome, repr(call.stay)),
        "closing": call.closing_since,
        "acd": entries,
    }


async def rows(daemon: Daemon) -> list[CallRow]:
    async with daemon.db.session() as session:
        return list((await session.execute(select(CallRow))).scalars())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_hostile_caller_ids_change_no_other_call(
    asterisk: ChrootAsterisk, ami: AmiClient, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = await start_daemon()
    system = asterisk.spec.system_name
    assert daemon.ami.system_name == system
    victims = [await originate_call(ami, caller=n, hold_s=60) for n in VICTIM_NUMBERS]

    async def queued() -> bool:
        calls = daemon.model.calls
        return all(v in calls and calls[v].queue == "support" for v in victims)

    await wait_for(queued, timeout=15, what="the victims waiting in the queue")
    await asyncio.sleep(0.5)
    before = {v: victim_state(daemon, v) for v in victims}
    assert sum(daemon.ami.dropped.values()) == 0, daemon.ami.dropped  # genuine traffic

    attacks = hostile_from_headers(victims[0]) + hostile_from_headers(victims[1])[3:8]
    await sipp(asterisk, "uac_hostile", attacks, tmp_path)
    await sipp(asterisk, "uac_refused", [quote(f"4008\r\nLinkedid: {victims[0]}", safe="")],
               tmp_path)  # fmt: skip

    async def attackers_done() -> list[CallRow]:
        own = [r for r in await rows(daemon) if r.linkedid.startswith(system + "-")]
        return own if len(own) == len(attacks) + 1 else []

    own = await wait_for(attackers_done, timeout=30, what="the hostile calls' rows")
    # each hostile call is its own row, under its own (secret, Asterisk-made) Linkedid
    assert all(r.linkedid.startswith(system + "-") for r in own)
    assert all(r.agent == "" and r.disposition != "answered" for r in own)
    # the number the dialplan kept: digits only (FILTER), whatever the From header said
    assert all(r.caller_num_raw.isdigit() or not r.caller_num_raw for r in own), own

    # nothing about the victims changed, in the call model or the ACD's live queues
    for v in victims:
        assert victim_state(daemon, v) == before[v]
    assert not [r for r in await rows(daemon) if r.linkedid in victims]

    # what was dropped, and why (the metric is on the daemon's registry: /metrics)
    assert dropped(daemon, "repeated_header") >= 2  # %0d%0a adds a Linkedid (+ request URI)
    assert dropped(daemon, "incomplete") >= 6  # Newchannel cut short by %0d%0a%0d%0a
    assert dropped(daemon, "foreign_system") >= 12  # the forged events
    assert dropped(daemon, "injected_head") >= 2  # the completed Newchannel
    assert set(daemon.ami.dropped) <= {"repeated_header", "incomplete", "foreign_system",
                                       "injected_head", "fragment"}  # fmt: skip

    # the victims' calls still end normally, with their own facts
    for v in victims:
        await ami.send_action("Hangup", {"Channel": v})

    async def victims_done() -> list[CallRow]:
        found = [r for r in await rows(daemon) if r.linkedid in victims]
        return found if len(found) == len(victims) else []

    done = {r.linkedid: r for r in await wait_for(victims_done, timeout=20, what="victim rows")}
    for v, number in zip(victims, VICTIM_NUMBERS, strict=True):
        row = done[v]
        assert row.caller_num_raw == number
        assert row.queue == "support"
        assert row.agent == ""
        assert row.disposition == "abandoned"
        assert row.answered_at is None
        assert row.ended_at is not None and row.ended_at > row.started_at
