#!/usr/bin/env bash
# Installs Curvature Explorer into ./.venv (first run: about a minute) and starts the app.
# Extra arguments go to `streamlit run`, e.g. ./scripts/app.sh --server.port 8600
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv requirements.txt
exec .venv/bin/python -m streamlit run app.py \
  --server.headless true \
  --server.fileWatcherType none \
  --browser.gatherUsageStats false \
  "$@"
