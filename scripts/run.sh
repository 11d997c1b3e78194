#!/usr/bin/env bash
# README command (1): set up .venv, then run the main job on the embedded default dataset.
# Today's main job trains MENTOR on synth-small (generated and its graphs built on first use) to
# early stopping or 30 epochs and prints the per-epoch log and the validation/test table.
# Extra arguments go to the trainer, e.g. --variant lightgcn or max_epochs=5.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m mentor_ray.train --dataset synth-small --variant mentor --max-epochs 30 lr=1e-3 "$@"
