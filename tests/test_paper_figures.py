"""The paper's Fig. 3 (multilevel cross-modal alignment) and Fig. 6 (test Recall@20 per user-sparsity group) in the
leaderboard (report/plots.py, report/leaderboard.py).

Stores are built as test_leaderboard.py builds them (a Trainer-like summary through results.rows_from_summary; the
helpers are copied so that these tests do not depend on the table code). Expected values are computed here from
the numbers put in (numpy means and sample stds, the groups by hand or by brute force), never with the module's
own helpers; only the bootstrap interval is paired.py's, on values aligned here, as the leaderboard must reuse it.
Per-user values are multiples of 1/1024, exact in the store's float32, so that means compare exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mentor_ray.common.config import make_config
from mentor_ray.common.names import KS
from mentor_ray.report import leaderboard as lb
from mentor_ray.report import paired, plots, results, select
from tests.conftest import write_dataset

COLS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _summary(dataset="synth-a", variant="mentor", seed=0, test=(0.01, 0.02, 0.005, 0.008), valid=0.1,
             data_root=None, users=None, **hp):
    """A summary shaped like Trainer.summary(); ``test`` is (R@10, R@20, N@10, N@20); ``users``: per-user values
    ``(ids, values)`` kept for every test metric."""
    flags = {"dataset": dataset, "variant": variant, "seed": seed, **({"data_root": data_root} if data_root else {})}
    cfg = make_config(flags=flags, overrides=[f"{k}={v}" for k, v in hp.items()]).model_dump()
    tst = {f"{m}@{k}": 0.001 for m in ("recall", "ndcg") for k in KS} | dict(zip(COLS, test))
    summary = {"dataset": dataset, "synthetic": dataset.startswith("synth-"), "variant": variant, "seed": seed,
               "best_epoch": 2, "epochs_run": 5, "valid": {f"{m}@{k}": valid for m in ("recall", "ndcg") for k in KS},
               "test": tst, "seconds_per_epoch": 1.0, "peak_rss_mb": 500.0, "device": "cpu", "world_size": 1,
               "valid_curve": [], "wall_seconds": 0.0, "config": cfg}
    if users is not None:
        ids, values = users
        summary["test_users"] = {"user": list(ids), **{m: list(values) for m in COLS}}
    return summary


def _record(root, summary, role="final"):
    return results.write_run(root, results.rows_from_summary(summary, role, "smoke", version="test"))


# --------------------------------------------------------------------------- Fig. 3

# test (R@20, N@20) per seed of the alignment variants' chosen runs
ALIGN = {"mentor_base": [(0.30, 0.20), (0.31, 0.22), (0.29, 0.19)],
         "mentor_l1": [(0.32, 0.21), (0.33, 0.20), (0.35, 0.24)],
         "mentor_l2": [(0.36, 0.25), (0.34, 0.23), (0.35, 0.22)],
         "mentor": [(0.38, 0.27), (0.37, 0.26), (0.40, 0.28)]}


def _alignment_store(root, variants=tuple(ALIGN)):
    for variant in variants:
        for seed, (r20, n20) in enumerate(ALIGN[variant]):
            _record(root, _summary(variant=variant, seed=seed, test=(0.1, r20, 0.1, n20)),
                    "final" if variant == "mentor" else "ablation")
    if "mentor_l1" in variants:  # another configuration, better on test but worse on validation: never chosen
        for seed in range(2):
            _record(root, _summary(variant="mentor_l1", seed=seed, test=(0.9, 0.9, 0.9, 0.9), valid=0.05, lr=0.01),
                    "ablation")


def test_alignment_frame_is_mean_and_sample_std_over_the_chosen_seeds(tmp_path):
    _alignment_store(tmp_path)
    chosen = select.select_final(select.load_runs(tmp_path))
    frame = plots.alignment_frame(chosen, "synth-a")
    assert list(frame["variant"]) == ["mentor_base", "mentor_l1", "mentor_l2", "mentor"] * 2
    assert list(frame["metric"]) == ["test_recall@20"] * 4 + ["test_ndcg@20"] * 4
    for row in frame.itertuples():
        col = 0 if row.metric == "test_recall@20" else 1
        values = np.array([v[col] for v in ALIGN[row.variant]])
        assert row.seeds == 3 and row.seed_list == (0, 1, 2)
        assert row.values == pytest.approx(tuple(values))  # the valid-0.05 configuration of L1 is not there
        assert row.mean == pytest.approx(values.mean()) and row.std == pytest.approx(values.std(ddof=1))
    assert plots.alignment_reason(frame) is None

    written, notes = plots.write_plots(select.load_runs(tmp_path), tmp_path / "o")
    fig3 = next(p for p in written if p.path == "plots/synth-a-alignment.png")
    assert (tmp_path / "o" / fig3.path).read_bytes()[:4] == b"\x89PNG"
    assert "MENTOR_base: 3 seeds (0, 1, 2)" in fig3.caption and "not run" not in fig3.caption
    assert "whisker: ± sample std over seeds" in fig3.caption and "dots: the seeds" in fig3.caption
    assert "Test Recall@20 and NDCG@20 (test split, at each run's best validation epoch)" in fig3.caption


def test_alignment_needs_two_variants_and_says_which_are_missing(tmp_path):
    _alignment_store(tmp_path / "two", ("mentor_l2", "mentor"))
    written, _ = plots.write_plots(select.load_runs(tmp_path / "two"), tmp_path / "o2")
    fig3 = next(p for p in written if p.path.endswith("-alignment.png"))
    assert "not run: MENTOR_base, MENTOR_L1" in fig3.caption

    _alignment_store(tmp_path / "one", ("mentor",))
    written, notes = plots.write_plots(select.load_runs(tmp_path / "one"), tmp_path / "o1")
    assert not [p for p in written if p.path.endswith("-alignment.png")]
    assert not (tmp_path / "o1" / "plots" / "synth-a-alignment.png").exists()
    assert ("plot 'synth-a (synthetic): multilevel cross-modal alignment (Fig. 3)' skipped: 1 of the 4 alignment "
            "variants has a final or ablation run (missing: MENTOR_base, MENTOR_L1, MENTOR_L2); need at least 2"
            ) in notes


# --------------------------------------------------------------------------- Fig. 6: the groups


def _brute_groups(counts, groups=3):
    """The rule, written out: every way to cut the distinct counts into ``groups`` groups, the one with the least
    sum of squared deviations from an equal share, the first (lowest cuts) of equals."""
    values, sizes = np.unique(counts, return_counts=True)
    k = min(groups, len(values))
    best, chosen = None, None
    for cuts in itertools.combinations(range(len(values) - 1), k - 1):
        edges = [-1, *cuts, len(values) - 1]
        parts = [int(sizes[a + 1:b + 1].sum()) for a, b in zip(edges[:-1], edges[1:])]
        cost = sum((p - len(counts) / k) ** 2 for p in parts)
        if best is None or cost < best:
            best, chosen = cost, [(int(values[a + 1]), int(values[b])) for a, b in zip(edges[:-1], edges[1:])]
    return chosen


def test_sparsity_groups_by_hand():
    # 4 users with 1, 4 with 2, 2 with 5 and 2 with 9 training interactions: three equal groups
    assert plots.sparsity_groups([1] * 4 + [2] * 4 + [5] * 2 + [9] * 2) == [(1, 1), (2, 2), (5, 9)]
    # a count is never split: 10 users with 3 interactions stay together, however unequal the groups
    assert plots.sparsity_groups([3] * 10 + [4, 5]) == [(3, 3), (4, 4), (5, 5)]
    # TikTok-like ties: 5 cold users, 2,291 with 1, 2,051 with 2, 1,714 with 3, 69 heavy users
    tiktok = [0] * 5 + [1] * 2291 + [2] * 2051 + [3] * 1714 + list(range(350, 419))
    assert plots.sparsity_groups(tiktok) == [(0, 1), (2, 2), (3, 418)]
    assert plots.sparsity_groups([2, 2, 7]) == [(2, 2), (7, 7)]  # two distinct counts: two groups
    assert plots.sparsity_groups([4, 4]) == [(4, 4)]
    # equal costs: the lower cuts ({1} {2} {3, 4} and {1} {2, 3} {4} both deviate by 1 + 1)
    assert plots.sparsity_groups([1, 1, 2, 2, 3, 4]) == _brute_groups([1, 1, 2, 2, 3, 4]) == [(1, 1), (2, 2), (3, 4)]


def test_sparsity_groups_match_the_rule_written_out():
    rng = np.random.default_rng(3)
    for _ in range(150):
        counts = rng.geometric(rng.uniform(0.05, 0.6), size=rng.integers(1, 60))
        got = plots.sparsity_groups(counts)
        assert got == _brute_groups(counts), counts
        sizes = [int(((counts >= lo) & (counts <= hi)).sum()) for lo, hi in got]
        assert sum(sizes) == len(counts) and all(sizes)  # every user in exactly one group, none empty


# --------------------------------------------------------------------------- Fig. 6: the frame, table and figure

N_USERS = 30
# training interactions: users 0-9 one, 10-14 two, 15-19 three, 20-29 five: groups {1}, {2, 3}, {5}
TRAIN = [1] * 10 + [2] * 5 + [3] * 5 + [5] * 10
GROUP_USERS = [range(0, 10), range(10, 20), range(20, 30)]


def _toy_rows():
    rows = []
    for u, n in enumerate(TRAIN):
        rows += [(u, (u + j) % 10, 1, 0, 0) for j in range(n)]
        rows += [(u, (u + 6) % 10, 1, 0, 1), (u, (u + 7) % 10, 1, 0, 2)]
    return rows


def _per_user(variant, seed):
    """Each user's test Recall@20 of a model's seed: a multiple of 1/1024. MF-BPR is perfect on the sparsest group
    (the best baseline there although it is not shown), LightGCN the best baseline overall."""
    rng = np.random.default_rng(10 * list(MODELS).index(variant) + seed)
    values = rng.integers(0, 1025, N_USERS) / 1024
    if variant == "mf_bpr":
        values[:10] = 1.0
    return values


MODELS = {"mentor": 0.40, "lightgcn": 0.35, "freedom": 0.30, "mf_bpr": 0.20}  # Table 2's test R@20 means
USERS_KEPT = {"freedom": list(range(N_USERS - 1))}  # FREEDOM kept every user but the last


def _sparsity_store(root, data_root, dataset="toyfig"):
    for variant, r20 in MODELS.items():
        for seed in range(2):
            ids = USERS_KEPT.get(variant, list(range(N_USERS)))
            values = _per_user(variant, seed)[ids]
            s = _summary(dataset, variant, seed, test=(0.1, r20, 0.1, 0.1), data_root=str(data_root),
                         users=(ids, values))
            _record(root, s)


def _expected():
    """Per group: users (common to every model: not user 29), each model's mean over seeds then users."""
    common = np.arange(N_USERS - 1)
    avg = {v: (_per_user(v, 0) + _per_user(v, 1))[common] / 2 for v in MODELS}
    out = []
    for users in GROUP_USERS:
        mask = np.isin(common, list(users))
        out.append((int(mask.sum()), {v: a[mask] for v, a in avg.items()}))
    return out


