#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f var/cti.pid ]; then
  pid=$(cat var/cti.pid)
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f var/cti.pid
  echo "daemon stopped"
fi
[ -x .venv/bin/cti ] && .venv/bin/cti asterisk down || true
