"""`cti asterisk up|down|status|cli`: pick Docker when an engine answers, else the chroot
runner, and say which was taken."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from cti.asterisk import rootfs
from cti.asterisk.instance import ASTERISK_CONF, AsteriskError, ChrootAsterisk, InstanceSpec
from cti.asterisk.instance import render_dialplans as render_dialplans
from cti.asterisk.sip import CarrierSpec, SipSpec, write_sip_files
from cti.config import Settings
from cti.records.asterisk_conf import records_db, write_records_conf

PROJECT_DIR = Path(__file__).resolve().parents[2]
DIALPLANS = PROJECT_DIR / "dialplans"
DOCKER_DIR = PROJECT_DIR / "docker" / "asterisk"


class Runner(Protocol):
    way: str

    @property
    def log_dir(self) -> Path: ...
    def start(self, *, tie_to_parent: bool) -> None: ...
    def wait_fully_booted(self, timeout: float = 30.0) -> float: ...
    def is_running(self) -> bool: ...
    def cli(self, command: str, timeout: float = 15.0) -> str: ...
    def stop(self, timeout: float = 10.0) -> None: ...


def spec_from_settings(settings: Settings) -> InstanceSpec:
    if not settings.ami.secret:
        raise AsteriskError("ami.secret is empty: run `cti setup` (it generates one)")
    return InstanceSpec(
        name=settings.asterisk.instance,
        ami_secret=settings.ami.secret,
        ami_user=settings.ami.username,
        ami_port=settings.ami.port,
        ami_bind=settings.asterisk.ami_bind,
        ami_permit=tuple(settings.asterisk.ami_permit),
        sip_port=settings.asterisk.sip_port,
        http_port=settings.asterisk.ws_port,
        http_bind=settings.asterisk.ws_bind,
        sip=sip_spec(settings),
        agi_host=settings.asterisk.agi_host or settings.agi.dial_host or "127.0.0.1",
        agi_port=settings.agi.port,
        records=records_db(settings),
    )


def sip_spec(settings: Settings) -> SipSpec:
    sip, c = settings.asterisk.sip, settings.asterisk.carrier
    carrier = None
    if c is not None:
        carrier = CarrierSpec(
            host=c.host, port=c.port, transport=c.transport, username=c.username,
            password=c.password, register=c.registration, caller_id=c.caller_id,
            from_domain=c.from_domain, qualify_s=c.qualify_s,
        )  # fmt: skip
    return SipSpec(
        bind=sip.bind, tcp=sip.tcp, tls_port=sip.tls_port,
        tls_cert_file=str(sip.tls_cert_file or ""), tls_key_file=str(sip.tls_key_file or ""),
        external_address=sip.external_address, local_nets=tuple(sip.local_nets),
        trunk_match=tuple(sip.trunk_match), carrier=carrier,
    )  # fmt: skip


def docker_available() -> bool:
    if os.environ.get("CTI_ASTERISK_WAY") == "chroot" or not shutil.which("docker"):
        return False
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


class DockerAsterisk:
    """The same instance in the image built from docker/asterisk/ (compose, host network)."""

    way = "docker"

    def __init__(self, base: Path, spec: InstanceSpec) -> None:
        self.base = base
        self.spec = spec
        self.project = f"cti-{spec.name}"

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    def _compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, CTI_ASTERISK_BASE=str(self.base))
        cmd = ["docker", "compose", "-f", str(DOCKER_DIR / "compose.yaml"), "-p", self.project]
        return subprocess.run(
            [*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    def start(self, *, tie_to_parent: bool) -> None:
        for sub in ("etc", "log/cdr-custom", "spool/monitor", "lib", "run"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.spec.check_exposure()
        render_dialplans(DIALPLANS, self.base / "etc", self.spec.placeholders())
        write_sip_files(self.base / "etc", self.spec.sip, self.spec.sip_port, "/etc/cti-asterisk")
        write_records_conf(self.base / "etc", self.spec.records)
        conf = ASTERISK_CONF.replace("{inner}/etc", "/etc/cti-asterisk")
        for key, path in (
            ("cache", "/var/cache/asterisk"),
            ("lib", "/var/lib/cti-asterisk"),
            ("spool", "/var/spool/cti-asterisk"),
            ("run", "/run/cti-asterisk"),
            ("log", "/var/log/cti-asterisk"),
        ):
            conf = conf.replace("{inner}/" + key, path)
        conf = conf.format(system_name=self.spec.system_name)
        (self.base / "etc" / "asterisk.conf").write_text(conf)
        proc = self._compose("up", "-d", "--build")
        if proc.returncode != 0:
            raise AsteriskError(f"docker compose up failed: {proc.stderr[-2000:]}")

    def cli(self, command: str, timeout: float = 15.0) -> str:
        if any(c in command for c in "\r\n"):
            raise AsteriskError("CLI command must be one line")
        proc = self._compose(
            "exec",
            "-T",
            "asterisk",
            "asterisk",
            "-C",
            "/etc/cti-asterisk/asterisk.conf",
            "-rx",
            command,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise AsteriskError(f"asterisk -rx {command!r}: {proc.stderr.strip()}")
        return proc.stdout

    def wait_fully_booted(self, timeout: float = 30.0) -> float:
        import time

        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                self.cli("core waitfullybooted", timeout=timeout)
                return time.monotonic() - start
            except (AsteriskError, subprocess.TimeoutExpired):
                time.sleep(0.5)
        raise AsteriskError(f"Asterisk (docker) not FullyBooted after {timeout:.0f} s")

    def is_running(self) -> bool:
        proc = self._compose("ps", "-q", "asterisk", timeout=30)
        return proc.returncode == 0 and bool(proc.stdout.strip())

    def stop(self, timeout: float = 10.0) -> None:
        self._compose("down", "--timeout", str(int(timeout)))


def make_runner(settings: Settings, data_dir: Path, progress: rootfs.Progress = print) -> Runner:
    """Docker where an engine answers, else the chroot root (built on first use)."""
    spec = spec_from_settings(settings)
    if docker_available():
        return DockerAsterisk(data_dir / "asterisk" / spec.name, spec)
    return ChrootAsterisk(rootfs.ensure_root(progress), spec, DIALPLANS)


def chroot_log_dir(settings: Settings) -> Path:
    """Where the chroot instance's logs are, without building anything."""
    return rootfs.root_path() / "srv" / "cti" / settings.asterisk.instance / "log"


def find_instance_dirs(settings: Settings, data_dir: Path = Path("var")) -> None:
    """Fill ``asterisk.log_dir`` / ``asterisk.etc_dir`` left unset with the local
    instance's directories where they exist (the chroot root's, else Docker's under
    ``data_dir``), without building or starting anything: the one way the daemon and
    every command find queue_log, the CDR file and the configuration directory."""
    a = settings.asterisk
    for base in (
        rootfs.root_path() / "srv" / "cti" / a.instance,
        data_dir.resolve() / "asterisk" / a.instance,
    ):
        if a.log_dir is None and (base / "log").is_dir():
            a.log_dir = base / "log"
        if a.etc_dir is None and (base / "etc").is_dir():
            a.etc_dir = base / "etc"
