"""Eq. 21's kernel alone, sharded as DDP ranks shard it: one process with every row against 2 processes with half
the rows each (against all columns), at TikTok's or synth-baby's shape (users, items; d = 64), per chunk size, 1
thread per process; forward and backward, median of REPS. Not imported by the package (docs/benchmarks.md, #29).

    python tools/bench_infonce_shard.py tiktok 512,128,64 5     # or: baby
"""

import multiprocessing as mp
import sys
import time

import torch

SHAPES = {"tiktok": [(9308, 64), (6710, 64)], "baby": [(19445, 64), (7050, 64)]}


def work(args) -> float:
    shapes, chunk, world, rank, reps = args
    torch.set_num_threads(1)
    from mentor_ray.model import losses

    torch.manual_seed(0)
    views = [(torch.randn(n, d), torch.randn(n, d)) for n, d in shapes]
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        for a, b in views:
            n = a.shape[0]
            s, e = n * rank // world, n * (rank + 1) // world
            x, y = a[s:e].clone().requires_grad_(), b.clone().requires_grad_()
            losses.info_nce_chunked(x, y, 0.2, chunk, s, n).backward()
        out.append(time.perf_counter() - t)
    return sorted(out)[len(out) // 2]


def main() -> None:
    shapes, chunks, reps = SHAPES[sys.argv[1]], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
    ctx = mp.get_context("spawn")
    for c in chunks:
        with ctx.Pool(1) as p:
            one = p.map(work, [(shapes, c, 1, 0, reps)])[0]
        with ctx.Pool(2) as p:
            two = max(p.map(work, [(shapes, c, 2, r, reps) for r in range(2)]))
        print(f"chunk {c}: 1 process {1000 * one:.0f} ms, 2 processes {1000 * two:.0f} ms, "
              f"speed-up {one / two:.2f}", flush=True)


if __name__ == "__main__":
    main()
