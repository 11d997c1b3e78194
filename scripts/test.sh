#!/usr/bin/env bash
# README command (2): set up .venv (scripts/setup.sh: MENTOR_RAY_PROFILE, MENTOR_RAY_VENV), then run the test suite (slow tests excluded; add -m slow for them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec "${MENTOR_RAY_VENV:-.venv}/bin/python" -m pytest "$@"