def test_sparsity_frame_groups_users_by_training_interactions(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, "toyfig", _toy_rows(), n_items=10)
    _sparsity_store(tmp_path / "r", data)
    chosen = select.select_final(select.load_runs(tmp_path / "r"))
    counts = select.training_counts(chosen, "toyfig")
    assert counts.counts.tolist() == TRAIN and counts.source == str(data / "toyfig")
    models, frame = plots.sparsity_of(chosen, "toyfig")
    assert models.best == "lightgcn" and models.shown == ["lightgcn", "freedom"]  # MF-BPR: neither
    assert list(frame[["min_train", "max_train"]].itertuples(index=False, name=None)) == [(1, 1), (2, 3), (5, 5)]
    assert list(frame["label"]) == ["1", "2–3", "5"]
    assert [c for c in frame.columns if c.startswith("mean_")] == ["mean_lightgcn", "mean_freedom", "mean_mentor"]
    for row, (users, values) in zip(frame.itertuples(), _expected()):
        assert row.users == users
        for v in ("lightgcn", "freedom", "mentor"):
            assert getattr(row, f"mean_{v}") == values[v].mean()
        best = max(("lightgcn", "freedom", "mf_bpr"), key=lambda v: values[v].mean())
        assert row.best_baseline == best and row.best_baseline_mean == values[best].mean()
        diff, low, high = paired.paired_bootstrap(values["mentor"], values[best])
        assert (row.diff, row.ci_low, row.ci_high) == (diff, low, high)
        assert row.diff == pytest.approx((values["mentor"] - values[best]).mean())
    assert frame["best_baseline"].iloc[0] == "mf_bpr"  # the sparsest group's best baseline, although not shown


