"""SIGINT and SIGTERM to a sweep driver stop it within seconds at any phase: trials cancelled, what ended
recorded, Ray shut down with no process left behind, one ``error: interrupted (...)`` line, exit 130 / 143;
and a ``--resume`` afterwards finishes the sweep without duplicated rows (subprocesses, slow tier)."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import pytest

from mentor_ray.report import results

pytestmark = [pytest.mark.slow, pytest.mark.driver]

TAG = "MENTOR_RAY_TEST_TAG"  # an environment variable every process the driver starts inherits



def _sigint_default() -> None:
    """In the child before exec: SIGINT as a terminal delivers it. A shell's background job (`cmd &`, as CI or a
    nohup may run pytest) ignores SIGINT, every child inherits that, and the driver would never see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def _args(tmp_path, *extra, budget: int = 3):
    # long trials (no early stopping within 300 epochs) so that the signal finds them running; a budget of 3
    # trial-epochs ends the search quickly, so that the final runs can be caught too (a search to be caught
    # gets a budget that outlasts the signal)
    return [sys.executable, "-m", "mentor_ray.tune", "--dataset", "synth-tiny", "--space", "smoke",
            "--num-samples", "2", "--seeds", "2", "--budget", str(budget), "--max-epochs", "300",
            "--grace-period", "300",
            "--quiet", "--leaderboard", "none", "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "s"),
            *extra, "patience=1000"]


def _tagged(tag: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(TAG) == tag:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _run_until(args, env, marker: str, timeout: float = 240):
    """Start the driver; return it once ``marker`` appears on its stdout (with the output so far)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_sigint_default)
    out, sel, deadline = [], selectors.DefaultSelector(), time.monotonic() + timeout
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if not sel.select(timeout=1):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        out.append(line)
        if marker in line:
            return proc, out
    proc.kill()
    raise AssertionError(f"never saw {marker!r}:\n{''.join(out)[-3000:]}\n{proc.stderr.read()[-3000:]}")


@pytest.mark.parametrize("sig, phase", [(signal.SIGINT, "search"), (signal.SIGTERM, "search"),
                                        (signal.SIGINT, "final"), (signal.SIGTERM, "final")])
def test_a_signal_stops_the_sweep_within_seconds_and_leaves_nothing_running(tmp_path, sig, phase):
    tag = uuid.uuid4().hex
    ray_tmp = tempfile.mkdtemp(prefix="mr-sig-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, TAG: tag, "RAY_TMPDIR": ray_tmp}
    # the phase's estimate line comes at a trial's second epoch: trials are running then
    proc, out = _run_until(_args(tmp_path, budget=3 if phase == "final" else 600), env,
                           f"synth-tiny {phase}: set-up ")
    try:
        time.sleep(1.0)
        sent = time.monotonic()
        os.kill(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=90)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 128 + sig, (stdout + stderr)[-3000:]
    assert len(errors) == 1 and f"interrupted ({sig.name})" in errors[0] and "--resume" in errors[0], stderr[-3000:]
    # the driver's own lines; a trial process killed by Tune may print Python's "Exception ignored in ..." (a
    # SystemExit from Ray's SIGTERM handler in a weakref callback), which Ray forwards as "(run_trial pid=N) ..."
    own = [line for line in stderr.splitlines() if not re.search(r"\((run_trial|pid)[ =]", line)]
    assert not [line for line in own if "Traceback" in line], stderr[-3000:]
    assert took < 45, f"{took:.0f} s from the signal to the exit"
    if phase == "search":  # the finals never started
        assert "final: set-up " not in "".join(out) + stdout
    deadline = time.monotonic() + 15
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [f"{p.pid} {p.name()}" for p in _tagged(tag)]
    for p in _tagged(tag):
        p.kill()
    assert not left, f"left running: {left}"
    rows = results.read_results(tmp_path / "r").to_pandas()
    assert not rows.duplicated(["run_id", "split", "metric", "k"]).any()
    runs = rows.drop_duplicates("run_id")
    assert (runs.role == "final").sum() == 0  # cut off, not ended: a --resume continues them
    if phase == "final":
        assert (runs.role == "search").sum() >= 1  # what ended before the signal stays recorded
