"""One Asterisk instance inside the shared root filesystem (design.md §7).

Each instance has its own directory tree ``ROOT/srv/cti/<name>`` (configuration, spool,
logs, control socket) and its own ports, so several instances (the demo, a test session)
share one root. Asterisk runs as
``unshare --mount --pid --fork --kill-child=SIGKILL --mount-proc=ROOT/proc chroot ROOT
/usr/sbin/asterisk -f -n -C …``: it dies with the ``unshare`` process, and a test harness
ties ``unshare`` to itself with PR_SET_PDEATHSIG so nothing outlives a killed test run.
Asterisk is not given ``-U`` (dropping privileges clears the parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cti.asterisk.sip import SipSpec, write_sip_files
from cti.records.asterisk_conf import RecordsDb, write_records_conf

ASTERISK_CONF = """\
[directories]
astcachedir => {inner}/cache
astetcdir => {inner}/etc
astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules
astvarlibdir => {inner}/lib
astdbdir => {inner}/lib
astkeydir => {inner}/lib
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {inner}/spool
astrundir => {inner}/run
astlogdir => {inner}/log
astsbindir => /usr/sbin

[options]
; a per-install secret (InstanceSpec.system_name): it prefixes every Uniqueid and Linkedid
; and is the SystemName header of every AMI event, so a caller can neither guess another
; call's ids nor forge an event the daemon accepts (cti.ami.screen)
systemname = {system_name}
transmit_silence = yes
hideconnect = yes
lockconfdir = no
live_dangerously = no
"""

PLACEHOLDER_KEYS = (
    "AMI_PORT",
    "AMI_BIND",
    "AMI_PERMIT",
    "AMI_USER",
    "AMI_SECRET",
    "SIP_PORT",
    "HTTP_PORT",
    "HTTP_BIND",
    "RTP_START",
    "RTP_END",
    "AGI_HOST",
    "AGI_PORT",
)


class AsteriskError(RuntimeError):
    """Asterisk could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    ami_secret: str
    ami_user: str = "cti"
    ami_port: int = 5038
    # where AMI listens and the networks its account accepts (the daemon nodes')
    ami_bind: str = "127.0.0.1"
    ami_permit: tuple[str, ...] = ("127.0.0.1/32",)
    sip_port: int = 5060
    # Asterisk's HTTP server: SIP over WebSocket for browser phones (path /ws)
    http_port: int = 8088
    http_bind: str = "127.0.0.1"
    # SIP transports (bind, TCP, TLS, NAT) and trunks (cti.asterisk.sip)
    sip: SipSpec = field(default_factory=SipSpec)
    rtp_start: int = 10000
    rtp_end: int = 10999
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    # queue_log and CDR also into the store's tables (cti.records); None: files only
    records: RecordsDb | None = None

    @property
    def system_name(self) -> str:
        """Asterisk's ``systemname``: derived from the AMI secret, so it is as secret
        (80 bits) and stable across restarts; Uniqueids stay well under 64 characters."""
        digest = hmac.new(
            self.ami_secret.encode(), b"cti systemname\0" + self.name.encode(), hashlib.sha256
        )
        return "cti-" + digest.hexdigest()[:20]

    def check_exposure(self) -> None:
        """AMI off loopback with a short secret is refused (never a default secret)."""
        if not ipaddress.ip_address(self.ami_bind).is_loopback and len(self.ami_secret) < 16:
            raise AsteriskError(
                f"AMI would listen on {self.ami_bind} with a secret shorter than 16 "
                "characters: set a generated ami.secret (cti setup makes one)"
            )

    def placeholders(self) -> dict[str, str]:
        return {
            "AMI_PORT": str(self.ami_port),
            "AMI_BIND": self.ami_bind,
            # Asterisk's ACL lines take a comma-separated list
            "AMI_PERMIT": ",".join(self.ami_permit),
            "AMI_USER": self.ami_user,
            "AMI_SECRET": self.ami_secret,
            "SIP_PORT": str(self.sip_port),
            "HTTP_PORT": str(self.http_port),
            "HTTP_BIND": self.http_bind,
            "RTP_START": str(self.rtp_start),
            "RTP_END": str(self.rtp_end),
            "AGI_HOST": self.agi_host,
            "AGI_PORT": str(self.agi_port),
        }


def render_dialplans(src: Path, dest: Path, values: Mapping[str, str]) -> None:
    """Copy every ``*.conf`` of ``src`` into ``dest`` with ``@@NAME@@`` replaced."""
    for value in values.values():
        if any(c in value for c in "\r\n"):
            raise AsteriskError("configuration values must not contain CR or LF")
    dest.mkdir(parents=True, exist_ok=True)
    for conf in sorted(src.glob("*.conf")):
        text = conf.read_text()
        for key, value in values.items():
            text = text.replace(f"@@{key}@@", value)
        if "@@" in text:
            raise AsteriskError(f"{conf.name}: unknown placeholder left after rendering")
        (dest / conf.name).write_text(text)
    drop_stale_phones(dest)


