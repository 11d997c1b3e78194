"""The paired tests over users (mentor_ray/report/paired.py) against computations by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mentor_ray.report import paired


def test_wilcoxon_exact_by_hand():
    # d = a - b = [0.5, -0.2, 0.3, 0.1, 0.4]: |d| ranks 5, 2, 3, 1, 4; W- = 2. Under H0 each of the 2^5 sign
    # patterns is equally likely; those with W- <= 2 are the negative sets {}, {1}, {2}: P = 3/32, two-sided 6/32.
    a = np.array([1.5, 0.8, 1.3, 1.1, 1.4])
    b = np.ones(5)
    assert paired.wilcoxon(a, b) == pytest.approx(6 / 32)
    assert paired.wilcoxon(b, a) == pytest.approx(6 / 32)


def test_wilcoxon_on_hits_is_the_sign_test():
    # hit-or-miss users (one held-out item): 60 users only a hits, 40 only b hits, 900 the same. Zeros drop;
    # all |d| tie, and the tie-corrected normal statistic reduces to the sign test's z = (60 - 50) / sqrt(100/4) = 2.
    a = np.r_[np.ones(60), np.zeros(40), np.ones(300), np.zeros(600)]
    b = np.r_[np.zeros(60), np.ones(40), np.ones(300), np.zeros(600)]
    assert paired.wilcoxon(a, b) == pytest.approx(math.erfc(2 / math.sqrt(2)), rel=1e-9)


def test_wilcoxon_all_equal_is_nan():
    assert math.isnan(paired.wilcoxon(np.ones(4), np.ones(4)))


def test_bootstrap_interval_by_hand():
    # d = [0, 1, 5]: a resample mean is 0 only for (0, 0, 0) and 5 only for (5, 5, 5), each with probability
    # 1/27 = 3.7% > 2.5%, so the 95% percentile interval is exactly [0, 5]; the observed mean is 2.
    mean, low, high = paired.paired_bootstrap(np.array([0.0, 1.0, 5.0]), np.zeros(3), samples=20_000, seed=1)
    assert (mean, low, high) == (2.0, 0.0, 5.0)


def test_bootstrap_matches_the_exact_distribution():
    # all 4^4 resamples of four users enumerated: the exact bootstrap distribution of the mean difference
    d = np.array([0.3, -0.1, 0.0, 0.6])
    exact = np.array([d[list(idx)].mean() for idx in itertools.product(range(4), repeat=4)])
    means = [paired.paired_bootstrap(d + 1, np.ones(4), samples=40_000, seed=s) for s in range(2)]
    for mean, low, high in means:
        assert mean == pytest.approx(d.mean())
        # the interval's ends sit where the exact distribution puts 2.5% and 97.5% (up to Monte Carlo error)
        assert np.mean(exact < low - 1e-12) <= 0.025 + 0.01 and np.mean(exact <= low + 1e-12) >= 0.025 - 0.01
        assert np.mean(exact > high + 1e-12) <= 0.025 + 0.01 and np.mean(exact >= high - 1e-12) >= 0.025 - 0.01


def test_bootstrap_is_paired():
    # b = a + 0.01 on every user: whatever the users' spread, every resample's mean difference is -0.01
    a = np.random.default_rng(0).random(500)
    mean, low, high = paired.paired_bootstrap(a, a + 0.01, samples=500)
    assert mean == pytest.approx(-0.01) and low == pytest.approx(-0.01) and high == pytest.approx(-0.01)


def test_bootstrap_is_reproducible_and_seeded():
    a, b = np.random.default_rng(1).random((2, 300))
    assert paired.paired_bootstrap(a, b, seed=3) == paired.paired_bootstrap(a, b, seed=3)
    assert paired.paired_bootstrap(a, b, seed=3) != paired.paired_bootstrap(a, b, seed=4)


def test_compare_and_excludes_zero():
    a = np.r_[np.ones(80), np.zeros(920)]
    b = np.r_[np.zeros(30), np.ones(20), np.zeros(950)]
    r = paired.compare(a, b, samples=4000)
    assert r.users == 1000 and r.mean_diff == pytest.approx(0.06)
    assert r.excludes_zero and r.ci_low > 0 and r.wilcoxon_p < 1e-6
    same = paired.compare(a, a[::-1].copy(), samples=4000)  # same hit count, different users
    assert not same.excludes_zero and same.mean_diff == 0


def test_align_keeps_shared_users_in_order():
    a = (np.array([7, 2, 5]), np.array([0.7, 0.2, 0.5]))
    b = (np.array([5, 9, 2]), np.array([1.5, 1.9, 1.2]))
    va, vb = paired.align(a, b)
    assert va.tolist() == [0.2, 0.5] and vb.tolist() == [1.2, 1.5]


@pytest.mark.parametrize("a, b", [(np.ones(3), np.ones(4)), (np.ones((2, 2)), np.ones((2, 2))),
                                  (np.ones(0), np.ones(0))])
def test_bad_shapes(a, b):
    with pytest.raises(ValueError, match="paired values"):
        paired.paired_bootstrap(a, b)
