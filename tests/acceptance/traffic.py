"""Tools for the call-truth acceptance test (test_call_truth.py): SIP callers steered by the
test, the daemon as a real ``cti run`` process, a PostgreSQL instance the test owns (it
stops it for a database outage), a site time zone whose local midnight falls inside the
run, and an independent reading of Asterisk's own records (CDR file, queue_log)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from tests.acceptance.harness import free_media_ports, free_port, wait_for
from tests.checkout import checkout_env

PCAPS = Path("/usr/share/sip-tester")

# --- SIP callers (SIPp) steered with in-dialog MESSAGEs ---------------------------------

_HEAD = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="steered caller">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller [caller]" <sip:[caller]@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:[caller]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

@SDP1@
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
From: "Caller [caller]" <sip:[caller]@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:[caller]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
    ]]>
  </send>
"""

_SDP = """v=0
o=user1 53655765 {version} IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a={direction}"""

# the answer to a request Asterisk sent in the dialog
_OK = """  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
    ]]>
  </send>
"""

# wait for the test's next command; Asterisk hanging up (BYE) ends the call at any step
_WAIT = (
    """  <recv request="BYE" optional="true" next="99"/>
  <recv request="MESSAGE" crlf="true"/>
"""
    + _OK
)

_REQUEST = """  <send retrans="500">
    <![CDATA[
{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller [caller]" <sip:[caller]@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} {method}
Contact: <sip:[caller]@[local_ip]:[local_port]>
Max-Forwards: 70
{body}
    ]]>
  </send>
"""

# an ACK gets no answer: sent once (with retrans, SIPp would resend it until a response
# came and send nothing else meanwhile: the 200 OK to the next MESSAGE never left)
_ACK = _REQUEST.replace('<send retrans="500">', "<send>").format(
    method="ACK", cseq="{cseq}", body="Content-Length: 0"
)

_TAIL = (
    """  <nop next="100"/>
  <label id="99"/>
"""
    + _OK
    + """  <label id="100"/>
</scenario>
"""
)


def scenario(steps: list[str]) -> str:
    """A caller that, after being answered by Asterisk, waits for one MESSAGE per step and
    then does it: ``hold`` / ``resume`` (re-INVITE sendonly / sendrecv), ``key1`` (RFC
    2833 digit 1 from Debian's pcap), ``bye``. The last step must be ``bye``; Asterisk
    hanging up ends the call at any step."""
    assert steps and steps[-1] == "bye"
    out = _HEAD.replace("@SDP1@", _SDP.format(version=1, direction="sendrecv"))
    cseq = 1
    for step in steps:
        out += _WAIT
        cseq += 1
        if step in ("hold", "resume"):
            direction = "sendonly" if step == "hold" else "sendrecv"
            sdp = _SDP.format(version=cseq, direction=direction)
            body = f"Content-Type: application/sdp\nContent-Length: [len]\n\n{sdp}"
            out += _REQUEST.format(method="INVITE", cseq=cseq, body=body)
            out += '  <recv response="100" optional="true"/>\n  <recv response="200"/>\n'
            out += _ACK.format(cseq=cseq)
        elif step == "key1":
            pcap = PCAPS / "dtmf_2833_1.pcap"
            out += f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
        elif step == "bye":
            out += _REQUEST.format(method="BYE", cseq=cseq, body="Content-Length: 0")
            out += '  <recv response="200" crlf="true"/>\n'
        else:
            raise ValueError(step)
    return out + _TAIL


@dataclass
class Caller:
    """One scripted SIP call from the carrier trunk."""

    label: str
    number: str  # the caller's number (unique per call: how the test finds the channel)
    dnis: str
    steps: list[str]
    expect: str | None  # the disposition the script means (None: a fault may change it)
    proc: asyncio.subprocess.Process | None = None
    channel: str = ""
    uniqueid: str = ""
    started: datetime | None = None


