#!/usr/bin/env bash
# The README's second command: install what the tests need, run them all (real Asterisk,
# SQLite and PostgreSQL), then the linters (ruff check, ruff format --check, mypy).
# pytest's "no tests collected" is a failure; any failing part fails the run.
#
# Without arguments the suite runs as its two parts at once, each a pytest process of its
# own (tests/conftest.py --part, decision 0034): the tests on the session's Asterisk, shown
# as they run, and the others followed by the linters, shown when both are done. With
# arguments: one pytest with them, then the linters.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh || exit 1

# pytest [ARGS...]: its exit status, with "no tests collected" (5) a failure
run_pytest() {
  .venv/bin/python -m pytest "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "pytest collected no tests: failing"; return 1; fi
  return $rc
}

linters() {
  echo "==> ruff"; .venv/bin/ruff check . || return 1
  echo "==> ruff format"; .venv/bin/ruff format --check . || return 1
  echo "==> mypy"; .venv/bin/mypy || return 1
}

if [ $# -gt 0 ]; then
  run_pytest "$@" || exit $?
  linters || exit 1
  exit 0
fi

others_log=$(mktemp /tmp/cti-test-others.XXXXXX)
(
  run_pytest --part others
  rc=$?
  linters || [ $rc -ne 0 ] || rc=1
  exit $rc
) >"$others_log" 2>&1 &
others=$!
# interrupted (Ctrl-C, a timeout): the other part stops too (started with &, it ignores SIGINT)
trap 'pkill -TERM -P "$others" 2>/dev/null; kill "$others" 2>/dev/null' EXIT
trap 'exit 130' INT TERM

echo "==> the tests on the session's Asterisk (the other tests and the linters run meanwhile:"
echo "    their output follows)"
run_pytest --part asterisk
rc_asterisk=$?
wait "$others"
rc_others=$?
trap - EXIT INT TERM
echo
echo "==> the other tests, then the linters"
cat "$others_log"
rm -f "$others_log"
echo
echo "==> tests on the session's Asterisk: exit $rc_asterisk; the others and the linters: exit $rc_others"
[ $rc_asterisk -eq 0 ] || exit $rc_asterisk
exit $rc_others
