"""Write the 0.3 results-store fixture (tests/fixtures/store_0.3/) with the 0.3 code.

The fixture holds what mentor_ray 0.3 (commit 9529194) recorded for LightGCN and MENTOR runs on synth-tiny:
its run files (run ids and config hashes over every model key, as 0.3 computed them), one sweep journal entry
and one ``train --storage`` run folder name. tests/test_registry.py reads it with today's code. Run, from a
checkout of 0.3 (``git worktree add /tmp/old03 9529194``):

    cd /tmp/old03 && /work/main/.venv/bin/python /work/main/tools/make_store_03.py /work/main/tests/fixtures/store_0.3
"""

import json
import sys
from pathlib import Path

from mentor_ray.common.config import make_config, validate
from mentor_ray.common.names import KS, METRIC_KINDS
from mentor_ray.report import results
from mentor_ray.training.ray_train import run_name

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
metrics = {f"{m}@{k}": 0.1 + 0.01 * k for m in METRIC_KINDS for k in KS}
names = {}
for variant, r20 in (("lightgcn", 0.12), ("mentor", 0.15)):
    for seed in (0, 1):
        flags = {"variant": variant, "dataset": "synth-tiny", "seed": seed, "max_epochs": 5}
        cfg = make_config(flags=flags).model_dump()
        summary = {"dataset": "synth-tiny", "synthetic": True, "variant": variant, "seed": seed, "best_epoch": 3,
                   "epochs_run": 5, "valid": {**metrics, "recall@20": r20}, "test": {**metrics, "recall@20": r20},
                   "seconds_per_epoch": 1.0, "peak_rss_mb": 500.0, "config": cfg, "status": "completed"}
        results.record(out, summary, "final", "lightgcn_grid" if variant == "lightgcn" else "paper_grid")
        names[f"{variant}-s{seed}"] = run_name(validate(cfg))
        if seed == 0:
            journal = out / ".journal" / f"sweep-{variant}"
            journal.mkdir(parents=True, exist_ok=True)
            key = f"{variant}-{results.config_hash(cfg)}-s{seed}"
            (journal / f"{key}.json").write_text(json.dumps(summary, sort_keys=True))
(out / "run_names.json").write_text(json.dumps(names, indent=1, sort_keys=True) + "\n")
print(sorted(p.name for p in out.rglob("*") if p.is_file()))
