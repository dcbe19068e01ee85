#!/usr/bin/env bash
# Installs Curvature Explorer into ./.venv (first run: about a minute) and starts the app.
# Extra arguments go to `streamlit run`, e.g. ./scripts/app.sh --server.port 8600
# It listens on 127.0.0.1 only (this machine); to let others reach it, say so:
# EXPLORER_ADDRESS=0.0.0.0 ./scripts/app.sh, or ./scripts/app.sh --server.address 0.0.0.0
# (a later --server.address wins); never with EXPLORER_ALLOW_CODE_UPLOAD=1 (README).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv requirements.txt
exec .venv/bin/python -m streamlit run app.py \
  --server.headless true \
  --server.fileWatcherType none \
  --browser.gatherUsageStats false \
  --server.address "${EXPLORER_ADDRESS:-127.0.0.1}" \
  "$@"
