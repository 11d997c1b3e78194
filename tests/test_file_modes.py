"""What mentor_ray writes is readable as the user's umask says (mkstemp alone gives 0600, so a group sharing a
results store could not read it), in a process whose umask is set before it starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mentor_ray.common import io


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_an_atomic_write_gets_the_mode_the_umask_gives(tmp_path, umask):
    code = ("import os, sys; from pathlib import Path; from mentor_ray.common import io;"
            "p = Path(sys.argv[1]); io.write_atomic(p, 'x');"
            "print(oct(os.stat(p).st_mode & 0o777), oct(io.process_umask()))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.json")], capture_output=True, text=True,
                         preexec_fn=lambda: os.umask(umask), check=True).stdout.split()
    assert out == [oct(0o666 & ~umask), oct(umask)]


def test_the_umask_is_read_once_and_left_as_it_was():
    before = os.umask(0o022)
    os.umask(before)
    assert io.process_umask() == before
    after = os.umask(0o022)
    os.umask(after)
    assert after == before


def test_a_results_file_is_group_readable_under_a_common_umask(tmp_path):
    """The results store's Parquet files go through the same atomic path."""
    code = """
import os, sys
from mentor_ray.common.config import validate
from mentor_ray.common.names import METRICS
from mentor_ray.report import results
cfg = validate({"dataset": "synth-tiny", "variant": "mentor", "seed": 0}, source="test").model_dump()
summary = {"dataset": "synth-tiny", "variant": "mentor", "seed": 0, "config": cfg, "status": "completed",
           "valid": dict.fromkeys(METRICS, 0.5), "test": dict.fromkeys(METRICS, 0.4),
           "best_epoch": 1, "epochs_run": 2}
path = results.record(sys.argv[1], summary, "final", "t")
print(oct(os.stat(path).st_mode & 0o777))
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True,
                         preexec_fn=lambda: os.umask(0o022))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == oct(0o644)
