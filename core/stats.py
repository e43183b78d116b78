"""Confidence intervals: bootstrap intervals of a mean and of a difference of means (paired or independent
samples), and binomial intervals of a rate (exact upper bound, Wilson score interval).

Percentile bootstrap (Efron & Tibshirani 1993, ch. 13) with a fixed seed, so the same numbers always give the same
interval. Torch- and TensorFlow-free: the dashboard and the model card import it.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

DEFAULT_N_BOOT = 2000  # resamples; the 2.5/97.5 percentiles of 2000 means move by well under 1% of the spread
DEFAULT_CI = 0.95  # two-sided coverage
_CHUNK = 4_000_000  # resampled values held in memory at once (keeps n_boot x n under ~32 MB of float64)


def _as_array(values: Iterable[float], name: str) -> np.ndarray:
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    if np.isnan(a).any():
        raise ValueError(f"{name}: contains NaN; drop or fix those rows before bootstrapping")
    return a


def _check(n_boot: int, ci: float) -> None:
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot={n_boot!r}: must be a positive integer")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci!r}: must be between 0 and 1 (e.g. 0.95)")


def _resampled_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n_boot resamples (with replacement) of x, computed in chunks to bound memory."""
    n = len(x)
    per = max(1, _CHUNK // max(n, 1))
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, per):
        k = min(per, n_boot - start)
        idx = rng.integers(0, n, size=(k, n))
        out[start:start + k] = x[idx].mean(axis=1)
    return out


def _interval(boot: np.ndarray, ci: float) -> tuple[float, float]:
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(values: Iterable[float], n_boot: int = DEFAULT_N_BOOT, ci: float = DEFAULT_CI,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the sample mean and its percentile-bootstrap `ci` interval.

    One value gives lo = hi = mean (no spread to resample); no values give (nan, nan, nan)."""
    _check(n_boot, ci)
    x = _as_array(values, "values")
    if len(x) == 0:
        return (float("nan"),) * 3
    mean = float(x.mean())
    if len(x) == 1:
        return mean, mean, mean
    lo, hi = _interval(_resampled_means(x, n_boot, np.random.default_rng(seed)), ci)
    return mean, lo, hi


def bootstrap_diff_ci(a: Iterable[float], b: Iterable[float], n_boot: int = DEFAULT_N_BOOT,
                      ci: float = DEFAULT_CI, seed: int = 0, paired: bool = False) -> tuple[float, float, float]:
    """(mean(a) - mean(b), lo, hi) with a percentile-bootstrap `ci` interval.

    paired=True: a[i] and b[i] belong together (same prompt and seed), so the pairs are resampled jointly and the
    interval is that of the mean of a - b (narrower, because the shared prompt/seed noise cancels).
    paired=False: independent samples, each resampled on its own."""
    _check(n_boot, ci)
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if paired:
        if len(x) != len(y):
            raise ValueError(f"paired bootstrap needs equal lengths (a has {len(x)}, b has {len(y)})")
        return bootstrap_ci(x - y, n_boot=n_boot, ci=ci, seed=seed)
    if len(x) == 0 or len(y) == 0:
        return (float("nan"),) * 3
    diff = float(x.mean() - y.mean())
    if len(x) == 1 and len(y) == 1:
        return diff, diff, diff
    rng = np.random.default_rng(seed)
    boot = _resampled_means(x, n_boot, rng) - _resampled_means(y, n_boot, rng)
    lo, hi = _interval(boot, ci)
    return diff, lo, hi


def binomial_upper(k: int, n: int, ci: float = DEFAULT_CI) -> float:
    """Exact (Clopper-Pearson) one-sided upper `ci` bound of a rate seen k times in n trials; nan for n = 0.

    Used where a bootstrap cannot help: 0 of n resamples to [0, 0], yet 0 of 20 only says the rate is below ~14%."""
    if n <= 0:
        return float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"k={k}, n={n}: need 0 <= k <= n")
    if k == n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(ci, k + 1, n - k))


def wilson_ci(k: int, n: int, ci: float = DEFAULT_CI) -> tuple[float, float, float]:
    """(k/n, lo, hi): the rate and its Wilson score interval (Wilson 1927; Agresti & Coull 1998), two-sided `ci`.

    Unlike the bootstrap it stays informative for small n and for 0 or n successes (0 of 10 gives [0, 0.28]), which
    is what reviewers' flag counts look like. n = 0 gives (nan, nan, nan)."""
    from statistics import NormalDist

    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci!r}: must be between 0 and 1 (e.g. 0.95)")
    if n <= 0:
        return (float("nan"),) * 3
    if not 0 <= k <= n:
        raise ValueError(f"k={k}, n={n}: need 0 <= k <= n")
    z = NormalDist().inv_cdf(0.5 + ci / 2.0)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exactly 0 and 1 at the ends (no float round-off)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return p, lo, hi
