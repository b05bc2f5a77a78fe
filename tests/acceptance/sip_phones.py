"""Registering agents' phones the way real ones do: a SIPp desk phone (REGISTER with
digest authentication over UDP) and a minimal SIP-over-WebSocket client (what a browser
phone's SIP.js sends), for the phones tests and the SIP load bench."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from cti.asterisk.instance import ChrootAsterisk
from tests.acceptance.harness import free_media_ports, free_port

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
    transport: str = "u1",
    server_port: int | None = None,
    tls_files: tuple[Path, Path] | None = None,
) -> tuple[bool, int, str]:
    """A desk phone's REGISTER from ``ip:port`` (the UDP port a UAS SIPp later answers
    on); returns (registered, the port, SIPp's output). ``transport``: SIPp's -t (u1 UDP,
    t1 TCP, l1 TLS with ``tls_files`` = certificate, key) to ``server_port`` (default the
    instance's SIP port)."""
    port = port or free_port(socket.SOCK_DGRAM if transport == "u1" else socket.SOCK_STREAM)
    extra = ["-t", transport]
    if tls_files is not None:
        extra += ["-tls_cert", str(tls_files[0]), "-tls_key", str(tls_files[1])]
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP_DIR / "uac_register.xml"), "-i", ip, "-p", str(port),
        "-mi", ip, "-mp", str(free_media_ports()), "-s", user, "-au", user,
        "-ap", password, "-set", "expires", str(expires), "-m", "1", "-nostdin",
        "-timeout", "10", "-recv_timeout", "4000", *extra,
        f"127.0.0.1:{server_port or inst.spec.sip_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode == 0, port, out.decode(errors="replace")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _register(
    uri: str, user: str, call_id: str, cseq: int, auth: str = "", transport: str = "WS"
) -> str:
    branch = "z9hG4bK" + secrets.token_hex(6)
    lines = [
        f"REGISTER {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} cti-test.invalid;branch={branch}",
        "Max-Forwards: 70",
        f"To: <sip:{user}@127.0.0.1>",
        f"From: <sip:{user}@127.0.0.1>;tag={call_id[:8]}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@cti-test.invalid;transport={transport.lower()}>;expires=600",
        "Expires: 600",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join([*lines, "Content-Length: 0", "", ""])


WsRegistration = tuple[int, aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]


async def digest_register(
    send: Callable[[str], Awaitable[None]],
    receive: Callable[[], Awaitable[tuple[int, str]]],
    user: str,
    password: str,
    transport: str,
) -> int:
    """REGISTER, answer the digest challenge (MD5, qop auth) as a phone does; the final
    status."""
    uri, call_id = "sip:127.0.0.1", secrets.token_hex(8)
    await send(_register(uri, user, call_id, 1, transport=transport))
    status, text = await receive()
    if status == 401:
        challenge = text.split("WWW-Authenticate:", 1)[1].split("\r\n", 1)[0]
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        ha1 = _md5(f"{user}:{fields['realm']}:{password}")
        ha2 = _md5(f"REGISTER:{uri}")
        cnonce, nc = secrets.token_hex(4), "00000001"
        resp = _md5(f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        auth = (
            f'Digest username="{user}", realm="{fields["realm"]}", nonce="{fields["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc={nc}, '
            f'cnonce="{cnonce}"' + (f', opaque="{fields["opaque"]}"' if "opaque" in fields else "")
        )
        await send(_register(uri, user, call_id, 2, auth, transport=transport))
        status, text = await receive()
    return status


WsRegistration = tuple[int, aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]


async def ws_register(ws_url: str, user: str, password: str) -> WsRegistration:
    """REGISTER over SIP-over-WebSocket (RFC 7118) with digest auth, as SIP.js does.
    Returns the final status and the open socket (the registration lives as long as it);
    the caller closes the session."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(ws_url, protocols=("sip",))
    status = await digest_register(ws.send_str, lambda: _response(ws), user, password, "WS")
    return status, session, ws


async def tls_register(port: int, user: str, password: str) -> int:
    """REGISTER over SIP/TLS (RFC 3261 over a TLS stream; the test's self-signed
    certificate is not verified) with digest auth; the final status."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)

    async def send(text: str) -> None:
        writer.write(text.encode())
        await writer.drain()

    async def receive() -> tuple[int, str]:
        while True:
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
            length = re.search(r"(?im)^Content-Length:\s*(\d+)", head)
            if length and int(length.group(1)):
                await reader.readexactly(int(length.group(1)))
            m = re.match(r"SIP/2.0 (\d{3})", head)
            if m and int(m.group(1)) >= 200:
                return int(m.group(1)), head

    try:
        return await digest_register(send, receive, user, password, "TLS")
    finally:
        writer.close()


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
        "-mi", ip, "-mp", str(free_media_ports()), "-m", str(calls), "-nostdin",
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
        "-mi", "127.0.0.1", "-mp", str(free_media_ports()), "-s", number,
        "-d", str(talk_ms), "-m", str(calls), "-r", str(rate), "-l", str(limit), "-nostdin",
        "-timeout", str(timeout_s), "-rtp_echo", f"127.0.0.1:{inst.spec.sip_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )  # fmt: skip
