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
# the IVR: the example menus; rendered prompts are played by Asterisk from the daemon's
# HTTP (media_url, decision 0032: the path a node on another host takes too), the
# Mandarin numbers from the Asterisk root
if ! grep -q '^\[ivr\]' var/cti.toml; then
  mkdir -p var/ivr
  [ -f var/ivr/menus.toml ] || cp ivr/menus.example.toml var/ivr/menus.toml
  cat >> var/cti.toml <<EOT

[ivr]
menus = "var/ivr/menus.toml"
prompt_dir = "var/ivr/prompts"
media_url = "auto"
EOT
fi
# the demo's customers include a US number: let agents click-to-call it (the dial policy
# otherwise allows only the site's own country; docs/decisions/0019)
if ! grep -q '^\[dial\]' var/cti.toml; then
  cat >> var/cti.toml <<EOT

[dial]
countries = ["CN", "US"]
EOT
fi
# this script's own API token (the pages sign in with the passwords below)
if [ ! -s var/demo-token ]; then
  $CTI token create demo-script --role supervisor > var/demo-token
  chmod 600 var/demo-token
fi
TOKEN=$(cat var/demo-token)
# demo data, once: customers the demo callers are, two agents whose phones are simulated
if [ ! -f var/demo-seeded ]; then
  echo "==> seeding demo customers and agents"
  $CTI crm import scripts/demo/customers.csv --as demo
  $CTI acd agent-set agent101 --display-name "王芳 Wang Fang" --device local:101 \
    --skill support=0 --skill sales=1
  $CTI acd agent-set agent102 --display-name "Tom Baker" --device local:102 \
    --skill support=0
  # each has a browser phone too (shown in the console; the desktop can register it)
  $CTI phones add agent101 --label "demo browser phone" >/dev/null
  $CTI phones add agent102 --label "demo browser phone" >/dev/null
  touch var/demo-seeded
fi
# people who sign in: an admin, a supervisor and the two demo agents, with generated
# passwords kept (once) in var/demo-passwords
touch var/demo-passwords && chmod 600 var/demo-passwords
person() {  # login role [agent]
  if ! grep -q "^$1 " var/demo-passwords; then
    # a login made before without a kept password gets a new one
    pw=$($CTI user create "$1" --role "$2" ${3:+--agent "$3"} --generate 2>/dev/null) \
      || pw=$($CTI user password "$1" --generate)
    echo "$1 $pw" >> var/demo-passwords
  fi
}
person admin admin
person supervisor supervisor
person agent101 agent agent101
person agent102 agent agent102
pw() { sed -n "s/^$1 //p" var/demo-passwords; }
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
echo "==> logging the demo agents in"
for agent in agent101 agent102; do
  # on their simulated device (it comes after their provisioned phones), so the demo
  # calls are answered without a browser open
  device=$($CTI phones list --agent "$agent" | wc -l)
  curl -fsS -o /dev/null -X POST -H "Authorization: Bearer ${TOKEN}" \
    -H "Content-Type: application/json" -d "{\"status\": \"available\", \"device\": ${device}}" \
    "http://127.0.0.1:${HTTP_PORT}/api/v1/acd/agents/${agent}/status" \
    || echo "    (could not log $agent in: see var/log/cti.log)"
done
echo "==> demo calls are being placed (callers listen to the menu, then wait for an agent);"
echo "    waiting up to 45 s for the first ones to finish"
for i in 1 2 3 4 5 6 7 8 9; do
  sleep 5
  completed=$(grep -c 'call completed' var/log/cti.log || true)
  echo "    ${completed} call(s) completed so far"
  [ "${completed}" -ge 3 ] && break
done
echo "==> recent log lines"
grep -E 'call completed|demo call placed|AMI connected' var/log/cti.log | tail -n 6 || true
echo "==> GET /api/v1/calls?limit=3"
curl -fsS -H "Authorization: Bearer ${TOKEN}" "http://127.0.0.1:${HTTP_PORT}/api/v1/calls?limit=3" | cut -c1-600
echo
echo "==> cti calls --limit 5"
$CTI calls --limit 5
cat <<EOT

The call center is running. Open the pages and sign in (login / password):
  agent desktop   http://127.0.0.1:${HTTP_PORT}/desktop/     agent101 / $(pw agent101)
                                                          agent102 / $(pw agent102)
  wallboard       http://127.0.0.1:${HTTP_PORT}/wallboard/   supervisor / $(pw supervisor)
  reports         http://127.0.0.1:${HTTP_PORT}/reports/
  recordings      http://127.0.0.1:${HTTP_PORT}/supervisor/recordings/
  console         http://127.0.0.1:${HTTP_PORT}/console/    admin / $(pw admin)  (supervisor too)
  CRM workspace   http://127.0.0.1:${HTTP_PORT}/crm/        (dashboard.html, opportunities.html)
  outbound        http://127.0.0.1:${HTTP_PORT}/outbound/   (campaigns; agents preview leads)
  QA scoring      http://127.0.0.1:${HTTP_PORT}/qa/
  API docs        http://127.0.0.1:${HTTP_PORT}/docs/api/   (API: header Authorization: Bearer <token>)
  health          http://127.0.0.1:${HTTP_PORT}/healthz
  metrics         http://127.0.0.1:${HTTP_PORT}/metrics
  passwords       var/demo-passwords; API token of this script: var/demo-token
  logs            var/log/cti.log
  Asterisk CLI    .venv/bin/cti asterisk cli core show channels
Stop everything with: make down
EOT
