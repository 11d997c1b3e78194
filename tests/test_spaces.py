"""Search-space files: every file in tune_spaces/ parses; bad ones stop with one line naming file and key."""

from __future__ import annotations

import pytest

from mentor_ray.common.config import make_config
from mentor_ray.common.errors import ConfigError
from mentor_ray.sweep.spaces import SPACE_DIR, load_space

FILES = sorted(SPACE_DIR.glob("*.yaml"))


def test_the_space_directory_has_the_paper_grid_the_best_settings_and_a_smoke_space():
    assert {p.stem for p in FILES} >= {"paper_grid", "paper_best", "smoke"}


def _some_points(space, n: int = 300):
    """Every point of a small space; of a large one, every value of every axis and a seeded sample."""
    import itertools
    import random

    if space.grid_size <= n:
        return list(space.points())
    rng = random.Random(0)
    axes = list(space.search.items())
    width = max(len(v) for _, v in axes)
    cover = [{k: v[i % len(v)] for k, v in axes} for i in range(width)]
    return cover + [{k: rng.choice(v) for k, v in axes} for _ in itertools.repeat(None, n)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_space_file_parses_and_every_point_is_a_valid_config(path):
    space = load_space(path)
    for dataset in ["synth-tiny", *space.datasets, *space.aliases]:
        for point in _some_points(space):
            make_config(flags={"dataset": dataset}, overrides=[f"{k}={v}" for k, v in
                                                              {**space.settings_for(dataset), **point}.items()])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_grid_size_stated_in_a_space_file_is_its_size(path):
    import re

    stated = re.findall(r"= ([\d,]+) points", path.read_text())
    for text in stated:
        assert int(text.replace(",", "")) == load_space(path).grid_size, (path.name, text)


def test_paper_grid_is_the_papers():
    space = load_space("paper_grid")
    assert space.search == {
        "dropout": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        "lambda_f": [0.5, 1, 1.5, 2, 2.5],
        "lambda_g": [1e-2, 1e-3, 1e-4],
        "tau": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        "lambda_align": [0.1, 0.2, 0.3],
    }
    assert space.grid_size == 7 * 5 * 3 * 8 * 3 == len(list(space.points()))
    assert space.fixed == {"lr": 1e-4, "n_layers": 2, "knn_k": 40, "patience": 20}


def test_paper_best_settings_per_dataset_and_alias():
    space = load_space("paper_best")
    assert space.settings_for("clothing")["lambda_align"] == 0.2
    assert space.settings_for("synth-sports") == space.settings_for("sports")
    assert space.settings_for("sports")["dropout"] == 0.4 and space.settings_for("baby")["dropout"] == 0.5
    assert space.settings_for("tiktok") == space.fixed  # no entry: the fixed settings only


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\nsearch: {dropuot: [0.1]}\n", "search: unknown key 'dropuot'; did you mean 'dropout'?"),
        ("name: x\nsearch: {dropout: []}\n", "search.dropout: empty list"),
        ("name: x\nsearch: {dropout: [0.1, 1.5]}\n", "dropout = 1.5 is not allowed"),
        ("name: x\nfixed: {variant: lightgcn}\n", "fixed.variant: set by the sweep"),
        ("name: x\nsearch: {tau: [0.1, 0.1]}\n", "search.tau: repeated values"),
        ("name: x\ndatasets: {baby: {tau: 0.2}}\naliases: {synth-baby: bbay}\n", "aliases.synth-baby: 'bbay'"),
        ("name: x\nserach: {tau: [0.1]}\n", "serach"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        ("name: ../../x\n", "key 'name' = '../../x': letters, digits"),  # would name experiments outside --storage
        ("name: x\nstart_from: ../y\n", "key 'start_from' = '../y': letters, digits"),
        ("name: x\nfixed: {tau: 0.2}\nfixed: {tau: 0.5}\n", "key 'fixed' appears twice (lines 2 and 3)"),
        ("name: x\nfixed: {batch_size: true}\n", "batch_size = True is not allowed (int)"),
        ("name: x\nsearch: {lr: [1.0e-3, .nan]}\n", "lr = nan is not allowed (float)"),
        ("name: x\nsearch: {seed: [1]}\n", "search.seed: set by the sweep"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
         "expand to more than 100,000 values"),
    ],
)
def test_bad_space_is_one_line_naming_the_file(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and expected in msg, msg


def test_unknown_space_name_lists_the_spaces():
    with pytest.raises(ConfigError, match="paper_grid"):
        load_space("no_such_space")


def test_spaces_list_names_every_space_with_its_model_and_size(capsys):
    from mentor_ray.spaces import main

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))
    assert [line.split()[0] for line in lines[:-1]] == names
    assert lines[-1].startswith(f"{len(names)} spaces;")
    smoke = next(line for line in lines if line.startswith("smoke "))
    assert smoke.split()[1:4] == ["mentor", "8", "points"]
    lgmrec = next(line for line in lines if line.startswith("lgmrec_grid "))
    assert " 1 point " in lgmrec
