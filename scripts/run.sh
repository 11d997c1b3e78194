#!/usr/bin/env bash
# README command (1): set up .venv (scripts/setup.sh: MENTOR_RAY_PROFILE, MENTOR_RAY_VENV), then run the main job on the embedded default dataset.
# The main job is the sweep: on synth-small (generated, and its graphs built, on first use) Ray Tune +
# Optuna search the quickstart space (tune_spaces/quickstart.yaml; its 8 points: a grid), the best point on validation is
# re-run over 3 seeds, every MENTOR variant and baseline is run at that point, and the leaderboard
# (plain text on the terminal; md/csv/tex/html and plots under runs/quickstart/leaderboard) closes it.
# Re-running continues (--resume): finished runs are reused, so it reprints the leaderboard quickly;
# delete runs/quickstart to start over. --quiet: mentor_ray's progress lines, not Tune's tables. Extra arguments go to
# `python -m mentor_ray.tune`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec "${MENTOR_RAY_VENV:-.venv}/bin/python" -m mentor_ray.tune --dataset synth-small --space quickstart --num-samples 8 --seeds 3 \
    --ablation --results runs/quickstart/results --storage runs/quickstart/tune \
    --leaderboard runs/quickstart/leaderboard --resume --quiet "$@"
