"""Where each thread of a process tree spent a window of time, from the kernel's per-thread scheduler counters
(``/proc/<pid>/task/<tid>/schedstat``: time on a CPU, time runnable but waiting for one): the rest of the window
it slept (blocked: a lock, a socket, the GIL, the other rank at an all-reduce). Used for #29 to tell a 2-worker
run's training threads being preempted (waiting runnable) from waiting on each other (sleeping), and to see which
of Ray's processes wake how often. Linux only; not imported by the package (docs/benchmarks.md, #29).

    # root pid (e.g. the `python -m mentor_ray.train` driver), window seconds, seconds to wait after the
    # tree first has 2 Ray Train worker actors (so that loading and the first epoch are over)
    python tools/sched_probe.py 12345 30 45
"""

import sys
import time

import psutil

from mentor_ray.benchmarks.bench import thread_counters


def threads(root: int) -> dict[tuple[int, int], tuple[int, int, str, str]]:
    """(pid, tid) -> (ns on a CPU, ns waiting runnable, process title, thread name) for every thread of the tree."""
    out = {}
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            title = " ".join(p.cmdline())[:40] or p.name()
        except psutil.Error:
            continue
        for tid, (run, wait) in thread_counters(p.pid).items():
            try:
                name = open(f"/proc/{p.pid}/task/{tid}/comm").read().strip()
            except OSError:  # ended meanwhile
                continue
            out[(p.pid, int(tid))] = (run, wait, title, name)
    return out


def main(root: int, window: float, settle: float, workers: int = 2) -> None:
    while len({pid for (pid, _), v in threads(root).items() if "TrainWorker" in v[2]}) < workers:
        if not psutil.pid_exists(root):
            sys.exit(f"process {root} ended before {workers} worker actors were up")
        time.sleep(1)
    time.sleep(settle)
    before = threads(root)
    time.sleep(window)
    after = threads(root)
    rows = []
    for key, (run, wait, title, name) in after.items():
        run0, wait0 = before.get(key, (0, 0, "", ""))[:2]
        rows.append(((run - run0) / 1e9 / window, (wait - wait0) / 1e9 / window, key, title, name))
    rows.sort(reverse=True)
    print(f"{'on CPU':>7} {'runnable':>9} {'slept':>6}  pid/tid          thread           process")
    for run, wait, (pid, tid), title, name in rows:
        if run > 0.001 or wait > 0.001:
            print(f"{run:7.3f} {wait:9.3f} {1 - run - wait:6.3f}  {pid:>6}/{tid:<9} {name:16s} {title}")
    print(f"total on CPU: {sum(r[0] for r in rows):.2f} cores over {window:g} s")


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
