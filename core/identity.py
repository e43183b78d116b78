"""Is it the subject? Measures on CLIP features already computed: zero-shot identity of generated images, concept
leakage (does a prompt's second subject survive the token?), the learned token's similarities in CLIP's text space,
and the per-checkpoint summary of the memorisation screen (`cond_gap`, recorded by `generate`).

Pure numpy (torch- and TensorFlow-free), so `score`, the dashboard, the card and the tests all use the same
formulas. Rates carry a percentile-bootstrap 95% interval (core.stats); where every image or none is a hit the
bootstrap has nothing to resample and the exact Clopper-Pearson bound replaces the degenerate end (`ci_method`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from core.stats import DEFAULT_CI, DEFAULT_N_BOOT, binomial_upper, bootstrap_ci, bootstrap_diff_ci

LABEL_TEMPLATE = "a picture of {}"  # zero-shot prompt around every label (subject, initializer class, distractors)
SCREEN_FIRST_STEPS = 5  # cond_gap averages the first sampling steps (Wen et al. 2024 detect with the first few)
SCREEN_QUANTILE = 0.95  # an image is flagged when its cond_gap exceeds this quantile of checkpoint 0's


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ensemble(features: np.ndarray) -> np.ndarray:
    """CLIP's prompt ensembling: the mean of the unit features of one concept's prompts, scaled to length 1."""
    return unit(unit(np.atleast_2d(features)).mean(axis=0))


def article(word: str) -> str:
    """'a cat', 'an owl': the initializer word as a class label."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def label_prompt(label: str) -> str:
    return LABEL_TEMPLATE.format(label)


# --------------------------------------------------------------------------------------------------- rates
def rate_ci(hits: Iterable[bool], n_boot: int = DEFAULT_N_BOOT, ci: float = DEFAULT_CI,
            seed: int = 0) -> dict[str, Any]:
    """{rate, ci_lo, ci_hi, n, k, ci_method} of a share of hits. No hits (or all) gives the exact two-sided bound
    at that end instead of the bootstrap's zero-width interval; no values give rate None."""
    x = np.asarray(list(hits), dtype=np.float64)
    n, k = len(x), int(x.sum())
    if n == 0:
        return {"rate": None, "ci_lo": None, "ci_hi": None, "n": 0, "k": 0, "ci_method": "none (no images)"}
    rate, lo, hi = bootstrap_ci(x, n_boot=n_boot, ci=ci, seed=seed)
    method = f"percentile bootstrap ({n_boot} resamples)"
    one_sided = 1.0 - (1.0 - ci) / 2.0
    if k == 0:
        hi, method = binomial_upper(0, n, one_sided), "exact Clopper-Pearson (no hits)"
    elif k == n:
        lo, method = 1.0 - binomial_upper(0, n, one_sided), "exact Clopper-Pearson (all hits)"
    return {"rate": rate, "ci_lo": lo, "ci_hi": hi, "n": n, "k": k, "ci_method": method}


# ------------------------------------------------------------------------------------------ zero-shot identity
def zero_shot_top(image_features: np.ndarray, label_features: np.ndarray) -> np.ndarray:
    """Index of the label whose (unit) text feature has the highest cosine with each (unit) image feature."""
    img, lab = unit(image_features), unit(label_features)
    return np.argmax(img @ lab.T, axis=1) if len(img) else np.zeros(0, dtype=int)