class Callers:
    """Places steered SIPp callers and finds their channels through the test's AMI."""

    def __init__(self, ami: AmiClient, sip_port: int, workdir: Path) -> None:
        self.ami = ami
        self.sip_port = sip_port
        self.workdir = workdir
        self.calls: list[Caller] = []
        self._seen: dict[str, tuple[str, str]] = {}  # caller number -> (channel, uniqueid)
        ami.add_event_handler(self._on_event)

    def close(self) -> None:
        self.ami.remove_event_handler(self._on_event)

    def _on_event(self, msg: Message) -> None:
        if msg.event == "Newchannel" and msg.get("Channel", "").startswith("PJSIP/trunk-"):
            self._seen.setdefault(msg.get("CallerIDNum", ""), (msg["Channel"], msg["Uniqueid"]))

    async def place(self, label: str, dnis: str, steps: list[str], expect: str | None) -> Caller:
        number = f"1390{secrets.randbelow(10**7):07d}"
        c = Caller(label, number, dnis, steps, expect, started=datetime.now(UTC))
        path = self.workdir / f"{label}.xml"
        path.write_text(scenario(steps))
        c.proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(path), "-m", "1", "-i", "127.0.0.1",
            "-p", str(free_port(socket.SOCK_DGRAM)), "-mi", "127.0.0.1",
            "-mp", str(free_media_ports()), "-s", dnis, "-key", "caller", number,
            "-nostdin", "-timeout", "300", "-trace_err", "-error_file",
            str(self.workdir / f"{label}.err"),
            f"127.0.0.1:{self.sip_port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            cwd=self.workdir,
        )  # fmt: skip
        self.calls.append(c)

        async def found() -> bool:
            if number not in self._seen:
                _, items = await self.ami.send_list_action("CoreShowChannels")
                for i in items:
                    if i.get("CallerIDNum") == number and i.get("Channel", "").startswith("PJSIP"):
                        self._seen[number] = (i["Channel"], i["Uniqueid"])
            return number in self._seen

        await wait_for(found, timeout=20, what=f"the channel of {label}", every=0.2)
        c.channel, c.uniqueid = self._seen[number]
        return c

    async def send(self, c: Caller, command: str) -> None:
        resp = await self.ami.send_action("SendText", {"Channel": c.channel, "Message": command})
        assert resp.get("Response") == "Success", (c.label, command, dict(resp))

    async def stop_all(self) -> None:
        for c in self.calls:
            if c.proc is not None and c.proc.returncode is None:
                c.proc.kill()
                await c.proc.wait()


class QueueLog:
    """Asterisk's queue_log as the test waits on it (a test-side AMI link may be cut by
    an Asterisk restart; the log loses nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [ln.split("|") for ln in text.splitlines() if ln.count("|") >= 4]

    async def wait(self, callid: str, events: tuple[str, ...], timeout: float = 60) -> list[str]:
        async def seen() -> list[str]:
            for p in await asyncio.to_thread(self.lines):
                if p[1] == callid and p[4] in events:
                    return p
            return []

        return await wait_for(seen, timeout=timeout, what=f"{'/'.join(events)} of {callid}")


# --- the daemon as a real process ----------------------------------------------------------


class DaemonProcess:
    """``cti run`` with a config file, its output in a log file; SIGKILL and restart. It runs
    this checkout's code (``env`` plus :func:`tests.checkout.checkout_env`)."""

    def __init__(self, config: Path, log: Path, env: dict[str, str], http_port: int) -> None:
        self.config = config
        self.log = log
        self.env = env
        self.http_port = http_port
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cti.cli", "--config", str(self.config), "run",
                stdout=out, stderr=asyncio.subprocess.STDOUT, env=checkout_env(self.env),
            )  # fmt: skip

        async def healthy() -> bool:
            assert self.proc is not None
            assert self.proc.returncode is None, self.tail()
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{self.base}/healthz") as resp:
                        return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(healthy, timeout=60, what="the daemon to serve and reach AMI", every=0.3)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.proc = None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


# --- a PostgreSQL the test owns -------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise AssertionError(f"{name} (PostgreSQL server binaries) is required")


