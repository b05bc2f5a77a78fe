#!/usr/bin/env bash
# The README's second command: install what the tests need, run them all (real Asterisk,
# SQLite and PostgreSQL), then the linters (ruff check, ruff format --check, mypy).
# pytest's "no tests collected" is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi
[ $rc -eq 0 ] || exit $rc
echo "==> ruff"; .venv/bin/ruff check . || exit 1
echo "==> ruff format"; .venv/bin/ruff format --check . || exit 1
echo "==> mypy"; .venv/bin/mypy || exit 1
