#!/usr/bin/env bash
# The README's second command: set up everything, then lint, type-check and run the
# whole test suite. Extra arguments go to pytest (e.g. scripts/test.sh -k sampler).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
# Exit code 5 means "no tests collected" (e.g. a -k that matches nothing): not a failure
# of the code, but say so loudly.
if [ "$code" = 5 ]; then
  echo "pytest collected no tests" >&2
  exit 0
fi
exit "$code"
