#!/usr/bin/env bash
# Install what the project needs on a Debian machine (idempotent, quick when done before):
# Debian packages for building/running Asterisk and for the tests, and the Python venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# fonts-wqy-zenhei: Chinese text in the pages under headless chromium (screenshots, tests)
# podman + runc: the container images of Asterisk and the daemon (docs/deploy.md)
# iproute2: network namespaces for the cluster partition test
# dovecot-imapd: the IMAP server the inbound-mail tests start with their own configuration
#   (tests/acceptance/imap_server.py; a system dovecot the package may start is not used)
DEB_PACKAGES=(mmdebstrap debootstrap zstd util-linux sip-tester espeak-ng ffmpeg sox chromium
  fonts-wqy-zenhei podman runc iproute2 dovecot-imapd)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# browser libraries from the npm registry (package.json + package-lock.json; served under
# /vendor/ by the daemon, never committed): Debian's npm when the machine has none
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> installing browser libraries (npm ci)"
  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.cti-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
