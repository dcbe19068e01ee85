# Shared by app.sh and test.sh: create ./.venv and install a requirements file into it.
# torch is pinned to 2.13.0: its CPU wheel is what these machines carry, and a looser
# request can pull a multi-GB CUDA build. Elsewhere, PIP_EXTRA_INDEX_URL=
# https://download.pytorch.org/whl/cpu selects the CPU build of the same version.
ensure_venv() {
  local requirements="$1"
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  local stamp=".venv/.installed-$(basename "$requirements")"
  if [ ! -f "$stamp" ] || [ "$requirements" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
      torch==2.13.0 -r "$requirements"
    touch "$stamp"
  fi
}
