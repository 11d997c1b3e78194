#!/usr/bin/env bash
# README command (2): set up .venv, then run the test suite (slow tests excluded; add -m slow for them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
