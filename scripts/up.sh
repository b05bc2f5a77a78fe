#!/usr/bin/env bash
# The README's first command: set up, start a real Asterisk and the daemon on SQLite with
# demo traffic, show calls flowing, and print where to look.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
CTI=.venv/bin/cti
mkdir -p var/log
$CTI setup
$CTI asterisk up
$CTI db upgrade
if [ ! -s var/demo-token ]; then
  $CTI token create demo-supervisor --role supervisor > var/demo-token
  chmod 600 var/demo-token
fi
TOKEN=$(cat var/demo-token)
HTTP_PORT=$(sed -n '/^\[http\]/,/^\[/s/^port *= *//p' var/cti.toml | head -1)

if [ -f var/cti.pid ] && kill -0 "$(cat var/cti.pid)" 2>/dev/null; then
  echo "==> daemon already running (pid $(cat var/cti.pid))"
else
  echo "==> starting the cti daemon with demo traffic (log: var/log/cti.log)"
  nohup $CTI run --demo >> var/log/cti.log 2>&1 &
  echo $! > var/cti.pid
fi
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:${HTTP_PORT}/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "==> demo calls are being placed; waiting 25 s for some to finish"
for i in 1 2 3 4 5; do
  sleep 5
  echo "    $(grep -c 'call completed' var/log/cti.log || true) call(s) completed so far"
done
echo "==> recent log lines"
grep -E 'call completed|demo call placed|AMI connected' var/log/cti.log | tail -n 6 || true
echo "==> GET /api/v1/calls?limit=3"
curl -fsS -H "Authorization: Bearer ${TOKEN}" "http://127.0.0.1:${HTTP_PORT}/api/v1/calls?limit=3" | cut -c1-600
echo
echo "==> cti calls --limit 5"
$CTI calls --limit 5
cat <<EOT

The call center is running.
  API      http://127.0.0.1:${HTTP_PORT}/api/v1/calls   (header: Authorization: Bearer <token>)
  health   http://127.0.0.1:${HTTP_PORT}/healthz
  metrics  http://127.0.0.1:${HTTP_PORT}/metrics
  token    ${TOKEN}   (also in var/demo-token)
  logs     var/log/cti.log
  Asterisk .venv/bin/cti asterisk cli core show channels
Stop everything with: make down
EOT
