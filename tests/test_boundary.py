"""The one error boundary of every command (:func:`mentor_ray.cli.run`): whatever a command raises, the
terminal gets one ``error:`` line and an exit code; an internal error's traceback goes to a file, and to the
terminal only with ``--debug`` (or ``MENTOR_RAY_DEBUG=1``).

The commands' ``main`` is replaced by one that raises; the lines expected are written out here, not
derived from the module under test.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mentor_ray import cli
from mentor_ray import spaces as spaces_cmd
from mentor_ray.common.errors import ConfigError, environment_message
from tests.conftest import REPO

TRACEBACK = "Traceback (most recent call last):"
SAVED = re.compile(r"; full traceback in (\S+\.txt)$")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache root of the test's own, so that the traceback files it leaves can be found and counted."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(root))
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    return root


def _raising(exc: BaseException):
    def main(argv):
        raise exc

    return main


def _run(monkeypatch, capsys, exc: BaseException, argv=("spaces", "show", "smoke")) -> tuple[int, list[str], str]:
    """(exit code, stderr lines, stdout) of ``mentor-ray <argv>`` whose command raises ``exc``."""
    monkeypatch.setattr(spaces_cmd, "main", _raising(exc))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, err.splitlines(), out


@pytest.mark.parametrize("exc, line", [
    (ValueError("bad thing " + "x" * 500),
     r"error: internal error: ValueError: bad thing x{190}\.\.\. \(510 characters\)"),
    (KeyError("nope"), r"error: internal error: KeyError: 'nope'"),
    (ZeroDivisionError(), r"error: internal error: ZeroDivisionError: \(no message\)"),
])
def test_an_internal_error_is_one_line_exit_1_and_its_traceback_is_in_a_file(exc, line, cache, monkeypatch, capsys):
    code, err, _ = _run(monkeypatch, capsys, exc)
    assert code == 1 and len(err) == 1, err
    assert re.match(line, err[0]), err[0]
    saved = Path(SAVED.search(err[0]).group(1))
    assert saved.parent == cache / "errors" and saved.is_file()
    text = saved.read_text()
    assert TRACEBACK in text and type(exc).__name__ in text and "in main" in text  # the raising frame


def test_os_errors_name_the_file_and_what_to_do_without_internal_error(tmp_path, cache, monkeypatch, capsys):
    target = tmp_path / "not" / "yet" / "run.parquet"  # its nearest existing parent is tmp_path
    code, err, _ = _run(monkeypatch, capsys, OSError(errno.ENOSPC, "No space left on device", str(target)))
    assert code == 1 and len(err) == 1, err
    assert re.fullmatch(rf"error: {re.escape(str(target))}: no space left on device \(ENOSPC; "
                        r"[\d,.]+ (bytes|KB|MB|GB|TB) free on that file system\); free some space, or write elsewhere",
                        err[0]), err[0]
    assert not (cache / "errors").exists()  # nothing to debug: no traceback file

    code, err, _ = _run(monkeypatch, capsys, PermissionError(errno.EACCES, "Permission denied", "/srv/x"))
    assert (code, err) == (1, ["error: /srv/x: permission denied (EACCES); check the permissions of that path, "
                               "or choose another"])
    code, err, _ = _run(monkeypatch, capsys, OSError(errno.EROFS, "Read-only file system", "/ro/x"))
    assert (code, err) == (1, ["error: /ro/x: read-only file system (EROFS); that file system is read-only; "
                               "choose a writable place"])
    code, err, _ = _run(monkeypatch, capsys, OSError(errno.EMFILE, "Too many open files"))
    assert code == 1 and len(err) == 1 and err[0].startswith("error: too many open files (EMFILE); raise the limit")
    long = "d" * 300
    code, err, _ = _run(monkeypatch, capsys, OSError(errno.ENAMETOOLONG, "File name too long", long))
    assert code == 1 and len(err) == 1 and "d" * 200 + "... (300 characters): file name too long" in err[0]


def test_running_out_of_memory_suggests_smaller_settings(cache, monkeypatch, capsys):
    code, err, _ = _run(monkeypatch, capsys, MemoryError())
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("error: out of memory (MemoryError); try smaller settings (e.g. eval_batch_size")

    class OutOfMemoryError(RuntimeError):  # named like torch's CUDA one, which is no MemoryError
        pass

    code, err, _ = _run(monkeypatch, capsys, OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert code == 1 and err[0].startswith("error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB); ")


def test_a_recursion_error_is_one_line_with_its_traceback_saved(cache, monkeypatch, capsys):
    code, err, _ = _run(monkeypatch, capsys, RecursionError("maximum recursion depth exceeded"))
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("error: input nested too deeply, or a recursion without end (RecursionError); "
                             "full traceback in ")
    assert Path(SAVED.search(err[0]).group(1)).is_file()


@pytest.mark.parametrize("how", ["before the command", "after the command", "environment"])
def test_debug_prints_the_traceback_then_the_line(how, cache, monkeypatch, capsys):
    argv = {"before the command": ["--debug", "spaces", "show", "smoke"],
            "after the command": ["spaces", "show", "smoke", "--debug"]}.get(how, ["spaces", "show", "smoke"])
    if how == "environment":
        monkeypatch.setenv(cli.DEBUG_ENV, "1")
    seen = []
    monkeypatch.setattr(spaces_cmd, "main", lambda a: seen.append(a) or {}["missing"])
    code = cli.main(argv)
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and seen == [["show", "smoke"]]  # the command never sees --debug
    assert err[0] == TRACEBACK and "KeyError: 'missing'" in err and err[-1].startswith("error: internal error: ")


def test_debug_also_shows_where_an_expected_error_came_from(cache, monkeypatch, capsys):
    code, err, _ = _run(monkeypatch, capsys, ConfigError("--space x: no such file"), ("--debug", "spaces", "show"))
    assert code == 2 and err[0] == TRACEBACK and err[-1] == "error: --space x: no such file"
    code, err, _ = _run(monkeypatch, capsys, ConfigError("--space x: no such file"))
    assert (code, err) == (2, ["error: --space x: no such file"])


def test_debug_after_a_double_dash_is_the_commands_own_argument():
    assert cli.strip_debug(["a", "--debug", "b", "--", "--debug"]) == (["a", "b", "--", "--debug"], True)
    assert cli.strip_debug(["a", "--debugger"]) == (["a", "--debugger"], False)


def test_argparse_exits_still_pass_through(cache, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["spaces", "show", "smoke", "--nope"])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        cli.main(["spaces", "--help"])
    assert exc.value.code == 0 and cli.DEBUG_HELP in capsys.readouterr().out


def test_ctrl_c_is_still_130(cache, monkeypatch, capsys):
    code, err, _ = _run(monkeypatch, capsys, KeyboardInterrupt())
    assert (code, err) == (130, ["error: interrupted (SIGINT)"])


def test_the_traceback_goes_to_the_temporary_directory_when_the_cache_cannot_be_written(tmp_path, monkeypatch,
                                                                                        capsys):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(tmp_path / "afile" / "cache"))  # under a file: no mkdir
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    code, err, _ = _run(monkeypatch, capsys, ValueError("boom"))
    assert code == 1 and len(err) == 1
    saved = Path(SAVED.search(err[0]).group(1))
    assert saved.parent == tmp_path / "tmp" / "mentor_ray-errors" and "ValueError: boom" in saved.read_text()

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "afile"))  # neither can be written
    code, err, _ = _run(monkeypatch, capsys, ValueError("boom"))
    assert (code, err) == (1, ["error: internal error: ValueError: boom; no traceback file could be written; "
                               "re-run with --debug"])


def test_an_exception_that_cannot_print_itself_is_still_one_line(cache, monkeypatch, capsys):
    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no")

    code, err, _ = _run(monkeypatch, capsys, Broken())
    assert code == 1 and len(err) == 1 and err[0].startswith("error: internal error: Broken: <message not printable>")


def test_a_logged_exception_is_one_line_with_its_traceback_saved(cache, monkeypatch, capsys):
    def main(argv):
        cli.setup_logging()
        try:
            {}["k"]
        except KeyError:
            logging.getLogger("mentor_ray.test").exception("step failed")
        return 0

    monkeypatch.setattr(spaces_cmd, "main", main)
    assert cli.main(["spaces"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and TRACEBACK not in err[0], err
    assert re.search(r" E mentor_ray\.test: step failed \(KeyError: 'k'; full traceback in \S+\.txt\)$", err[0])

    monkeypatch.setattr(spaces_cmd, "main", main)
    assert cli.main(["spaces", "--debug"]) == 0
    err = capsys.readouterr().err
    assert TRACEBACK in err and "step failed" in err


# --------------------------------------------------------------------------- the real thing, in a subprocess


def _python(args: list[str], cache: Path, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "MENTOR_RAY_CACHE": str(cache), "PYTHONPATH": str(REPO), **env}
    environ.pop(cli.DEBUG_ENV, None)
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=environ)


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path):
    proc = _python(["-m", "mentor_ray.spaces", "show", "s" * 5000], tmp_path / "cache")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and TRACEBACK not in proc.stderr
    assert proc.stderr.startswith("error: " + "s" * 200 + "... (5,000 characters): file name too long (ENAMETOOLONG)")


def test_an_internal_error_in_a_subprocess_is_one_line_and_a_file(tmp_path):
    code = textwrap.dedent("""
        import sys
        import mentor_ray.spaces as command
        command.load_space = lambda name: {}[name]  # a bug: KeyError
        sys.argv = ["mentor_ray.spaces", "show", "smoke"]
        from mentor_ray.cli import run
        raise SystemExit(run(command.main))
    """)
    proc = _python(["-c", code], tmp_path / "cache")
    assert proc.returncode == 1 and TRACEBACK not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: internal error: KeyError: 'smoke'; full traceback in ")
    saved = Path(SAVED.search(line).group(1))
    assert saved.parent == tmp_path / "cache" / "errors" and "load_space" in saved.read_text()


def test_environment_message_leaves_other_errors_to_the_boundary():
    assert environment_message(ValueError("x")) is None
    assert environment_message(OSError("no errno")) is None
    assert environment_message(OSError(errno.ECONNREFUSED, "Connection refused")) == "connection refused (ECONNREFUSED)"
