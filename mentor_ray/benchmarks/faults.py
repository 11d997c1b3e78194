"""The fault campaign: kill workers and drivers with SIGKILL at chosen moments, resume, and compare with an
uninterrupted run of the same seeds.

::

    mentor-ray bench faults --write docs/benchmarks.md          # every case, about 15 minutes on 2 cores
    mentor-ray bench faults --cases worker,train-driver         # some of them

Drivers run as subprocesses. A worker or a sweep driver kills itself at a named point
(``MENTOR_RAY_KILL_AT``, :func:`mentor_ray.common.runtime.kill_point`); a training driver is killed from
outside once its first checkpoint exists. Only the driver's own pid is killed, never its process group,
as an OOM kill would do, so the Ray processes it started outlive it; the next driver on the same store
must end them (:mod:`mentor_ray.common.lock`). Each case passes when every run id appears exactly once,
every metric equals the reference bit for bit, and no process of the killed driver is left.

A worker lost right after an epoch's report may restart from the checkpoint before it: Ray Train's
controller registers a checkpoint when it next polls the workers. Either way the run ends as the
reference does, since every epoch re-seeds from ``(seed, epoch)``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mentor_ray.common.errors import MentorRayError
from mentor_ray.common.runtime import KILL_AT_ENV, KILL_MARKER_ENV
from mentor_ray.report.board import Column, Table
from mentor_ray.report.render import Block, Bullets, block_md

SWEEP = ["--dataset", "synth-tiny", "--space", "smoke", "--num-samples", "8", "--seeds", "1", "--ablation",
         "--grace-period", "4", "--quiet"]  # the whole 8-point grid, no ASHA stop: a deterministic sweep
TRAIN = ["--dataset", "synth-tiny", "--workers", "2", "--max-epochs", "4", "embedding_dim=16", "knn_k=5",
         "batch_size=128", "lr=1e-3", "patience=10", "infonce_scope=batch"]
SWEEP_CASES = {  # case -> kill point of the sweep driver
    "sweep-search": "driver-search",
    "sweep-final": "driver-final",
    "sweep-ablation": "driver-ablation",
    "sweep-leaderboard": "driver-leaderboard",
}
CASES = ("worker", "train-driver", *SWEEP_CASES, "two-drivers")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", KILL_AT_ENV, KILL_MARKER_ENV)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _module(args: list[str], log: Path, env: dict[str, str], timeout: float = 900) -> int:
    with open(log, "a") as out:
        return subprocess.run([sys.executable, "-m", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout).returncode


def _rows(results: Path) -> dict[tuple, Any]:
    """Every (run id, split, metric, k) of the store and its value; the run ids once per file."""
    from mentor_ray.report.results import read_results

    df = read_results(results).to_pandas()
    undated = df[(df.status != "failed") & (df.started_at.isna() | ~(df.wall_seconds > 0))]
    if len(undated):
        raise MentorRayError(f"fault campaign: {results}: {undated.run_id.nunique()} run(s) without started_at or "
                             f"wall_seconds, e.g. {undated.run_id.iloc[0]}")
    return {(r.run_id, r.split, r.metric, int(r.k)): (r.value, r.status)
            for r in df.itertuples() if r.split in ("valid", "test")}


def _runs_in_files(results: Path) -> list[str]:
    import pyarrow.parquet as pq

    ids = []
    for f in sorted(results.glob("*.parquet")):
        ids += sorted(set(pq.read_table(f, columns=["run_id"]).column("run_id").to_pylist()))
    return ids


def _recorded_processes(directory: Path) -> list[dict]:
    from mentor_ray.common.lock import holder_info

    return (holder_info(directory) or {}).get("processes", [])


def _alive(processes: list[dict]) -> int:
    from mentor_ray.common.lock import recorded_alive

    return len(recorded_alive(processes))


def _compare(reference: dict, after: dict, ids: list[str]) -> dict[str, Any]:
    ref_runs = {k[0] for k in reference}
    runs = {k[0] for k in after}
    return {"runs": len(runs), "reference_runs": len(ref_runs), "duplicated": len(ids) - len(set(ids)),
            "missing": len(ref_runs - runs), "extra": len(runs - ref_runs),
            "identical": after == reference}


def sweep_case(case: str, tmp: Path, reference: dict) -> dict[str, Any]:
    """A sweep driver killed at a point, then ``--resume``d (``two-drivers``: a second driver meanwhile)."""
    results, storage = tmp / case / "r", tmp / case / "s"
    args = ["mentor_ray.tune", *SWEEP, "--results", str(results), "--storage", str(storage),
            "--leaderboard", str(tmp / case / "board")]
    log = tmp / case / "driver.log"
    log.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    refused = ""
    if case == "two-drivers":
        first = subprocess.Popen([sys.executable, "-m", *args], env=_env(), stdout=open(log, "a"),
                                 stderr=subprocess.STDOUT)
        while not list(results.glob("search-*.parquet")):  # the first is at work
            if first.poll() is not None:
                raise MentorRayError(f"fault campaign: the first driver of {case} ended early; see {log}")
            time.sleep(0.5)
        second = subprocess.run([sys.executable, "-m", *args, "--resume"], env=_env(), capture_output=True,
                                text=True, timeout=120)
        refused = (second.stderr.strip().splitlines() or [""])[-1]
        if second.returncode != 2 or "in use by the mentor_ray driver pid" not in refused:
            raise MentorRayError(f"fault campaign: the second driver was not refused: {second.returncode} {refused}")
        rc = first.wait(timeout=900)
        left_before = 0
    else:
        marker = tmp / case / "killed"
        rc = _module(args, log, _env(**{KILL_AT_ENV: SWEEP_CASES[case], KILL_MARKER_ENV: str(marker)}))
        if rc != -signal.SIGKILL or not marker.exists():
            raise MentorRayError(f"fault campaign: {case}: the driver was not killed (exit {rc}); see {log}")
        time.sleep(2)  # as an operator would notice the loss and start again
        recorded = _recorded_processes(results)
        left_before = _alive(recorded)
        rc = _module([*args, "--resume"], log, _env())
        left_after = _alive(recorded)
    if rc != 0:
        raise MentorRayError(f"fault campaign: {case}: the resumed sweep failed (exit {rc}); see {log}")
    out = _compare(reference, _rows(results), _runs_in_files(results))
    out.update(case=case, wall=time.perf_counter() - t0, left_before=left_before,
               left_after=0 if case == "two-drivers" else left_after, note=refused[:160])
    return out


def _train_summary(path: Path) -> dict[str, Any]:
    s = json.loads(path.read_text())
    return {k: s[k] for k in ("valid", "test", "best_epoch", "epochs_run")} | {"resumed": s["resumed_at_epochs"]}


def train_case(case: str, tmp: Path, reference: dict) -> dict[str, Any]:
    """A Ray Train worker lost mid-epoch, or the training driver killed; the summary against the reference."""
    storage = tmp / case / "s"
    summary = tmp / case / "summary.json"
    args = ["mentor_ray.train", *TRAIN, "--storage", str(storage), "--summary", str(summary)]
    log = tmp / case / "driver.log"
    log.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    left_before = left_after = 0
    if case == "worker":
        marker = tmp / case / "killed"
        rc = _module(args, log, _env(**{KILL_AT_ENV: "rank1-epoch2-batch2", KILL_MARKER_ENV: str(marker)}))
        if not marker.exists():
            raise MentorRayError(f"fault campaign: {case}: no worker was killed; see {log}")
    else:
        driver = subprocess.Popen([sys.executable, "-m", *args], env=_env(), stdout=open(log, "a"),
                                  stderr=subprocess.STDOUT)
        while not list(storage.glob("*/epoch-00000")):
            if driver.poll() is not None:
                raise MentorRayError(f"fault campaign: {case}: the driver ended before its first checkpoint")
            time.sleep(0.2)
        time.sleep(1.0)
        run_dir = next(storage.glob("*/epoch-00000")).parent
        recorded = _recorded_processes(run_dir)
        os.kill(driver.pid, signal.SIGKILL)  # the driver only, as an OOM kill would
        driver.wait()
        time.sleep(2)
        left_before = _alive(recorded)
        rc = _module(args, log, _env())
        left_after = _alive(recorded)
    if rc != 0:
        raise MentorRayError(f"fault campaign: {case}: the run failed (exit {rc}); see {log}")
    got = _train_summary(summary)
    resumed = got.pop("resumed")
    return {"case": case, "wall": time.perf_counter() - t0, "runs": 1, "reference_runs": 1, "duplicated": 0,
            "missing": 0, "extra": 0, "identical": got == reference, "left_before": left_before,
            "left_after": left_after, "note": f"resumed at epoch(s) {resumed}"}


def bench_faults(cases: list[str]) -> dict[str, Any]:
    unknown = set(cases) - set(CASES)
    if unknown:
        raise MentorRayError(f"--cases {','.join(sorted(unknown))}: unknown; allowed: {', '.join(CASES)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mentor-faults-") as d:
        tmp = Path(d)
        if any(c in ("worker", "train-driver") for c in cases):
            print("[bench] faults: reference training run", file=sys.stderr, flush=True)
            (tmp / "train-ref").mkdir()
            rc = _module(["mentor_ray.train", *TRAIN, "--storage", str(tmp / "train-ref" / "s"),
                          "--summary", str(tmp / "train-ref" / "summary.json")], tmp / "train-ref" / "log", _env())
            if rc != 0:
                raise MentorRayError(f"fault campaign: the reference training run failed; see {tmp}/train-ref/log")
            train_ref = _train_summary(tmp / "train-ref" / "summary.json")
            train_ref.pop("resumed")
        if any(c not in ("worker", "train-driver") for c in cases):
            print("[bench] faults: reference sweep", file=sys.stderr, flush=True)
            (tmp / "sweep-ref").mkdir()
            rc = _module(["mentor_ray.tune", *SWEEP, "--results", str(tmp / "sweep-ref" / "r"), "--storage",
                          str(tmp / "sweep-ref" / "s"), "--leaderboard", "none"], tmp / "sweep-ref" / "log", _env())
            if rc != 0:
                raise MentorRayError(f"fault campaign: the reference sweep failed; see {tmp}/sweep-ref/log")
            sweep_ref = _rows(tmp / "sweep-ref" / "r")
        for case in cases:
            print(f"[bench] faults: {case}", file=sys.stderr, flush=True)
            if case in ("worker", "train-driver"):
                rows.append(train_case(case, tmp, train_ref))
            else:
                rows.append(sweep_case(case, tmp, sweep_ref))
            print(f"[bench] faults: {json.dumps(rows[-1], default=str)}", file=sys.stderr, flush=True)
    return {"rows": rows}


KILLED_AT = {
    "worker": "Ray Train worker rank 1, epoch 2, third batch (restarted from the newest checkpoint Ray had registered)",
    "train-driver": "training driver, after its first checkpoint; the same command re-run",
    "sweep-search": "sweep driver, after its first search trial was recorded; `--resume`",
    "sweep-final": "sweep driver, after its first final run was recorded; `--resume`",
    "sweep-ablation": "sweep driver, after its first ablation run was recorded; `--resume`",
    "sweep-leaderboard": "sweep driver, while writing the leaderboard; `--resume`",
    "two-drivers": "a second driver started on the same `--results` while the first runs",
}


def faults_block(res: dict, command: str) -> Block:
    from mentor_ray.benchmarks.bench import machine

    rows = []
    for r in res["rows"]:
        ok = r["identical"] and not (r["duplicated"] or r["missing"] or r["extra"] or r["left_after"])
        rows.append([r["case"], KILLED_AT[r["case"]], (r["runs"], r["reference_runs"]), r["duplicated"], r["missing"],
                     "yes" if r["identical"] else "NO", f"{r['left_before']} -> {r['left_after']}", r["wall"],
                     "pass" if ok else "FAIL", r["note"]])
    table = Table.of("bench-faults", "Fault campaign", [
        Column("case"), Column("killed", wrap=True, inline=True), Column("runs (after / reference)", "fraction"),
        Column("duplicated", "number"), Column("missing", "number"), Column("metrics identical"),
        Column("killed driver's processes left", "number"), Column("wall (s)", "number"), Column("result"),
        Column("note", wrap=True)], rows)
    return Block("Fault campaign: SIGKILL at chosen moments, against uninterrupted runs", [
        Bullets((f"Command: `{command}`", f"Machine: {machine()}", f"Date: {dt.date.today().isoformat()}",
                 f"Sweep: `mentor-ray tune {' '.join(SWEEP)}` (8 search trials, 1 final, 9 ablation runs); training: "
                 f"`mentor-ray train {' '.join(TRAIN)}`. Metrics are compared bit for bit (valid and test, every K).",
                 "Left processes: those the killed driver had started (its local Ray instance) that were alive before "
                 "the next driver started -> after it took the store over.")),
        table])


def faults_markdown(res: dict, command: str) -> str:
    return block_md(faults_block(res, command))