def identity_rows(steps: Sequence[int], image_features: np.ndarray, label_features: np.ndarray,
                  subject_index: int = 0, n_boot: int = DEFAULT_N_BOOT) -> list[dict[str, Any]]:
    """One row per checkpoint: the share of its images whose top zero-shot label is the subject (index
    `subject_index` of the labels), with its 95% CI and n. `steps[i]` is the checkpoint of image i."""
    steps = np.asarray(steps, dtype=int)
    hits = zero_shot_top(image_features, label_features) == subject_index
    rows = []
    for step in sorted(set(steps.tolist())):
        r = rate_ci(hits[steps == step], n_boot=n_boot)
        rows.append({"step": int(step), "rate": r["rate"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"], "n": r["n"],
                     "k": r["k"], "ci_method": r["ci_method"]})
    return rows


# -------------------------------------------------------------------------------------------------- leakage
def survives(image_features: np.ndarray, second_features: np.ndarray, class_feature: np.ndarray) -> np.ndarray:
    """Per image: does CLIP prefer the phrase of the prompt's second subject (row i of `second_features`) over
    the initializer class (one feature)?"""
    img = unit(image_features)
    return np.sum(img * unit(second_features), axis=1) > img @ unit(class_feature)


def leakage_rows(steps: Sequence[int], keys: Sequence[Any], survived: Sequence[bool],
                 n_boot: int = DEFAULT_N_BOOT) -> list[dict[str, Any]]:
    """One row per checkpoint: the survival rate of the second subject with its CI and n, and its change
    against the same prompts and seeds at checkpoint 0 (`keys[i]` pairs image i with its step-0 twin; a paired
    bootstrap over the pairs found at both; None without a step 0)."""
    steps = np.asarray(steps, dtype=int)
    survived = np.asarray(survived, dtype=bool)
    keys = list(keys)  # hashable keys, e.g. (template, seed) tuples
    base = {k: s for k, s, st in zip(keys, survived, steps) if st == 0}
    rows = []
    for step in sorted(set(steps.tolist())):
        mask = steps == step
        r = rate_ci(survived[mask], n_boot=n_boot)
        row = {"step": int(step), "survival": r["rate"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"], "n": r["n"],
               "k": r["k"], "ci_method": r["ci_method"], "change": None, "change_lo": None, "change_hi": None,
               "n_paired": 0}
        pairs = [(float(survived[i]), float(base[keys[i]])) for i in np.flatnonzero(mask) if keys[i] in base]
        if pairs and base:
            a, b = zip(*pairs)
            row["change"], row["change_lo"], row["change_hi"] = bootstrap_diff_ci(a, b, n_boot=n_boot, paired=True)
            row["n_paired"] = len(pairs)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ token similarity
def token_similarity_row(step: int, token_feature: np.ndarray, reference_features: np.ndarray,
                         subject_feature: np.ndarray | None, init_feature: np.ndarray,
                         distractor_features: Mapping[str, np.ndarray],
                         n_boot: int = DEFAULT_N_BOOT) -> dict[str, Any]:
    """The learned token's text feature (one unit vector, prompt-ensembled) against: each reference image (mean
    cosine with a bootstrap CI over the references), the subject description, the initializer word's prompt and
    each distractor label."""
    t = unit(token_feature)
    refs = unit(reference_features) @ t if len(reference_features) else np.zeros(0)
    mean, lo, hi = bootstrap_ci(refs, n_boot=n_boot) if len(refs) else (None, None, None)
    return {
        "step": int(step),
        "vs_references": mean,
        "vs_references_ci": [lo, hi],
        "n_references": len(refs),
        "vs_subject": None if subject_feature is None else float(unit(subject_feature) @ t),
        "vs_init": float(unit(init_feature) @ t),
        "vs_distractors": {label: float(unit(f) @ t) for label, f in distractor_features.items()},
    }


# ------------------------------------------------------------------------------------- memorisation screen
def screen_rows(steps: Sequence[int], gaps: Sequence[float | None], n_boot: int = DEFAULT_N_BOOT
                ) -> list[dict[str, Any]]:
    """Per checkpoint: n, mean, median, p95 and max of `cond_gap`, and the share of images above checkpoint 0's
    95th percentile (`flagged`, with its CI; None without step-0 images). Images without a gap (older runs) are
    left out and counted in `n_missing`. A screen, not a verdict: a high gap says where to look."""
    steps = np.asarray(steps, dtype=int)
    g = np.asarray([np.nan if v is None else float(v) for v in gaps], dtype=np.float64)
    base = g[(steps == 0) & ~np.isnan(g)]
    threshold = float(np.quantile(base, SCREEN_QUANTILE)) if len(base) else None
    rows = []
    for step in sorted(set(steps.tolist())):
        v = g[steps == step]
        have = v[~np.isnan(v)]
        row: dict[str, Any] = {"step": int(step), "n": len(have), "n_missing": int(len(v) - len(have)),
                               "mean": None, "median": None, "p95": None, "max": None, "threshold": threshold,
                               "flagged": None, "ci_lo": None, "ci_hi": None}
        if len(have):
            row.update(mean=float(have.mean()), median=float(np.median(have)),
                       p95=float(np.quantile(have, SCREEN_QUANTILE)), max=float(have.max()))
            if threshold is not None:
                r = rate_ci(have > threshold, n_boot=n_boot)
                row.update(flagged=r["rate"], ci_lo=r["ci_lo"], ci_hi=r["ci_hi"])
        rows.append(row)
    return rows
