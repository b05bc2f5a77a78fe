"""SIP transports and the outbound carrier from configuration, on an Asterisk instance of
this test's own (transports are bound at start): TCP beside UDP, the NAT external
address in what we send, the carrier registration with its digest credentials (and
refused with wrong ones), and a call placed through the carrier presenting the
configured caller ID."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cti.asterisk.instance import ChrootAsterisk, InstanceSpec
from cti.asterisk.rootfs import ensure_root
from cti.asterisk.sip import CarrierSpec, SipSpec
from tests.acceptance.harness import DIALPLANS, ami_client, free_port, wait_for

SIPP = Path(__file__).parent / "sipp"


@pytest.fixture
async def own_asterisk() -> AsyncIterator[Callable[[SipSpec], ChrootAsterisk]]:
    started: list[ChrootAsterisk] = []

    def start(sip: SipSpec) -> ChrootAsterisk:
        rtp = 20000 + secrets.randbelow(400) * 100
        spec = InstanceSpec(
            name=f"test-{os.getpid()}-sip{len(started)}", ami_secret=secrets.token_hex(16),
            ami_port=free_port(), sip_port=free_port(socket.SOCK_DGRAM), http_port=free_port(),
            rtp_start=rtp, rtp_end=rtp + 99, agi_port=free_port(), sip=sip,
        )  # fmt: skip
        inst = ChrootAsterisk(ensure_root(print), spec, DIALPLANS)
        inst.start(tie_to_parent=True)
        started.append(inst)
        inst.wait_fully_booted(30)
        return inst

    yield start
    for inst in started:
        inst.stop()
        shutil.rmtree(inst.base, ignore_errors=True)


async def carrier(port: int, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP / "uas_carrier.xml"), "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), "-nostdin",
        "-timeout", "60", "-trace_msg", "-message_file", str(cwd / "carrier.log"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip


async def test_carrier_registration_caller_id_tcp_and_nat(
    own_asterisk: Callable[[SipSpec], ChrootAsterisk], tmp_path: Path
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    sipp = await carrier(port, tmp_path)
    good = CarrierSpec(
        host="127.0.0.1", port=port, username="acct-cti", password="carrier-pw-1",
        register=True, caller_id="+862112345678",
    )  # fmt: skip
    inst = await asyncio.to_thread(
        own_asterisk,
        SipSpec(tcp=True, external_address="203.0.113.5", trunk_match=("127.0.0.9",), carrier=good),
    )
    try:
        transports = await asyncio.to_thread(inst.cli, "pjsip show transports")
        assert re.search(rf"transport-tcp\s+tcp .*127\.0\.0\.1:{inst.spec.sip_port}", transports)

        async def registered() -> bool:
            out = await asyncio.to_thread(inst.cli, "pjsip show registrations")
            return "Registered" in out and "Rejected" not in out

        await wait_for(registered, timeout=15, what="the carrier registration")

        ami = ami_client(inst)
        await ami.start()
        await ami.wait_connected(10)
        try:
            await ami.send_action("Originate", {
                "Channel": "PJSIP/13800138000@carrier", "Application": "Wait",
                "Data": "1", "Async": "true", "CallerID": "caller <999>",
            })  # fmt: skip

            def invite() -> str:
                log = (tmp_path / "carrier.log").read_text(errors="replace")
                m = re.search(
                    r"INVITE sip:13800138000@.*?\r?\n\r?\n.*?(?=\r?\n\r?\n|\Z)", log, re.S
                )
                return m.group(0) if m else ""

            async def invited() -> str:
                return invite() if (tmp_path / "carrier.log").exists() else ""

            text = await wait_for(invited, timeout=15, what="the INVITE at the carrier")
        finally:
            await ami.close()
        assert re.search(r"From: .*<sip:\+862112345678@", text), text
        assert "c=IN IP4 203.0.113.5" in text, text  # NAT: the external address in the SDP
    finally:
        sipp.kill()
        await sipp.wait()


async def test_wrong_carrier_credentials_are_not_registered(
    own_asterisk: Callable[[SipSpec], ChrootAsterisk], tmp_path: Path
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    sipp = await carrier(port, tmp_path)
    bad = CarrierSpec(host="127.0.0.1", port=port, username="acct-cti", password="guess",
                      register=True)  # fmt: skip
    inst = await asyncio.to_thread(own_asterisk, SipSpec(carrier=bad))
    try:

        async def rejected() -> bool:
            out = await asyncio.to_thread(inst.cli, "pjsip show registrations")
            return "Rejected" in out

        await wait_for(rejected, timeout=15, what="the carrier refusing our registration")
    finally:
        sipp.kill()
        await sipp.wait()
