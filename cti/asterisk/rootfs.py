"""Build and cache the Asterisk root filesystem (design.md §7).

The root is Debian sid's ``asterisk`` package and sounds, built once with mmdebstrap
(debootstrap as a fallback) into a zstd tarball under the cache directory, then extracted
next to it. The cache key hashes the package list and this recipe's version, so the root is
rebuilt only when either changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cti.asterisk import sounds

PACKAGES: tuple[str, ...] = (
    "asterisk",
    "asterisk-core-sounds-en-gsm",
    "asterisk-moh-opsound-gsm",
)
SUITE = "sid"
# bump when the build or post-processing steps below change
RECIPE_VERSION = 2
DEFAULT_MIRROR = "http://deb.debian.org/debian"

Progress = Callable[[str], None]


class RootfsError(RuntimeError):
    """The root filesystem could not be built; the message says what to install or fix."""


def cache_dir() -> Path:
    base = os.environ.get("CTI_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cti"
    )
    return Path(base)


def root_key(extra: tuple[str, ...] = ()) -> str:
    text = f"{SUITE}|{RECIPE_VERSION}|{','.join(sorted(PACKAGES))}"
    if extra:  # the same root plus packages (the daemon's container image: docs/deploy.md)
        text += "|" + ",".join(sorted(extra))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tarball_path(extra: tuple[str, ...] = ()) -> Path:
    return cache_dir() / f"asterisk-{root_key(extra)}.tar.zst"


def root_path() -> Path:
    return cache_dir() / f"asterisk-root-{root_key()}"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt already uses (deb822 or one-line sources)."""
    candidates: list[str] = []
    files = [*sorted(sources_dir.glob("sources.list.d/*.sources")), sources_dir / "sources.list"]
    files += sorted(sources_dir.glob("sources.list.d/*.list"))
    for path in files:
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace")
            candidates += re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
            candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
    for uri in candidates:
        if uri.startswith(("http://", "https://")) and re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RootfsError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def build_tarball(progress: Progress, extra: tuple[str, ...] = ()) -> Path:
    """Build the root (with the ``extra`` packages) into the cached tarball; returns its
    path."""
    if os.geteuid() != 0:
        raise RootfsError("building the Asterisk root needs root (debootstrap/chroot)")
    out = tarball_path(extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    tmp = out.with_suffix(".tmp.tar.zst")
    if shutil.which("mmdebstrap"):
        progress(f"building the Asterisk root with mmdebstrap from {mirror} (about 30 s)")
        _run(
            [
                "mmdebstrap",
                "--variant=essential",
                '--aptopt=Acquire::Check-Valid-Until "false"',
                "--include=" + ",".join(PACKAGES + extra),
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                SUITE,
                str(tmp),
                mirror,
            ],
            "mmdebstrap",
        )
    elif shutil.which("debootstrap"):
        progress(f"building the Asterisk root with debootstrap from {mirror} (about a minute)")
        with tempfile.TemporaryDirectory(dir=out.parent) as work:
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(PACKAGES + extra),
                    SUITE,
                    work,
                    mirror,
                ],
                "debootstrap",
            )
            _run(["tar", "--zstd", "-C", work, "-cf", str(tmp), "."], "tar")
    else:
        raise RootfsError(
            "neither mmdebstrap nor debootstrap is installed: apt-get install mmdebstrap zstd"
        )
    tmp.replace(out)
    return out


def _postprocess(root: Path) -> None:
    """What the recipe needs beyond the packages (design.md §7)."""
    host = socket.gethostname()
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost {host}\n::1 localhost\n")
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9), ("random", 1, 8)):
        node = dev / name
        if not node.exists():
            os.mknod(node, 0o666 | 0o020000, os.makedev(major, minor))
    (root / "srv/cti").mkdir(parents=True, exist_ok=True)


def ensure_root(progress: Progress = print) -> Path:
    """The extracted root, built and/or extracted on first use, with the sounds the
    product adds (cti.asterisk.sounds: rendered once, also into a root extracted before
    they existed). Safe across processes."""
    root = root_path()
    marker = root / ".cti-ready"
    if marker.exists() and sounds.installed(root):
        return root
    with _locked():
        if marker.exists():
            _add_sounds(root, progress)
            return root
        tarball = tarball_path()
        if not tarball.exists():
            build_tarball(progress)
        progress(f"extracting the Asterisk root into {root}")
        if root.exists():
            shutil.rmtree(root)
        tmp = root.with_name(root.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        _run(["tar", "--zstd", "-C", str(tmp), "-xf", str(tarball)], "extracting the root")
        _postprocess(tmp)
        tmp.rename(root)
        marker.write_text(root_key() + "\n")
        _add_sounds(root, progress)
    return root


def _add_sounds(root: Path, progress: Progress) -> None:
    if sounds.installed(root):
        return
    progress("rendering the Mandarin number sounds into the Asterisk root")
    if not sounds.install(root):
        progress("espeak-ng is not installed: Asterisk will say numbers in English only")
