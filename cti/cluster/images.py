"""Container images of Asterisk and of the daemon, with podman (docs/deploy.md).

No registry is needed: both images start from the Debian sid root that the chroot runner
builds (:mod:`cti.asterisk.rootfs`).

- ``cti-asterisk:<key>-s<n>``: ``podman import`` of that root's tarball
  (``cti-asterisk-root:<key>``) plus the sounds the runner adds to its root
  (:mod:`cti.asterisk.sounds`, version ``n``).
- ``cti-base:<key>``: the same root built with :data:`DAEMON_PACKAGES` and
  :data:`SERVICE_PACKAGES` added (Python, ffmpeg, espeak-ng, PostgreSQL, nats-server: the
  root has no apt to add them later); deploy/compose.yaml's ``postgres`` and ``nats``
  services run it.
- ``cti-daemon:<hash>``: deploy/Dockerfile on ``cti-base:<key>``, with this checkout
  (tracked and untracked files, not ignored ones) and the browser libraries of
  node_modules as its build context.

Images are built once and reused while their inputs are unchanged (the tags carry the
root's key and the context's hash). Podman runs with :data:`CONTAINERS_CONF`
(``deploy/containers.conf``: runc, cgroupfs, no default ulimits), which is what works on
machines like ours (crun fails on their cgroup setup).

``python -m cti.cluster.images`` builds them and prints their names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from cti.asterisk import rootfs, sounds

__all__ = [
    "CONTAINERS_CONF", "DAEMON_PACKAGES", "SERVICE_PACKAGES", "asterisk_image", "daemon_image",
    "podman", "services_image",
]  # fmt: skip

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEPLOY_DIR = PROJECT_DIR / "deploy"
CONTAINERS_CONF = DEPLOY_DIR / "containers.conf"
# what the daemon runs besides Python: ffmpeg (prompt and recording transcoding), espeak-ng
# (the IVR's text-to-speech prompts)
DAEMON_PACKAGES = ("python3", "python3-venv", "ca-certificates", "ffmpeg", "espeak-ng")
# the stack's services (deploy/compose.yaml runs them from the same image: one root to
# build, not three)
SERVICE_PACKAGES = ("postgresql", "nats-server")

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be built; the message says why."""


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("podman")
    if exe is None:
        raise ImageError("podman is not installed (apt-get install podman runc)")
    proc = subprocess.run(
        [exe, *args], capture_output=True, text=True, env=podman_env(), timeout=timeout,
        check=False,
    )  # fmt: skip
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise ImageError(f"podman {args[0]} failed (exit {proc.returncode}):\n{tail}")
    return proc


def _exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def _import(tarball: Path, image: str) -> None:
    exe = shutil.which("podman") or "podman"
    with subprocess.Popen(["zstd", "-dc", str(tarball)], stdout=subprocess.PIPE) as unzip:
        proc = subprocess.run(
            [exe, "import", "-", image], stdin=unzip.stdout, capture_output=True, text=True,
            env=podman_env(), check=False,
        )  # fmt: skip
    if proc.returncode != 0 or unzip.returncode != 0:
        raise ImageError(f"podman import of {tarball} failed: {proc.stderr[-2000:]}")


def _root_image(name: str, extra: tuple[str, ...], progress: Progress) -> str:
    image = f"localhost/{name}:{rootfs.root_key(extra)}"
    if not _exists(image):
        tarball = rootfs.tarball_path(extra)
        if not tarball.exists():
            rootfs.build_tarball(progress, extra)
        progress(f"podman import {tarball.name} as {image}")
        _import(tarball, image)
    podman("tag", image, f"localhost/{name}:latest")
    return image


def asterisk_image(progress: Progress = print) -> str:
    """The Asterisk image: the chroot runner's root, imported, with the sounds the runner
    adds to it (cti.asterisk.sounds: the Mandarin numbers) as one more layer."""
    root = _root_image("cti-asterisk-root", (), progress)
    image = f"localhost/cti-asterisk:{rootfs.root_key()}-s{sounds.VERSION}"
    if not _exists(image):
        with tempfile.TemporaryDirectory(prefix="cti-sounds-") as tmp:
            context = Path(tmp)
            if not sounds.install(context):
                raise ImageError("espeak-ng is not installed: the Mandarin number sounds")
            (context / "Containerfile").write_text(f"FROM {root}\nCOPY usr /usr\n")
            progress(f"podman build {image} (the root and its sounds)")
            podman("build", "--pull=never", "-t", image, str(context))
    podman("tag", image, "localhost/cti-asterisk:latest")
    return image


def services_image(progress: Progress = print) -> str:
    """The root with Python, PostgreSQL and NATS (``localhost/cti-base``): the daemon
    image's base, and the image of compose's ``postgres`` and ``nats`` services."""
    return _root_image("cti-base", DAEMON_PACKAGES + SERVICE_PACKAGES, progress)


def _context_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT_DIR,
        capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    names = [n for n in out.split("\0") if n and not n.startswith(("node_modules", ".venv"))]
    return sorted(n for n in names if (PROJECT_DIR / n).is_file())


def _context_hash(files: list[str]) -> str:
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0")
        h.update((PROJECT_DIR / name).read_bytes())
    lock = PROJECT_DIR / "package-lock.json"
    if lock.exists():
        h.update(lock.read_bytes())
    return h.hexdigest()[:12]


def daemon_image(progress: Progress = print) -> str:
    """The daemon image: deploy/Dockerfile on the root with Python, this checkout."""
    base = services_image(progress)
    files = _context_files()
    image = f"localhost/cti-daemon:{_context_hash(files)}"
    if _exists(image):
        return image
    with tempfile.TemporaryDirectory(prefix="cti-image-") as tmp:
        ctx = Path(tmp)
        for name in files:
            dest = ctx / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_DIR / name, dest)
        modules = PROJECT_DIR / "node_modules"
        if modules.exists():
            shutil.copytree(modules, ctx / "node_modules", symlinks=False)
        progress(f"podman build {image} (on {base})")
        # docker format: the OCI format has no HEALTHCHECK (podman drops it, with a warning)
        podman(
            "build", "--format", "docker", "--network", "host", *_host_ca_mount(),
            "--build-arg", f"BASE={base}",
            "-f", str(ctx / "deploy" / "Dockerfile"), "-t", image, str(ctx), timeout=1800,
        )  # fmt: skip
    podman("tag", image, "localhost/cti-daemon:latest")
    _forget_older("localhost/cti-daemon", keep=image)
    return image


def _forget_older(repository: str, keep: str) -> None:
    """Earlier builds of ``repository`` (each checkout change makes one) and their layers."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False)
    for name in listed.stdout.split():
        if name not in (keep, f"{repository}:latest"):
            podman("rmi", name, check=False)
    podman("image", "prune", "-f", check=False)


def _host_ca_mount() -> list[str]:
    """The host's CA bundle over the image's while building (only then: a volume is not
    part of the image), so pip trusts what this host trusts (a site's TLS proxy)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return ["--volume", f"{candidate}:/etc/ssl/certs/ca-certificates.crt:ro"]
    return []


if __name__ == "__main__":
    print(asterisk_image())
    print(services_image())
    print(daemon_image())