def test_sparsity_figure_and_table_are_in_every_format(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, "toyfig", _toy_rows(), n_items=10)
    _sparsity_store(tmp_path / "r", data)
    md = lb.write_leaderboard(tmp_path / "r", tmp_path / "o", ("md", "html", "csv"))
    page = (tmp_path / "o" / "leaderboard.html").read_text()
    title = "Test Recall@20 per user-sparsity group (Fig. 6): MENTOR against the baselines"
    assert f"### {title}" in md and title in page
    assert "](plots/toyfig-sparsity.png)" in md and '<img src="plots/toyfig-sparsity.png"' in page
    png = (tmp_path / "o" / "plots" / "toyfig-sparsity.png").read_bytes()
    assert png[:4] == b"\x89PNG" and b"Software" not in png
    csv = pd.read_csv(tmp_path / "o" / "csv" / "sparsity.csv")
    expected = _expected()
    assert list(csv["users"]) == [u for u, _ in expected] and list(csv["best_baseline"])[0] == "mf_bpr"
    assert csv["mean_mentor"].tolist() == [v["mentor"].mean() for _, v in expected]
    row = next(line for line in md.splitlines() if line.startswith("| toyfig | 2–3 |"))
    diff, low, high = paired.paired_bootstrap(expected[1][1]["mentor"], expected[1][1][csv["best_baseline"][1]])
    assert "| 10 |" in row and f"[{low:+.4f}, {high:+.4f}]" in row
    assert "| Dataset | Training interactions | Users | LightGCN | FREEDOM | MENTOR | Best baseline (group) |" in md
    caption = next(line for line in md.splitlines() if "toyfig-sparsity.png" in line)
    assert "three groups" in caption and "gives no thresholds" in caption and str(data / "toyfig") in caption
    assert "LightGCN (best baseline by mean test Recall@20): 2 seeds; FREEDOM (multimodal): 2 seeds" in caption

    plots.write_plots(select.load_runs(tmp_path / "r"), tmp_path / "o2")  # the same store: the same bytes
    assert (tmp_path / "o2" / "plots" / "toyfig-sparsity.png").read_bytes() == png


