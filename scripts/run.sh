#!/usr/bin/env bash
# README command (1): set up .venv, then run the main job on the embedded default dataset.
# Today's main job loads synth-small (generated on first use) and builds its graphs, printing the
# dataset statistics and the graph summary. Extra arguments go to the job, e.g. --dataset synth-tiny.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m mentor_ray.graphs build --dataset synth-small "$@"