def drop_stale_phones(etc: Path) -> None:
    """A ``pjsip_phones.conf`` a daemon wrote before decision 0031 inherits the phone
    templates that moved into ``pjsip_phones_base.conf``; loaded beside the new
    pjsip.conf it would break res_pjsip's configuration. It is removed: the daemon pushes
    the phones (with the templates) again when it connects."""
    phones = etc / "pjsip_phones.conf"
    with contextlib.suppress(FileNotFoundError):
        if "[phone-aor](!)" not in phones.read_text(errors="replace"):
            phones.unlink()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ChrootAsterisk:
    """An Asterisk instance run with unshare + chroot in the cached Debian root."""

    way = "chroot"

    def __init__(self, root: Path, spec: InstanceSpec, dialplans: Path) -> None:
        self.root = root
        self.spec = spec
        self.dialplans = dialplans
        self.inner = f"/srv/cti/{spec.name}"
        self.base = root / self.inner.lstrip("/")
        self._proc: subprocess.Popen[bytes] | None = None

    # --- paths as the daemon (on the host) sees them ------------------------------------
    @property
    def etc_dir(self) -> Path:
        return self.base / "etc"

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    @property
    def queue_log(self) -> Path:
        return self.log_dir / "queue_log"

    @property
    def cdr_csv(self) -> Path:
        return self.log_dir / "cdr-custom" / "cti-cdr.csv"

    @property
    def monitor_dir(self) -> Path:
        return self.base / "spool" / "monitor"

    @property
    def state_file(self) -> Path:
        return self.base / "cti-runner.json"

    # --- lifecycle ------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("etc", "lib", "spool/monitor", "log/cdr-custom", "run", "cache"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.spec.check_exposure()
        render_dialplans(self.dialplans, self.etc_dir, self.spec.placeholders())
        write_sip_files(self.etc_dir, self.spec.sip, self.spec.sip_port, f"{self.inner}/etc")
        write_records_conf(self.etc_dir, self.spec.records)
        conf = ASTERISK_CONF.format(inner=self.inner, system_name=self.spec.system_name)
        (self.etc_dir / "asterisk.conf").write_text(conf)

    def command(self) -> list[str]:
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        return [
            unshare, "--mount", "--pid", "--fork", "--kill-child=SIGKILL",
            f"--mount-proc={self.root}/proc",
            "chroot", str(self.root),
            "/usr/sbin/asterisk", "-f", "-n", "-C", f"{self.inner}/etc/asterisk.conf",
        ]  # fmt: skip

    def start(self, *, tie_to_parent: bool) -> None:
        """Start Asterisk. ``tie_to_parent``: die with this process (test harness); else
        detach into its own session (``cti asterisk up``)."""
        if os.geteuid() != 0:
            raise AsteriskError("running Asterisk in a chroot needs root")
        if self.is_running():
            raise AsteriskError(f"instance {self.spec.name!r} is already running")
        self.write_config()
        console = open(self.log_dir / "console.log", "ab")
        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if tie_to_parent else None,
                start_new_session=not tie_to_parent,
            )
        finally:
            console.close()
        self.state_file.write_text(
            json.dumps({"pid": self._proc.pid, "way": self.way, "spec": asdict(self.spec)})
        )

    def _pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = int(json.loads(self.state_file.read_text())["pid"])
            os.kill(pid, 0)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"unshare" in cmdline and self.inner.encode() in cmdline:
                return pid
        return None

    def is_running(self) -> bool:
        return self._pid() is not None

    def cli(self, command: str, timeout: float = 15.0) -> str:
        """Run one Asterisk CLI command through the instance's control socket."""
        if any(c in command for c in "\r\n"):
            raise AsteriskError("CLI command must be one line")
        proc = subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/asterisk", "-C",
             f"{self.inner}/etc/asterisk.conf", "-rx", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise AsteriskError(f"asterisk -rx {command!r}: {proc.stderr.strip() or proc.stdout}")
        return proc.stdout

    def wait_fully_booted(self, timeout: float = 30.0) -> float:
        """Block until Asterisk is FullyBooted; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        ctl = self.base / "run" / "asterisk.ctl"
        while time.monotonic() < deadline:
            if not self.is_running():
                raise AsteriskError(
                    f"Asterisk exited during boot; see {self.log_dir / 'console.log'}"
                )
            if ctl.exists():
                with contextlib.suppress(AsteriskError, subprocess.TimeoutExpired):
                    self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                    return time.monotonic() - start
            time.sleep(0.05)
        raise AsteriskError(f"Asterisk not FullyBooted after {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(AsteriskError, subprocess.TimeoutExpired):
            self.cli("core stop now", timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_running():
            time.sleep(0.05)
        if self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # unshare --kill-child takes Asterisk with it
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)
            self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def kill(self) -> None:
        """SIGKILL the whole instance (tests: Asterisk dies without a clean shutdown)."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(10)
            self._proc = None
