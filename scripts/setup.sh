#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned stack and mentor_ray installed in editable mode.
# Idempotent: when pyproject.toml and requirements/constraints.txt are unchanged since the last
# successful install, it only checks a stamp file and returns.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "error: Python 3.11 not found (DGL 2.1 and torch 2.2.1 need it); install it or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi

stamp=.venv/.mentor_ray-installed
want=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] .venv is up to date"
  exit 0
fi

echo "[setup] installing the pinned stack into .venv (first time: about 3 minutes; torch brings ~2.5 GB of CUDA libraries)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip "setuptools<70" wheel
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt -e ".[test]"
.venv/bin/python -c "import mentor_ray, torch, dgl, ray, optuna, pyarrow; print('[setup] torch', torch.__version__, '| dgl', dgl.__version__, '| ray', ray.__version__)"
echo "$want" > "$stamp"
echo "[setup] done"
