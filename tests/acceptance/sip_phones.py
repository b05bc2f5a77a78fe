"""Registering agents' phones the way real ones do: a SIPp desk phone (REGISTER with
digest authentication over UDP) and a minimal SIP-over-WebSocket client (what a browser
phone's SIP.js sends), for the phones tests and the SIP load bench."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
from pathlib import Path

import aiohttp

from cti.asterisk.instance import ChrootAsterisk
from tests.acceptance.harness import free_port

SIPP_DIR = Path(__file__).parent / "sipp"


async def sipp_register(
    inst: ChrootAsterisk,
    user: str,
    password: str,
    *,
    cwd: Path,
    ip: str = "127.0.0.1",
    port: int | None = None,
    expires: int = 600,
) -> tuple[bool, int, str]:
    """A desk phone's REGISTER from ``ip:port`` (the UDP port a UAS SIPp later answers
    on); returns (registered, the port, SIPp's output)."""
    port = port or free_port(socket.SOCK_DGRAM)
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP_DIR / "uac_register.xml"), "-i", ip, "-p", str(port),
        "-mi", ip, "-mp", str(free_port(socket.SOCK_DGRAM)), "-s", user, "-au", user,
        "-ap", password, "-set", "expires", str(expires), "-m", "1", "-nostdin",
        "-timeout", "10", "-recv_timeout", "4000", f"127.0.0.1:{inst.spec.sip_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode == 0, port, out.decode(errors="replace")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _register(uri: str, user: str, call_id: str, cseq: int, auth: str = "") -> str:
    branch = "z9hG4bK" + secrets.token_hex(6)
    lines = [
        f"REGISTER {uri} SIP/2.0",
        f"Via: SIP/2.0/WS cti-test.invalid;branch={branch}",
        "Max-Forwards: 70",
        f"To: <sip:{user}@127.0.0.1>",
        f"From: <sip:{user}@127.0.0.1>;tag={call_id[:8]}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@cti-test.invalid;transport=ws>;expires=600",
        "Expires: 600",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join([*lines, "Content-Length: 0", "", ""])


WsRegistration = tuple[int, aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]


async def ws_register(ws_url: str, user: str, password: str) -> WsRegistration:
    """REGISTER over SIP-over-WebSocket (RFC 7118) with digest auth, as SIP.js does.
    Returns the final status and the open socket (the registration lives as long as it);
    the caller closes the session."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(ws_url, protocols=("sip",))
    uri, call_id = "sip:127.0.0.1", secrets.token_hex(8)
    await ws.send_str(_register(uri, user, call_id, 1))
    status, text = await _response(ws)
    if status == 401:
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', text.split("WWW-Authenticate:", 1)[1]
                                 .split("\r\n", 1)[0]))  # fmt: skip
        ha1 = _md5(f"{user}:{fields['realm']}:{password}")
        ha2 = _md5(f"REGISTER:{uri}")
        cnonce, nc = secrets.token_hex(4), "00000001"
        resp = _md5(f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        auth = (
            f'Digest username="{user}", realm="{fields["realm"]}", nonce="{fields["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc={nc}, '
            f'cnonce="{cnonce}"' + (f', opaque="{fields["opaque"]}"' if "opaque" in fields else "")
        )
        await ws.send_str(_register(uri, user, call_id, 2, auth))
        status, text = await _response(ws)
    return status, session, ws


async def _response(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 5)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"websocket closed: {msg.type}")
        m = re.match(r"SIP/2.0 (\d{3})", msg.data)
        if m and int(m.group(1)) >= 200:
            return int(m.group(1)), msg.data


async def start_desk_phone(
    port: int, *, cwd: Path, ip: str = "127.0.0.1", calls: int = 1, timeout_s: int = 60
) -> asyncio.subprocess.Process:
    """The desk phone answering (SIPp UAS on the port it registered from): rings half a
    second, answers with G.711, waits for the caller's BYE; exits after ``calls`` calls."""
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP_DIR / "uas_phone.xml"), "-i", ip, "-p", str(port),
        "-mi", ip, "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", str(calls), "-nostdin",
        "-timeout", str(timeout_s), "-rtp_echo",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip


async def start_caller(
    inst: ChrootAsterisk,
    *,
    cwd: Path,
    talk_ms: int = 3000,
    calls: int = 1,
    rate: float = 1,
    limit: int = 1,
    timeout_s: int = 60,
    number: str = "4008001234",
) -> asyncio.subprocess.Process:
    """SIPp's built-in UAC as the carrier's callers dialling ``number``: each call talks
    ``talk_ms`` after the answer, then hangs up."""
    return await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uac", "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
        "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), "-s", number,
        "-d", str(talk_ms), "-m", str(calls), "-r", str(rate), "-l", str(limit), "-nostdin",
        "-timeout", str(timeout_s), "-rtp_echo", f"127.0.0.1:{inst.spec.sip_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip
