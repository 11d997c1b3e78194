#!/usr/bin/env bash
# Create (or reuse) a virtual environment with one of the two install profiles and mentor_ray
# installed in editable mode.
#
#   MENTOR_RAY_PROFILE  pinned | current | auto (default)
#       pinned   DGL 2.1.0 builds the graphs; torch 2.2.1, numpy 1.26, pyarrow 21; Python 3.11 or 3.12.
#                Exact versions: requirements/pinned.txt.
#       current  torch >= 2.4 up to the newest release, numpy 2, current pyarrow; Python 3.11-3.13;
#                no DGL (mentor_ray's own builder makes the same graphs). Exact versions CI tests:
#                requirements/current.txt.
#       auto     the profile the environment already holds; on a new one, pinned where a Python 3.11
#                or 3.12 is found, otherwise current.
#   MENTOR_RAY_VENV     the environment's folder (default .venv)
#   PYTHON              the interpreter to create it with (default: the first suitable one on PATH)
#
# Idempotent: when the profile, pyproject.toml and the profile's constraints are unchanged since the
# last successful install, it only checks a stamp file and returns. Asking for the other profile
# recreates the environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROFILE="${MENTOR_RAY_PROFILE:-auto}"
VENV="${MENTOR_RAY_VENV:-.venv}"
case "$PROFILE" in
  auto|pinned|current) ;;
  *) echo "error: MENTOR_RAY_PROFILE=$PROFILE; allowed: pinned, current, auto" >&2; exit 2 ;;
esac

# minor versions of Python 3 each profile installs on
allowed_minors() { if [ "$1" = pinned ]; then echo "11 12"; else echo "11 12 13"; fi; }

python_minor() {  # the 3.x minor version of interpreter $1, or nothing
  "$1" -c 'import sys; print(sys.version_info[1] if sys.version_info[0] == 3 else "")' 2>/dev/null || true
}

find_python() {  # the first interpreter on PATH (or $PYTHON) that profile $1 supports
  local candidates="python3.11 python3.12 python3.13 python3 python" c minor
  [ -n "${PYTHON:-}" ] && candidates="$PYTHON"
  for c in $candidates; do
    command -v "$c" >/dev/null 2>&1 || continue
    minor=$(python_minor "$c")
    for m in $(allowed_minors "$1"); do
      if [ "$minor" = "$m" ]; then echo "$c"; return 0; fi
    done
  done
  return 1
}

held=""
[ -f "$VENV/.mentor_ray-profile" ] && held=$(cat "$VENV/.mentor_ray-profile")
if [ "$PROFILE" = auto ]; then
  if [ -n "$held" ]; then PROFILE="$held"
  elif find_python pinned >/dev/null; then PROFILE=pinned
  else PROFILE=current
  fi
fi

if [ -x "$VENV/bin/python" ] && [ "$held" != "$PROFILE" ]; then
  echo "[setup] $VENV holds the ${held:-an unknown} profile, not $PROFILE: recreating it"
  rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY=$(find_python "$PROFILE"); then
    want=$(allowed_minors "$PROFILE" | sed 's/\([0-9]*\)/3.\1/g; s/ /, /g')
    hint=""
    [ "$PROFILE" = pinned ] && hint=", or choose MENTOR_RAY_PROFILE=current (Python 3.11-3.13)"
    echo "error: no Python ${want} found${PYTHON:+ (PYTHON=$PYTHON)} for the $PROFILE profile; install one" \
         "or set PYTHON=/path/to/python3.x${hint}" >&2
    exit 2
  fi
  echo "[setup] creating $VENV ($PROFILE profile) with $("$PY" --version)"
  "$PY" -m venv "$VENV"
  echo "$PROFILE" > "$VENV/.mentor_ray-profile"
fi

constraints="requirements/$PROFILE.txt"
stamp="$VENV/.mentor_ray-installed"
want=$(printf '%s\n' "$PROFILE" | cat - pyproject.toml "$constraints" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] $VENV is up to date ($PROFILE profile)"
  exit 0
fi

# pip's own output, one line per package it collects or downloads and a last line of what it installed,
# instead of minutes of silence (-q) or pages of progress bars; from pip's first error on, everything
# (pipefail keeps its exit status). While pip works without a line (a large download, unpacking and
# installing), a line every MENTOR_RAY_SETUP_TICK seconds (default 20) says it is still at it.
pip_install() {
  local start=$SECONDS tick="${MENTOR_RAY_SETUP_TICK:-20}" ticker rc=0
  # the ticker ends with the script however it ends (a background job of a script ignores Ctrl-C)
  ( while sleep "$tick"; do kill -0 $$ 2>/dev/null || exit 0
      echo "[setup]   ... pip still working ($((SECONDS - start)) s)"; done ) &
  ticker=$!
  trap 'kill "$ticker" 2>/dev/null || true' EXIT
  "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "$@" 2>&1 | awk '
    /^Collecting / { n++; printf "[setup]   %3d  %s\n", n, $2; fflush() }
    /^ *Downloading / { printf "[setup]        downloading %s %s %s\n", $2, $(NF-1), $NF; fflush() }
    /^Installing collected packages/ { print "[setup]   installing the collected packages"; fflush() }
    /^Successfully installed/ { print "[setup]   installed " NF - 2 " packages"; fflush() }
    /^(ERROR|error)[: ]/, 0 { print > "/dev/stderr" }' || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  trap - EXIT
  return "$rc"
}
echo "[setup] upgrading pip, setuptools and wheel"
pip_install -q --upgrade pip "setuptools<70" wheel
if [ "$PROFILE" = pinned ]; then
  echo "[setup] installing the pinned profile into $VENV (first time: about 3 minutes; torch 2.2.1 brings ~2.5 GB of CUDA libraries)"
  pip_install -c "$constraints" -e ".[test,report,dgl]"
  check="import dgl; print('[setup] torch', torch.__version__, '| numpy', numpy.__version__, '| dgl', dgl.__version__, '| ray', ray.__version__)"
else
  echo "[setup] installing the current profile into $VENV (torch $(sed -n 's/^torch==//p' "$constraints"), numpy 2, no DGL)"
  pip_install -c "$constraints" -e ".[test,report]"
  check="print('[setup] torch', torch.__version__, '| numpy', numpy.__version__, '| ray', ray.__version__, '| graphs: built-in builder')"
fi
"$VENV/bin/python" -c "import mentor_ray, numpy, torch, ray, optuna, pyarrow; $check"
echo "$want" > "$stamp"
echo "[setup] done"
