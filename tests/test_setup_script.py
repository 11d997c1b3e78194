"""scripts/setup.sh: how it chooses the install profile, and its one-line errors (no installs here)."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from tests.conftest import REPO


def setup(env: dict[str, str]) -> subprocess.CompletedProcess:
    # the caller's choices (CI sets MENTOR_RAY_PROFILE per profile) must not leak into these cases
    base = {k: v for k, v in os.environ.items() if k not in ("MENTOR_RAY_PROFILE", "MENTOR_RAY_VENV", "PYTHON")}
    return subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], capture_output=True, text=True,
                          env={**base, **env}, timeout=60)


def fake_env(path, profile: str) -> None:
    """An environment that looks installed with ``profile``: the profile file and a matching stamp."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")
    (path / "bin" / "python").chmod(0o755)
    (path / ".mentor_ray-profile").write_text(profile + "\n")
    content = (profile + "\n").encode() + (REPO / "pyproject.toml").read_bytes() + \
        (REPO / "requirements" / f"{profile}.txt").read_bytes()
    (path / ".mentor_ray-installed").write_text(hashlib.sha256(content).hexdigest() + "\n")


def test_unknown_profile_is_a_one_line_error(tmp_path):
    proc = setup({"MENTOR_RAY_PROFILE": "latest", "MENTOR_RAY_VENV": str(tmp_path / "v")})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: MENTOR_RAY_PROFILE=latest; allowed: pinned, current, auto"
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("profile", ["pinned", "current"])
def test_auto_keeps_the_profile_an_environment_holds(tmp_path, profile):
    fake_env(tmp_path / "v", profile)
    proc = setup({"MENTOR_RAY_VENV": str(tmp_path / "v")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"[setup] {tmp_path / 'v'} is up to date ({profile} profile)"


def test_no_suitable_python_names_the_profile_and_the_way_out(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\necho 10\n")  # answers the version probe with minor version 10
    fake.chmod(0o755)
    proc = setup({"MENTOR_RAY_PROFILE": "pinned", "MENTOR_RAY_VENV": str(tmp_path / "v"), "PYTHON": str(fake)})
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"error: no Python 3.11, 3.12 found (PYTHON={fake}) for the pinned profile")
    assert "MENTOR_RAY_PROFILE=current (Python 3.11-3.13)" in err
    assert not (tmp_path / "v").exists()


def _installing_env(path, pip_body: str) -> None:
    """An environment of the current profile whose stamp is stale (so setup installs) and whose python runs
    ``pip_body`` (sh) for ``-m pip`` and succeeds at anything else (the import check)."""
    fake_env(path, "current")
    (path / ".mentor_ray-installed").write_text("stale\n")
    (path / "bin" / "python").write_text(f'#!/bin/sh\nif [ "$2" = pip ]; then\n{pip_body}\nfi\nexit 0\n')


def test_a_long_silent_pip_step_still_prints_a_line_every_tick_and_the_ticker_ends_with_it(tmp_path):
    """Install progress is never silent for long: pip prints nothing while it downloads and installs large
    wheels, so setup says it is still working every MENTOR_RAY_SETUP_TICK seconds (20 by default); the
    ticker is gone when setup ends (a lingering one would hold the pipe open and this run would time out)."""
    _installing_env(tmp_path / "v", 'echo "Collecting torch==2.13.0"\n'
                    'echo "  Downloading torch-2.13.0-cp311-none-linux_x86_64.whl (180.5 MB)"\nsleep 3\n'
                    'echo "Installing collected packages: torch"\necho "Successfully installed torch-2.13.0"')
    proc = setup({"MENTOR_RAY_VENV": str(tmp_path / "v"), "MENTOR_RAY_SETUP_TICK": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "[setup]     1  torch==2.13.0" in lines
    assert "[setup]        downloading torch-2.13.0-cp311-none-linux_x86_64.whl (180.5 MB)" in lines
    assert sum("pip still working" in line for line in lines) >= 4  # two pip calls; at least 2 ticks in the 3 s one
    assert lines[-1] == "[setup] done"


def test_a_failing_pip_ends_setup_with_its_error_and_status(tmp_path):
    _installing_env(tmp_path / "v", 'echo "ERROR: No matching distribution found for torch==9"\nexit 1')
    proc = setup({"MENTOR_RAY_VENV": str(tmp_path / "v"), "MENTOR_RAY_SETUP_TICK": "1"})
    assert proc.returncode == 1
    assert "ERROR: No matching distribution found for torch==9" in proc.stderr
    assert (tmp_path / "v" / ".mentor_ray-installed").read_text().strip() == "stale"  # not marked installed
