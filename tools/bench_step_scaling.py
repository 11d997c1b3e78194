"""MENTOR's training step at world size 1 against 2 without Ray: plain torch.distributed (gloo, one thread per rank,
spawned processes), the same Trainer, the same split of Eq. 21 as `bench ray`, over a few steps instead of whole
epochs. Comparing its speed-up with `bench ray`'s on the same machine separates what Ray's own processes (the
driver, raylet, GCS, dashboard, log monitor: all on the same cores here) cost a 2-worker run from what the
training step itself loses. Not imported by the package (docs/benchmarks.md, #29).

    # dataset, data root ("-": none), scope, warm-up steps, timed steps[, key=value settings for every rank]
    python tools/bench_step_scaling.py tiktok ../shared/datasets all 2 12
    python tools/bench_step_scaling.py tiktok ../shared/datasets all 2 12 infonce_chunk=128
    python tools/bench_step_scaling.py synth-tiny - all 1 3
"""

import json
import sys
import tempfile
import time
from pathlib import Path


def rank_main(rank: int, world: int, result: str, dataset: str, root: str | None, scope: str, warmup: int,
              steps: int, extra: dict[str, str]) -> None:
    import os

    import torch

    from mentor_ray.benchmarks.gpucheck import _config, _init_group, _teardown, _write
    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs
    from mentor_ray.training.trainer import STEP_TIMER_ENV, Trainer

    os.environ[STEP_TIMER_ENV] = "1"  # the all-reduce waited for and timed inside backward, as in `bench ray`
    torch.set_num_threads(1)
    dev = _init_group(rank, world, result, "cpu") if world > 1 else torch.device("cpu")
    ds = load_dataset(dataset, root)
    cfg = _config("mentor", scope, "cpu", dataset, root, **extra)
    trainer = Trainer(cfg, ds, rank=rank, world_size=world, device=dev,
                      graphs=build_graphs(ds, k=cfg.knn_k, knn_norm=cfg.knn_norm))
    trainer.progress_seconds = None
    every, ran = trainer.sampler.batches, {}

    def first(epoch, *a, **k):  # the epoch's first steps only
        ran[epoch] = len(out := every(epoch, *a, **k)[: warmup if epoch == 0 else steps])
        return out

    trainer.sampler.batches = first
    trainer.step_timer = False
    if warmup:
        trainer.train_epoch(0)
    trainer.step_timer = True
    t0 = time.perf_counter()
    trainer.train_epoch(1)
    seconds = time.perf_counter() - t0
    mine = {"rank": rank, "steps": ran[1], "ms_per_step": 1000 * seconds / ran[1],
            "parts_ms": {k: 1000 * v for k, v in trainer.step_parts[-1].items()}}
    Path(f"{result}.rank{rank}").write_text(json.dumps(mine))
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        ranks = [json.loads(Path(f"{result}.rank{r}").read_text()) for r in range(world)]
        _write(result, {"world": world, "ranks": ranks, "done": True})
    if world > 1:
        _teardown(trainer)


def main() -> None:
    from mentor_ray.benchmarks.gpucheck import _config, run_ranks
    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs

    dataset, root, scope, warmup, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    root = None if root == "-" else root
    extra = dict(a.split("=", 1) for a in sys.argv[6:])
    ds = load_dataset(dataset, root)  # generated and graphs cached before the ranks read them
    build_graphs(ds, k=_config("mentor", scope, "cpu", dataset, root, **extra).knn_k)
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world in (1, 2):
            got = run_ranks(rank_main, world, Path(tmp) / f"w{world}.json",
                            (dataset, root, scope, warmup, steps, extra))
            if not got.get("done"):
                sys.exit(f"world size {world}: {got.get('watchdog')}: {got.get('error')}")
            found[world] = got
    one = found[1]["ranks"][0]["ms_per_step"]
    print(f"{dataset}, {scope} scope, {found[1]['ranks'][0]['steps']} timed steps after {warmup}, gloo, "
          f"1 thread a rank, no Ray{''.join(f', {k}={v}' for k, v in extra.items())}")
    for world, got in found.items():
        for r in got["ranks"]:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in r["parts_ms"].items())
            print(f"  world {world} rank {r['rank']}: {r['ms_per_step']:.0f} ms/step (x{one / r['ms_per_step']:.2f}); "
                  f"{parts}")
    slowest = max(r["ms_per_step"] for r in found[2]["ranks"])
    print(f"speed-up at 2: {one / slowest:.2f}")


if __name__ == "__main__":
    main()
