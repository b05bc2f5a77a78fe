"""A real SIP call from the carrier trunk (SIPp) navigates the IVR with RFC 2833 DTMF."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.events import IvrCompleted
from tests.acceptance.harness import free_media_ports, free_port, wait_for
from tests.acceptance.test_ivr_harness import IvrFactory, in_queue, ivr_daemons


@pytest.fixture
async def start_ivr(asterisk: ChrootAsterisk, tmp_path: Path) -> AsyncIterator[IvrFactory]:
    async with ivr_daemons(asterisk, tmp_path) as factory:
        yield factory


PCAPS = Path("/usr/share/sip-tester")

# INVITE offering PCMA + telephone-event; after the answer, wait for the IVR's GET DATA,
# play the digit "1" as RFC 2833 events from Debian's pcap, stay a while, hang up.
SCENARIO = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ivr dtmf">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:13700137000@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:13700137000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:13700137000@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:13700137000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="2000"/>
  <nop><action><exec play_pcap_audio="@PCAP@"/></action></nop>
  <pause milliseconds="6000"/>
  <send retrans="500">
    <![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:13700137000@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:13700137000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


async def test_sip_call_with_rfc2833_dtmf_reaches_the_chosen_queue(
    asterisk: ChrootAsterisk, ami: AmiClient, start_ivr: IvrFactory, tmp_path: Path
) -> None:
    assert shutil.which("sipp"), "sip-tester (sipp) is required"
    ivr = await start_ivr()
    scenario = tmp_path / "ivr_dtmf.xml"
    scenario.write_text(SCENARIO.replace("@PCAP@", str(PCAPS / "dtmf_2833_1.pcap")))
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(scenario), "-m", "1", "-i", "127.0.0.1",
        "-p", str(free_port(socket.SOCK_DGRAM)), "-mi", "127.0.0.1",
        "-mp", str(free_media_ports()), "-s", "4008001234",
        "-nostdin", "-timeout", "40", "-timeout_error",
        f"127.0.0.1:{asterisk.spec.sip_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:

        async def completed() -> list[IvrCompleted]:
            return [e for e in ivr.events if isinstance(e, IvrCompleted)]

        (done,) = await wait_for(completed, timeout=15, what="the SIP call's IVR result")
        assert done.channel.startswith("PJSIP/trunk-")
        assert (done.action, done.target, done.reason) == ("queue", "sales", "choice")
        assert done.path == ("main",)
        await wait_for(
            lambda: in_queue(asterisk, "sales", done.channel),
            timeout=5, what="the SIP caller in the sales queue",
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 40)
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