def test_without_the_dataset_fig6_is_skipped_with_a_note(tmp_path):
    _sparsity_store(tmp_path / "r", tmp_path / "nowhere")
    md = lb.write_leaderboard(tmp_path / "r", tmp_path / "o", ("md", "csv"))
    assert "toyfig: no user-sparsity table (Fig. 6): dataset 'toyfig' could not be loaded (data_root" in md
    assert "plot 'toyfig: test Recall@20 per user-sparsity group (Fig. 6)' skipped: dataset 'toyfig'" in md
    assert not (tmp_path / "o" / "plots" / "toyfig-sparsity.png").exists()
    assert "### Test Recall@20 per user-sparsity group" not in md
    assert pd.read_csv(tmp_path / "o" / "csv" / "sparsity.csv").empty


def test_test_users_beyond_the_loaded_dataset_are_refused(tmp_path):
    data = tmp_path / "data"
    rows = [r for r in _toy_rows() if r[0] < 20]  # the dataset now has 20 users; the runs scored 30
    write_dataset(data, "toyfig", rows, n_items=10)
    _sparsity_store(tmp_path / "r", data)
    chosen = select.select_final(select.load_runs(tmp_path / "r"))
    _, why = plots.sparsity_of(chosen, "toyfig")
    assert why.startswith("the runs' test users go up to id 28 but the dataset loaded from") and "has 20 users" in why


def test_no_per_user_values_no_fig6_and_no_dataset_load(tmp_path, monkeypatch):
    _alignment_store(tmp_path)  # no run kept per-user values
    monkeypatch.setattr(plots, "training_counts", lambda *a: pytest.fail("loaded a dataset it does not need"))
    runs = select.load_runs(tmp_path)
    assert plots.training_counts_of(select.select_final(runs)) == {}
    board = lb.build_board(runs, str(tmp_path))
    assert board.frames["sparsity"].empty and not [t for t in board.tables if t.key == "sparsity"]
    _, why = plots.sparsity_of(select.select_final(runs), "synth-a")
    assert why.startswith("MENTOR's chosen runs kept no per-user test values")


def test_fig6_draws_every_baseline_of_the_paper_each_in_its_own_colour():
    from mentor_ray.common.registry import MODELS

    baselines = [m for m, e in MODELS.items() if e.group == "multimodal"] + ["lightgcn"]
    assert len(baselines) >= 11
    groups = [("1–2", 10), ("3–4", 10), ("5+", 10)]
    means = {f"mean_{v}": 0.1 + 0.01 * i for i, v in enumerate([*baselines, "mentor"])}
    frame = pd.DataFrame([{"label": label, "users": users, "best_baseline": "lightgcn", "diff": 0.01, "ci_low": 0.0,
                           "ci_high": 0.02, **means} for label, users in groups])
    import itertools

    colours = list(itertools.islice(plots.baseline_colours(), len(baselines)))
    assert len(set(map(str, colours))) == len(baselines) and "C3" not in colours  # distinct, never MENTOR's red
    fig = plots.sparsity_figure(frame, "t", "s")  # 13 baselines and MENTOR: it ran out of colours at 10
    assert len(fig.axes[0].patches) == 3 * (len(baselines) + 1)
