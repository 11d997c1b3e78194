"""The built wheel: it names every package, and an installed copy finds its presets and search spaces
from another directory (no checkout to fall back on)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, src = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):  # a copy: building writes build/ next to the sources
        shutil.copy(REPO / name, src / name)
    for name in ("mentor_ray", "tune_spaces"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("mentor_ray-*.whl")
    return whl


def test_the_wheel_holds_every_module_and_yaml_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "mentor_ray").rglob("*.py")}
    assert sources <= names, sorted(sources - names)  # a package missing from pyproject's list
    spaces = {f"mentor_ray/tune_spaces/{p.name}" for p in (REPO / "tune_spaces").glob("*.yaml")}
    presets = {f"mentor_ray/presets/{p.name}" for p in (REPO / "mentor_ray" / "presets").glob("*.yaml")}
    assert spaces and presets and spaces | presets <= names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_an_installed_wheel_finds_its_yaml_from_another_directory(wheel, tmp_path):
    """A fresh venv holding the wheel (non-editable), run from another directory. Its dependencies come
    from this environment's site-packages through a .pth line (a path, so the editable install's own
    .pth hooks there are not run): mentor_ray itself can only come from the wheel."""
    import site
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    here = [p for p in {*site.getsitepackages(), sysconfig.get_path("purelib")} if Path(p).is_dir()]
    (purelib / "deps.pth").write_text("\n".join(here) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--target", str(purelib), str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import mentor_ray, mentor_ray.sweep.spaces as s, mentor_ray.common.config as c; "
            "print(mentor_ray.__file__); print(s.load_space('paper_grid').path); "
            "print(c.make_config(preset='paper').lambda_f)")
    proc = subprocess.run([str(python), "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    module, space, lambda_f = proc.stdout.split()
    assert Path(module).is_relative_to(purelib) and Path(space).is_relative_to(purelib)
    assert float(lambda_f) > 0
    proc = subprocess.run([str(python), "-m", "mentor_ray", "spaces", "show", "smoke"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and str(purelib) in proc.stdout, proc.stderr[-2000:]
