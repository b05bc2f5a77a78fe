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

from cti.ami.client import AmiClient
from cti.ami.config_push import push
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk, InstanceSpec
from cti.asterisk.rootfs import ensure_root
from cti.asterisk.sip import CarrierSpec, SipSpec, write_sip_files
from phones.credentials import ha1
from phones.pjsip import PhoneEntry, config_file
from tests.acceptance.harness import DIALPLANS, ami_client, free_media_ports, free_port, wait_for
from tests.acceptance.sip_phones import sipp_register, tls_register

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


async def carrier(
    port: int, cwd: Path, scenario: str = "uas_carrier.xml"
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP / scenario), "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(free_media_ports()), "-nostdin",
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
        # Asterisk qualifies the carrier's contact (OPTIONS) at a random moment of its first
        # minute and dials no contact that left them unanswered: qualify it now, so the
        # call below always goes to a contact that answered
        await asyncio.to_thread(inst.cli, "pjsip qualify carrier")

        async def reachable() -> bool:
            out = await asyncio.to_thread(inst.cli, "pjsip show contacts")
            return re.search(r"carrier/sip:\S+\s+\S+\s+Avail\b", out) is not None

        await wait_for(reachable, timeout=15, what="the carrier's contact to answer OPTIONS")

        ami = ami_client(inst)
        originated: list[Message] = []
        ami.add_event_handler(
            lambda m: originated.append(m) if m.event == "OriginateResponse" else None
        )
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
                # Async: the action's answer only says "queued"; a refused dial says so here
                failed = [m for m in originated if m.get("Response") != "Success"]
                assert not failed, f"the dial was refused: {dict(failed[0])}"
                return invite() if (tmp_path / "carrier.log").exists() else ""

            text = await wait_for(invited, timeout=15, what="the INVITE at the carrier")
        finally:
            await ami.close()
        assert re.search(r"From: .*<sip:\+862112345678@", text), text
        assert "c=IN IP4 203.0.113.5" in text, text  # NAT: the external address in the SDP
    finally:
        sipp.kill()
        await sipp.wait()


async def test_a_carrier_that_ignores_options_is_dialled_with_qualify_s_0(
    own_asterisk: Callable[[SipSpec], ChrootAsterisk], tmp_path: Path
) -> None:
    """A carrier that never answers OPTIONS: qualified (``qualify_s`` = 2) its contact
    becomes Unavailable; with ``qualify_s = 0`` (the trunks rewritten, res_pjsip reloaded)
    Asterisk stops asking, the contact is no longer Unavailable and a call goes out."""
    port = free_port(socket.SOCK_DGRAM)
    sipp = await carrier(port, tmp_path, "uas_carrier_no_options.xml")
    sip = SipSpec(carrier=CarrierSpec(host="127.0.0.1", port=port, qualify_s=2))
    inst = await asyncio.to_thread(own_asterisk, sip)
    try:

        async def contact() -> str:
            out = await asyncio.to_thread(inst.cli, "pjsip show contacts")
            m = re.search(r"Contact:\s+carrier/sip:\S+\s+\S+\s+(\w+)", out)
            return m.group(1) if m else ""

        async def unavailable() -> bool:
            return await contact() == "Unavail"

        await wait_for(unavailable, timeout=30, what="the unanswered OPTIONS to fail the contact")
        await asyncio.to_thread(
            write_sip_files, inst.etc_dir,
            SipSpec(carrier=CarrierSpec(host="127.0.0.1", port=port, qualify_s=0)),
            inst.spec.sip_port, f"{inst.inner}/etc",
        )  # fmt: skip
        assert "qualify_frequency = 0" in (inst.etc_dir / "pjsip_trunks.conf").read_text()
        await asyncio.to_thread(inst.cli, "module reload res_pjsip.so")

        async def not_qualified() -> bool:
            aor = await asyncio.to_thread(inst.cli, "pjsip show aor carrier")
            frequency = re.search(r"qualify_frequency\s*:\s*(\d+)", aor)
            return (
                frequency is not None
                and frequency.group(1) == "0"
                and await contact() not in ("", "Unavail")
            )

        await wait_for(not_qualified, timeout=30, what="the carrier's contact out of Unavailable")
        ami = ami_client(inst)
        await ami.start()
        await ami.wait_connected(10)
        try:
            answer = await ami.send_action("Originate", {
                "Channel": "PJSIP/13800138000@carrier", "Application": "Wait", "Data": "1",
                "CallerID": "caller <999>", "Timeout": "20000",
            }, timeout=40)  # fmt: skip
        finally:
            await ami.close()
        assert answer.get("Response") == "Success", dict(answer)
        log = (tmp_path / "carrier.log").read_text(errors="replace")
        assert re.search(r"INVITE sip:13800138000@127\.0\.0\.1", log), log[-2000:]
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


async def test_desk_phones_register_over_tcp_and_tls(
    own_asterisk: Callable[[SipSpec], ChrootAsterisk], tmp_path: Path
) -> None:
    """With [asterisk.sip] tcp and tls_port (a certificate from config), a provisioned
    phone registers over TCP and over TLS with its digest credentials, and not without."""
    cert, key = tmp_path / "sip.crt", tmp_path / "sip.key"
    proc = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-days", "1", "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await proc.wait() == 0
    tls_port = free_port()
    inst = await asyncio.to_thread(
        own_asterisk,
        SipSpec(tcp=True, tls_port=tls_port, tls_cert_file=str(cert), tls_key_file=str(key)),
    )
    transports = await asyncio.to_thread(inst.cli, "pjsip show transports")
    assert f"127.0.0.1:{tls_port}" in transports and "transport-tls" in transports
    password = "correct horse battery"
    ami = AmiClient("127.0.0.1", inst.spec.ami_port, inst.spec.ami_user, inst.spec.ami_secret,
                    events="system")  # fmt: skip
    await ami.start()
    await ami.wait_connected(10)
    seen: list[str] = []  # contacts created (a TCP/TLS one goes when its connection does)
    ami.add_event_handler(
        lambda m: seen.append(m.get("URI", "")) if m.event == "ContactStatus" else None
    )

    try:
        phone = PhoneEntry("desk-sip1", "sip", "cti", ha1("desk-sip1", "cti", password))
        await push(ami, config_file([phone]))
        await ami.send_action("Reload", {"Module": "res_pjsip.so"})
        ok, _, out = await sipp_register(inst, "desk-sip1", password, cwd=tmp_path, transport="t1")
        assert ok, out
        await wait_for(
            lambda: asyncio.sleep(0, any("transport=tcp" in u.lower() for u in seen)),
            timeout=5, what="the TCP contact",
        )  # fmt: skip
        # Debian's SIPp has no TLS: a phone's REGISTER over a TLS stream from here
        assert await tls_register(tls_port, "desk-sip1", password) == 200
        await wait_for(
            lambda: asyncio.sleep(0, any("transport=tls" in u.lower() for u in seen)),
            timeout=5, what="the TLS contact",
        )  # fmt: skip
        assert await tls_register(tls_port, "desk-sip1", "wrong") in (401, 403)
    finally:
        await ami.close()