class OwnPostgres:
    """initdb + pg_ctl on a free port in a directory of its own, run as the ``postgres``
    user (PostgreSQL refuses root; pytest's temporary directories are closed to other
    users, so the directory is made under the system's temporary directory); stop/start
    it to make a database outage. The shared server is never touched."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="cti-test-pg-"))
        self.data = self.base / "data"
        self.port = free_port()

    def _run(self, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
        proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")  # fmt: skip

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.base} -h 127.0.0.1 -c fsync=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.base / "pg.log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        with contextlib.suppress(AssertionError):
            pg.stop()
        shutil.rmtree(pg.base, ignore_errors=True)


# --- a site time zone with local midnight inside the run -------------------------------------


def fixed_zone_file(offset_s: int, abbr: str = "CTZ") -> bytes:
    """A TZif (version 2) file of a zone that is always UTC+``offset_s`` (RFC 8536): no
    transitions, one local time type, and the POSIX TZ footer zoneinfo uses."""
    name = abbr.encode()

    def block() -> bytes:
        counts = (0, 0, 0, 0, 1, len(name) + 1)  # isut, isstd, leap, time, type, char
        header = b"TZif2" + b"\0" * 15 + struct.pack(">6l", *counts)
        return header + struct.pack(">lBB", offset_s, 0, 0) + name + b"\0"

    sign = "-" if offset_s >= 0 else "+"  # POSIX: what to add to local time to get UTC
    a = abs(offset_s)
    footer = f"\n{abbr}{sign}{a // 3600}:{a % 3600 // 60:02d}:{a % 60:02d}\n".encode()
    return block() + block() + footer


def zone_with_midnight_at(when: datetime, tzdir: Path, key: str = "Cti/Test") -> int:
    """Write zone ``key`` under ``tzdir`` whose local midnight is at ``when``; returns its
    UTC offset in seconds (between -10 h and +14 h)."""
    offset = int(-when.timestamp()) % 86400
    if offset > 14 * 3600:
        offset -= 86400
    path = tzdir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fixed_zone_file(offset))
    return offset


# --- Asterisk's own records, read independently of cti ---------------------------------------

CDR_FIELDS = (
    "linkedid", "uniqueid", "start", "answer", "end", "src", "dst", "dcontext", "clid",
    "channel", "dstchannel", "lastapp", "disposition", "duration", "billsec", "userfield",
    "outcome",
)  # fmt: skip


@dataclass
class Truth:
    """What Asterisk's records say about one call (Linkedid)."""

    linkedid: str
    started_at: float
    ended_at: float
    uniqueids: set[str] = field(default_factory=set)
    lastapps: list[str] = field(default_factory=list)
    outcome_mark: str = ""
    dnis: str = ""
    queue_lines: list[list[str]] = field(default_factory=list)

    def expected(self) -> dict[str, Any]:
        """disposition, queue, agent, wait, talk, answered_at from the records alone."""
        lines = sorted(self.queue_lines, key=lambda p: int(p[0]))
        connect = next((p for p in lines if p[4] == "CONNECT"), None)
        if connect is not None:
            talk = None
            for p in lines:
                if p[4] in ("COMPLETEAGENT", "COMPLETECALLER") and p[2] == connect[2]:
                    talk = float(p[6])
                elif p[4] in ("BLINDTRANSFER", "ATTENDEDTRANSFER") and p[2] == connect[2]:
                    talk = float(p[-2])
            return {
                "disposition": "answered", "queue": connect[2], "agent": connect[3],
                "wait_s": float(connect[5]), "talk_s": talk, "answered_at": int(connect[0]),
            }  # fmt: skip
        ends = {"ABANDON": ("abandoned", 7), "EXITWITHTIMEOUT": ("timeout", 7),
                "EXITWITHKEY": ("callback", 8), "EXITEMPTY": ("exit_empty", 7)}  # fmt: skip
        last = [p for p in lines if p[4] in ends]
        if last:
            p = last[-1]
            disposition, index = ends[p[4]]
            return {"disposition": disposition, "queue": p[2], "agent": "",
                    "wait_s": float(p[index]), "talk_s": None, "answered_at": None}  # fmt: skip
        if self.outcome_mark == "callback":
            return {"disposition": "callback", "queue": ""}
        if self.dnis and "AGI" in self.lastapps:
            return {"disposition": "ivr_abandon", "queue": ""}
        return {}


def read_truth(cdr_file: Path, queue_log: Path, since: float) -> dict[str, Truth]:
    """Every call whose CDR starts at or after ``since``, with its queue_log lines."""
    calls: dict[str, Truth] = {}
    with cdr_file.open(newline="") as fh:
        for fields in csv.reader(fh):
            if len(fields) < len(CDR_FIELDS) - 1:
                continue
            v = dict(zip(CDR_FIELDS, fields, strict=False))
            start, end = float(v["start"] or 0), float(v["end"] or 0)
            t = calls.get(v["linkedid"])
            if t is None:
                t = calls[v["linkedid"]] = Truth(v["linkedid"], start, end)
            t.started_at = min(t.started_at, start)
            t.ended_at = max(t.ended_at, end)
            t.uniqueids.add(v["uniqueid"])
            t.lastapps.append(v["lastapp"])
            t.outcome_mark = t.outcome_mark or v.get("outcome", "")
            t.dnis = t.dnis or v["userfield"]
    calls = {k: t for k, t in calls.items() if t.started_at >= since}
    by_uid = {u: t for t in calls.values() for u in t.uniqueids}
    for p in QueueLog(queue_log).lines():
        t = by_uid.get(p[1])
        if t is not None:
            t.queue_lines.append(p)
    return calls
