"""The train command on Ray Train, stopped: SIGINT or SIGTERM end it within seconds with one ``error:`` line and
128 + the signal, its Ray shut down and no process of it left running; a RAY_ADDRESS where no head answers is
one line at once, not minutes of silent retries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from mentor_ray.common.lock import INFO_NAME, TOKEN_ENV

REPO = Path(__file__).resolve().parents[1]
TINY = ["embedding_dim=8", "knn_k=5", "batch_size=64", "eval_batch_size=16", "lr=1e-3", "patience=1000"]



def _sigint_default() -> None:
    """In the child before exec: SIGINT as a terminal delivers it. A shell's background job (`cmd &`, as CI or a
    nohup may run pytest) ignores SIGINT, every child inherits that, and the driver would never see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_tmp():
    """This test's own Ray temp dir (session files, sockets): short, since a socket's path may have at most
    107 bytes, which pytest's tmp_path would exceed."""
    path = tempfile.mkdtemp(prefix="mr-train-sig-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(ray_tmp: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", TOKEN_ENV)}
    return {**env, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO), **extra}


def _theirs(token: str | None, ray_tmp: str) -> list[psutil.Process]:
    """The processes of the driver under test: its token in their environment, or its Ray temp dir in their
    command line."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(ray_tmp in a for a in p.info["cmdline"] or []) or (token and p.environ().get(TOKEN_ENV) == token):
                found.append(p)
        except psutil.Error:
            continue
    return [p for p in found if p.pid != os.getpid()]


def test_a_ray_address_where_no_head_answers_is_one_line_at_once(tmp_path, ray_tmp):
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "mentor_ray.train", "--dataset", "synth-tiny", "--workers", "1",
                          "--storage", str(tmp_path / "runs"), *TINY], env=_env(ray_tmp, RAY_ADDRESS=address),
                         capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 20
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: RAY_ADDRESS={address}: no Ray head answers there ({address}: connection refused")
    assert line.endswith("; unset it to start a local Ray, or start the head")
    assert not (tmp_path / "runs").exists()  # nothing left behind: the run's lock folder is removed again


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_ray_train_run_stops_it_cleanly(tmp_path, ray_tmp, sig):
    storage = tmp_path / "runs"
    env = _env(ray_tmp)
    cmd = [sys.executable, "-m", "mentor_ray.train", "--dataset", "synth-tiny", "--workers", "2", "--storage",
           str(storage), "--max-epochs", "100000", *TINY]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, cwd=REPO, preexec_fn=_sigint_default)
    token = None
    try:
        deadline = time.monotonic() + 240
        while not list(storage.glob("*/epoch-*")):  # the Train run is going: it has written a checkpoint
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.5)
        (info,) = storage.glob(f"*/{INFO_NAME}")
        token = json.loads(info.read_text())["token"]
        assert _theirs(token, env["RAY_TMPDIR"])  # its Ray's processes carry the token (as the check below needs)
        sent = time.monotonic()
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=60)
        took = time.monotonic() - sent
        name = signal.Signals(sig).name
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert driver.returncode == 128 + sig, err[-3000:]
        assert errors == [f"error: interrupted ({name}); re-run the same command to resume from its last checkpoint"]
        assert took < 30
        time.sleep(10)
        left = _theirs(token, env["RAY_TMPDIR"])
        assert not left, [(p.pid, " ".join(p.cmdline())[:80]) for p in left]
        assert not list(storage.glob(f"*/{INFO_NAME}"))  # the lock released: no holder left to name
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for p in _theirs(token, env["RAY_TMPDIR"]):
            try:
                p.kill()
            except psutil.Error:
                pass
