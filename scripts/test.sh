#!/usr/bin/env bash
# Installs the test dependencies into ./.venv and runs lint plus the whole test suite
# (slow and real-browser tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv requirements-test.txt
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
exec .venv/bin/python -m pytest "$@"
