#!/bin/sh
# check.sh - run the checks expected before a change is merged.
#
# Usage: scripts/check.sh [PYTEST_ARGS...]
#
# Steps, stopping at the first failure:
#   1. byte-compile every module to catch syntax errors early;
#   2. run the test suite, passing any extra arguments on to pytest.
#
# Set PYTHON to pick a specific interpreter (default: python3).
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"

cd "$root"
echo "==> compiling stationkit"
"$python" -m compileall -q stationkit
echo "==> running tests"
"$python" -m pytest -q "$@"
