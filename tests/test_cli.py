"""One console script, ``mentor-ray``, with a subcommand per stage; every ``python -m mentor_ray.<name>``
form the README shows still works (cluster command lines use them)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mentor_ray import cli
from tests.conftest import REPO


def _readme_modules() -> set[str]:
    return set(re.findall(r"python -m mentor_ray\.(\w+)", (REPO / "README.md").read_text()))


def test_every_readme_module_form_is_a_subcommand():
    assert _readme_modules() and _readme_modules() <= set(cli.COMMANDS)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_subcommand_answers_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_the_console_script_lists_commands_and_refuses_unknown_ones(capsys):
    assert cli.main([]) == 2 and "commands:" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert cli.main(["nope"]) == 2
    assert "mentor-ray nope: no such command; commands: data, synthetic" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-m", "mentor_ray", "spaces", "show", "smoke"],
                                  ["-m", "mentor_ray.spaces", "show", "smoke"]])
def test_the_module_forms_run_the_same_command(argv, tmp_path):
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("smoke: "), proc.stderr[-2000:]


def test_a_bad_flag_value_is_one_line_and_exit_2(capsys):
    assert cli.main(["train", "--dataset", "synth-tiny", "lambda_align=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: override: lambda_align = -1")


def test_debug_is_accepted_before_or_after_the_command_and_changes_nothing_when_all_goes_well(capsys):
    for argv in (["--debug", "spaces", "show", "smoke"], ["spaces", "--debug", "show", "smoke"]):
        assert cli.main(argv) == 0
        out, err = capsys.readouterr()
        assert out.startswith("smoke: ") and err == ""
    assert cli.main([]) == 2 and "--debug" in capsys.readouterr().out


def test_a_local_ray_that_does_not_start_is_the_environments_limit_exit_1(monkeypatch, capsys):
    # Ray raises a bare Exception when its node does not come up in time (an overloaded machine): one line naming
    # it and what to do, exit 1 (the environment), never "internal error"
    import ray

    from mentor_ray.training import ray_train

    def slow(*_args, **_kwargs):
        raise Exception("The current node timed out during startup. This could happen because some of the raylet "
                        "failed to startup or the GCS has become overloaded.")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "init", slow)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_train, "check_head_answers", lambda *a, **k: None)
    rc = cli.run(lambda argv: ray_train.ensure_ray(), [])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("error: Ray's local node did not start in time (The current node timed out during "
                             "startup); the machine may be overloaded") and "internal error" not in err[0]


@pytest.mark.parametrize("text, ok", [("0", True), ("4294967295", True), ("4294967296", False), ("-1", False),
                                      ("1_0", False), ("１", False), ("1e3", False), (" 7 ", True), ("", False)])
def test_every_seed_flag_takes_a_whole_number_numpy_and_torch_both_take(text, ok):
    import argparse

    if ok:
        assert cli.seed_arg(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="must be a whole number from 0 to 4,294,967,295"):
            cli.seed_arg(text)
