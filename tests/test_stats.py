"""core.stats: percentile-bootstrap CIs of a mean and of a difference of means."""

import subprocess
import sys

import numpy as np
import pytest

from core.stats import bootstrap_ci, bootstrap_diff_ci


def test_mean_and_interval_contain_each_other():
    rng = np.random.default_rng(1)
    for n in (2, 3, 10, 100):
        for _ in range(20):
            x = rng.exponential(size=n)  # skewed on purpose
            m, lo, hi = bootstrap_ci(x)
            assert m == pytest.approx(x.mean())
            assert lo <= m <= hi
            assert lo < hi


def test_deterministic_for_a_seed_and_varies_with_it():
    x = np.random.default_rng(0).normal(size=30)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_single_and_empty():
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    assert all(np.isnan(v) for v in bootstrap_ci([]))


def test_coverage_close_to_nominal():
    """About 95% of intervals from normal samples contain the true mean (percentile bootstrap is a bit narrow
    at n=40, so the band is wide; a broken interval, e.g. quantiles of the data, falls far outside it)."""
    rng = np.random.default_rng(2)
    hits = sum(lo <= 0.0 <= hi for lo, hi in
               (bootstrap_ci(rng.normal(size=40), n_boot=1000, seed=i)[1:] for i in range(300)))
    assert 0.88 <= hits / 300 <= 0.99


def test_interval_shrinks_with_more_data():
    rng = np.random.default_rng(3)
    _, lo1, hi1 = bootstrap_ci(rng.normal(size=20))
    _, lo2, hi2 = bootstrap_ci(rng.normal(size=2000))
    assert hi2 - lo2 < (hi1 - lo1) / 4


def test_ci_level():
    x = np.random.default_rng(4).normal(size=50)
    _, lo90, hi90 = bootstrap_ci(x, ci=0.90)
    _, lo99, hi99 = bootstrap_ci(x, ci=0.99)
    assert lo99 < lo90 and hi90 < hi99


def test_difference_unpaired_and_paired():
    rng = np.random.default_rng(5)
    shared = rng.normal(size=40)  # per-(prompt, seed) effect common to both runs
    a = shared + 0.3 + 0.05 * rng.normal(size=40)
    b = shared + 0.05 * rng.normal(size=40)
    d, lo, hi = bootstrap_diff_ci(a, b)
    dp, lop, hip = bootstrap_diff_ci(a, b, paired=True)
    assert d == pytest.approx(a.mean() - b.mean()) and dp == pytest.approx(d)
    assert lo <= d <= hi and lop <= dp <= hip
    assert hip - lop < (hi - lo) / 3  # pairing removes the shared noise
    assert lop > 0.2 and hip < 0.4
    assert bootstrap_diff_ci(a, b, paired=True) == bootstrap_ci(a - b)


def test_difference_edge_cases():
    assert bootstrap_diff_ci([1.0], [0.25]) == (0.75, 0.75, 0.75)
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_diff_ci([1, 2, 3], [1, 2], paired=True)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="ci="):
        bootstrap_ci([1.0, 2.0], ci=95)


def test_torch_free_modules():
    """The dashboard and the card import these: they must not pull torch or TensorFlow."""
    code = ("import sys, core.stats, core.score, core.compare, core.clip_score; "
            "bad = [m for m in ('torch', 'tensorflow', 'open_clip', 'keras') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert r.returncode == 0, r.stdout + r.stderr
