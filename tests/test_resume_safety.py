"""``--resume`` reads nothing from ``--storage`` that can run code: Ray Tune's pickles (``tuner.pkl``, searcher
state, ``params.pkl``) are never loaded; a resumed phase is a new attempt built from the journal, the Optuna
study, the budget ledger and checkpoints loaded with ``weights_only`` (:mod:`mentor_ray.sweep.resume`)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from mentor_ray.sweep import resume


class _Payload:
    """Unpickling this writes ``marker``: what a hostile file under a shared --storage would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _plant(folder: Path, marker: Path) -> int:
    """Replace every pickle Ray wrote under ``folder`` with the payload; how many were replaced."""
    planted = 0
    for path in folder.rglob("*.pkl"):
        path.write_bytes(pickle.dumps(_Payload(marker)))
        planted += 1
    return planted


def _sweep(tmp_path, *extra):
    return [sys.executable, "-m", "mentor_ray.tune", "--dataset", "synth-tiny", "--space", "smoke",
            "--num-samples", "2", "--seeds", "1", "--grace-period", "2", "--quiet", "--leaderboard", "none",
            "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "s"), *extra]


def _assert_quiet(proc) -> None:
    """``--quiet``: mentor_ray's own lines only: no Ray, Tune or Optuna log lines, no lines forwarded from the
    trials' processes, no terminal colour codes (README: a quiet first run)."""
    out = proc.stdout + proc.stderr
    assert "\x1b" not in out
    foreign = [line for line in out.splitlines() if line.strip() and not line.startswith(("[mentor_ray]", "  "))]
    assert not foreign, foreign


@pytest.mark.driver
@pytest.mark.slow  # two sweeps in subprocesses (~50 s)
def test_a_resume_runs_no_code_planted_in_the_experiment_folders(tmp_path):
    """Every ``*.pkl`` under --storage is swapped for a payload that writes a file when unpickled; the resumed
    sweep finds every phase ended (the journal) and never loads one. (Before: ``Tuner.restore`` ran it.)"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    first = subprocess.run(_sweep(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    _assert_quiet(first)
    rows_before = sorted(p.name for p in (tmp_path / "r").glob("*.parquet"))
    marker = tmp_path / "pwned"
    assert _plant(tmp_path / "s", marker) >= 3  # tuner.pkl, searcher state, params.pkl of each trial
    second = subprocess.run(_sweep(tmp_path, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    _assert_quiet(second)
    assert not marker.exists()
    assert "2 trial(s) ended before" in second.stdout
    assert sorted(p.name for p in (tmp_path / "r").glob("*.parquet")) == rows_before
    assert not list((tmp_path / "s").glob(f"*{resume.ATTEMPT}*"))  # nothing left to run: no new attempt


def test_attempt_folders_are_numbered_and_links_do_not_count(tmp_path):
    storage = str(tmp_path)
    assert resume.attempt_name(storage, "search-x") == "search-x"
    (tmp_path / "search-x").mkdir()
    assert resume.attempt_name(storage, "search-x") == "search-x.resume-2"
    (tmp_path / "search-x.resume-2").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "search-x.resume-7").symlink_to(tmp_path / "elsewhere")  # planted: not an attempt
    (tmp_path / "search-x.resume-abc").mkdir()
    assert [p.name for p in resume.attempts(storage, "search-x")] == ["search-x", "search-x.resume-2"]
    assert resume.attempt_name(storage, "search-x") == "search-x.resume-3"


def _summary(seed=0, status="completed", **config):
    from mentor_ray.common.config import validate

    cfg = validate({"dataset": "synth-tiny", "variant": "mentor", "seed": seed, **config}, source="test").model_dump()
    return {"dataset": "synth-tiny", "variant": "mentor", "seed": seed, "config": cfg, "status": status,
            "valid": {"recall@20": 0.5, "ndcg@20": 0.3}, "best_epoch": 1, "epochs_run": 2}


def test_the_journal_keeps_one_entry_per_run_and_skips_what_it_cannot_read(tmp_path, caplog):
    journal = resume.Journal(tmp_path / "r", "final-x")
    journal.add(_summary(0, status="failed"))
    journal.add(_summary(0))  # the retried run replaces its failed entry
    journal.add(_summary(1, lr=0.01))
    (journal.folder / "garbage.json").write_text("{not json")
    (journal.folder / "list.json").write_text("[1, 2]")
    os.mkfifo(journal.folder / "fifo.json")  # read whole, a FIFO would hang the resume
    ended = journal.ended()
    assert sorted(s["seed"] for s in ended.values()) == [0, 1]
    assert {s["status"] for s in ended.values()} == {"completed"}
    assert resume.summary_key(_summary(0)) in ended and resume.summary_key(_summary(0, lr=0.01)) not in ended


def _trial_folder(attempt: Path, name: str, config: dict, epochs: list[int]) -> Path:
    folder = attempt / name
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"cfg": config, "threads": 1}))
    for i, e in enumerate(epochs):
        ck = folder / f"checkpoint_{i:06d}"
        ck.mkdir()
        (ck / "trainer_state.pt").write_bytes(b"state")
        (ck / "summary.json").write_text(json.dumps({**_summary(config["seed"]), "epochs_run": e}))
    return folder


def test_cut_off_trials_continue_from_their_newest_checkpoint_inside_storage_only(tmp_path):
    s0, s1, s2 = (_summary(i)["config"] for i in range(3))
    _trial_folder(tmp_path / "final-x", "t0", s0, [1, 2])
    _trial_folder(tmp_path / "final-x.resume-2", "t0-again", s0, [3])  # cut off twice: the newer one wins
    _trial_folder(tmp_path / "final-x", "t1", s1, [])  # cut off before its first checkpoint
    outside = _trial_folder(tmp_path / "outside", "t2", s2, [5])
    linked = tmp_path / "final-x" / "t2"
    linked.mkdir()
    (linked / "params.json").write_text(json.dumps({"cfg": s2, "threads": 1}))
    (linked / "checkpoint_000009").symlink_to(outside / "checkpoint_000000")  # leads out of the attempt
    (tmp_path / "final-x" / "junk").mkdir()
    (tmp_path / "final-x" / "junk" / "params.json").write_text('{"cfg": {"variant": "rm -rf"}}')
    done = resume.summary_key(_summary(1))
    found = resume.cut_off_trials(str(tmp_path), "final-x", ended={done})
    k0, k2 = resume.summary_key(_summary(0)), resume.summary_key(_summary(2))
    assert set(found) == {k0, k2}
    assert found[k0]["epochs"] == 3 and found[k0]["checkpoint"].endswith("final-x.resume-2/t0-again/checkpoint_000000")
    assert found[k2]["checkpoint"] is None  # the link is not followed: the trial starts over


@pytest.mark.parametrize("content", [b"", b"\x80\x04K\x01.", b'{"cfg": 1}', b'{"cfg": {"seed": -1}}', b"[]" * 10])
def test_damaged_params_files_make_a_trial_start_over_not_crash(tmp_path, content):
    folder = tmp_path / "final-x" / "t0"
    folder.mkdir(parents=True)
    (folder / "params.json").write_bytes(content)
    assert resume.cut_off_trials(str(tmp_path), "final-x", ended=set()) == {}


def test_a_trial_that_ended_unrecorded_is_recorded_from_its_checkpoint(tmp_path, monkeypatch):
    """A driver killed between a trial's last checkpoint and its results callback: the resumed phase finds the
    checkpoint's summary finished (a stop_reason), counts the run as ended, and records it (it once went
    missing from the store: journalled, never recorded)."""
    from mentor_ray.report import results
    from mentor_ray.sweep.spaces import load_space
    from mentor_ray.sweep.tune import Sweep, SweepOptions

    args = SweepOptions(dataset="synth-tiny", results=str(tmp_path / "r"), storage=str(tmp_path / "s"), space="smoke",
                        resume=True, seeds=1)
    sweep = Sweep(args, load_space("smoke"))
    summary = {**_summary(0), "stop_reason": "early stopping", "synthetic": True, "test": {"recall@20": 0.4},
               "valid": {"recall@20": 0.5, "ndcg@20": 0.3}}
    summary.pop("status")
    folder = tmp_path / "s" / "final-x" / "t0" / "checkpoint_000003"
    folder.mkdir(parents=True)
    (folder.parent / "params.json").write_text(json.dumps({"cfg": summary["config"], "threads": 1}))
    (folder / "trainer_state.pt").write_bytes(b"state")
    (folder / "summary.json").write_text(json.dumps(summary))
    recorded = []
    monkeypatch.setattr(results, "record", lambda d, s, role, sweep: recorded.append((s["seed"], s["status"], role)))
    monkeypatch.setattr(results, "is_recorded", lambda *a: False)
    prior = sweep.prior("final-x", "synth-tiny final")
    assert len(prior.done) == 1 and not prior.cut_off
    assert resume.Journal(tmp_path / "r", "final-x").ended()  # journalled from the checkpoint
    got = sweep.experiment(prior, "synth-tiny", "final", None, {}, None, [], total=0, max_epochs=4)
    assert [s["status"] for s in got] == ["completed"] and recorded == [(0, "completed", "final")]


def test_a_ddp_trial_continues_from_the_train_checkpoint_it_reported_inside_storage_only(tmp_path):
    """A DDP trial's checkpoints are its Ray Train run's; the trial folder only holds what it reported
    (``checkpoint_path`` in result.json). That checkpoint counts when it lies inside --storage."""
    s0, s1 = (_summary(i)["config"] for i in range(2))
    inside = _trial_folder(tmp_path / "train" / "final-x", "run0", s0, [4])  # stands in for the Train run
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside = _trial_folder(elsewhere, "run1", s1, [6])
    for name, config, reported in (("t0", s0, inside / "checkpoint_000000"), ("t1", s1, outside / "checkpoint_000000")):
        folder = tmp_path / "final-x" / name
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"cfg": config, "threads": 1, "ddp": {"workers": 2}}))
        lines = [{"epoch": e, "checkpoint_path": str(reported)} for e in range(3)] + [{"done": True}]
        (folder / "result.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    found = resume.cut_off_trials(str(tmp_path), "final-x", ended=set())
    k0, k1 = resume.summary_key(_summary(0)), resume.summary_key(_summary(1))
    assert found[k0]["checkpoint"] == str(inside / "checkpoint_000000") and found[k0]["epochs"] == 4
    assert found[k1]["checkpoint"] is None  # reported outside --storage: the trial starts over


def test_ended_trials_keep_only_their_summary_and_failed_or_cut_off_ones_keep_their_checkpoints(tmp_path):
    """Disk: once a phase has ended, a completed or stopped trial's checkpoints go (its older folders
    entirely, its newest down to the summary), in every attempt and in a DDP trial's Train run inside
    --storage; a failed trial (run again by --resume), a trial not in the set, and anything reached through a
    link or outside --storage keep theirs."""
    s = [_summary(i)["config"] for i in range(4)]
    ended_twice = [_trial_folder(tmp_path / "final-x", "t0", s[0], [1, 2]),
                   _trial_folder(tmp_path / "final-x.resume-2", "t0-again", s[0], [3, 4, 5])]
    failed = _trial_folder(tmp_path / "final-x", "t1", s[1], [1])
    other = _trial_folder(tmp_path / "final-y", "t0", s[0], [1])  # another experiment
    run = _trial_folder(tmp_path / "train" / "final-x", "run3", s[3], [2, 3])  # the DDP trial's Train run
    elsewhere = _trial_folder(tmp_path.parent / f"{tmp_path.name}-elsewhere", "run2", s[2], [6])
    ddp = (("t3", s[3], run / "checkpoint_000001"), ("t2", s[2], elsewhere / "checkpoint_000000"))
    for name, config, reported in ddp:
        folder = tmp_path / "final-x" / name
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"cfg": config, "threads": 1, "ddp": {"workers": 2}}))
        (folder / "result.json").write_text(json.dumps({"checkpoint_path": str(reported)}) + "\n")
    (ended_twice[1] / "checkpoint_000002" / "state_link.pt").symlink_to(other / "checkpoint_000000" / "summary.json")
    keys = {resume.summary_key(_summary(i)) for i in (0, 2, 3)}  # 1 failed: not in the ended set
    freed = resume.prune_ended(str(tmp_path), "final-x", keys)

    def files(folder):
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())

    assert files(ended_twice[0]) == ["checkpoint_000001/summary.json", "params.json"]
    assert files(ended_twice[1]) == ["checkpoint_000002/summary.json", "params.json"]
    assert files(run) == ["checkpoint_000001/summary.json", "params.json"]
    assert "checkpoint_000000/trainer_state.pt" in files(failed)
    assert "checkpoint_000000/trainer_state.pt" in files(other)
    assert "checkpoint_000000/trainer_state.pt" in files(elsewhere)  # reported outside --storage: not ours
    assert (other / "checkpoint_000000" / "summary.json").is_file()  # the link was removed, not followed
    link_size = len(str(other / "checkpoint_000000" / "summary.json"))  # a link's own size: its target's path
    assert freed == len(b"state") * 7 + link_size + sum(  # 7 state files, the summaries of the older folders
        len(json.dumps({**_summary(c["seed"]), "epochs_run": e}))
        for c, e in ((s[0], 1), (s[0], 3), (s[0], 4), (s[3], 2)))
    assert resume.prune_ended(str(tmp_path), "final-x", keys) == 0  # twice: nothing more
    assert resume.prune_ended("s3://bucket/x", "final-x", keys) == 0
