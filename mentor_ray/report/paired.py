"""Paired tests over test users: is model A better than model B on the same users, and by how much?

Each test user's Recall@20 (or NDCG@20) is one draw of a model's quality, and the users are shared by
every model of a dataset, so two models compare user by user. With few test interactions per user the
metric is close to a hit rate: on TikTok (one held-out item per user) its binomial standard error over
the 6,130 test users is about 0.004, several times the spread over seeds. A test over seeds alone cannot
see that error; these tests do.

- :func:`paired_bootstrap`: the mean per-user difference ``a - b`` and a percentile confidence interval
  from resampling users with replacement (Efron & Tibshirani, ch. 13), with a fixed seed so the same
  store gives the same table.
- :func:`wilcoxon`: the two-sided Wilcoxon signed-rank test of the per-user differences (zero
  differences dropped, as Wilcoxon defined it; exact below 50 non-zero pairs, normal approximation with
  tie correction above).

Both take per-user values aligned on the same users (:func:`align`). Over several seeds a model's
per-user value is its mean over the seeds shared by both models, so seed noise shrinks before the users
are compared; the test over seeds stays beside these in the leaderboard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedResult:
    """A per-user comparison of a against b."""

    users: int  # users in the comparison
    mean_diff: float  # mean over users of a - b
    ci_low: float  # bootstrap percentile interval of mean_diff at ``confidence``
    ci_high: float
    wilcoxon_p: float  # two-sided; NaN when every difference is zero
    confidence: float = CONFIDENCE

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """(mean of ``a - b``, low, high): the percentile interval of the mean difference over ``samples``
    resamples of the users (rows), drawn with replacement; the same users are drawn for a and b."""
    d = _differences(a, b)
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    chunk = max(1, 2_000_000 // n)  # bounded memory: chunk x n indices at a time
    for s in range(0, samples, chunk):
        m = min(chunk, samples - s)
        means[s : s + m] = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(low), float(high)


def wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of ``a - b``; NaN when all differences are 0."""
    from scipy.stats import wilcoxon as scipy_wilcoxon

    d = _differences(a, b)
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return math.nan
    method = "exact" if nonzero.size < 50 and np.unique(np.abs(nonzero)).size == nonzero.size else "approx"
    return float(scipy_wilcoxon(nonzero, zero_method="wilcox", correction=False, method=method).pvalue)


def compare(a: np.ndarray, b: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, confidence: float = CONFIDENCE,
            seed: int = 0) -> PairedResult:
    """Both tests of per-user values ``a`` against ``b`` (aligned on the same users)."""
    mean, low, high = paired_bootstrap(a, b, samples, confidence, seed)
    return PairedResult(int(np.asarray(a).size), mean, low, high, wilcoxon(a, b), confidence)


def align(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The values of the users both sides hold, in user order. Each side is ``(user ids, values)``."""
    (ua, va), (ub, vb) = ((np.asarray(u), np.asarray(v, dtype=np.float64)) for u, v in (a, b))
    common, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    return va[ia], vb[ib]


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired values need two 1-D arrays of the same non-zero length; got {a.shape} and {b.shape}")
    return a - b
