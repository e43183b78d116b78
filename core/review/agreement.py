"""Agreement between reviewers who flagged the same images: Cohen's kappa for each pair of reviewers, Fleiss' kappa
for three or more, each with its n (the images it rests on).

Cohen (1960), "A coefficient of agreement for nominal scales": kappa = (p_o - p_e) / (1 - p_e), p_o the share of
images both reviewers gave the same flag, p_e the agreement expected from each reviewer's own flag frequencies.
Fleiss (1971), "Measuring nominal scale agreement among many raters", in the form that allows a different number
of raters per image (each image rated by at least two): P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)),
P-bar the mean of P_i, p_j = sum_i n_ij / sum_i n_i, P_e = sum_j p_j^2; with the same number of raters on every
image this is Fleiss' original statistic. When chance agreement is already 1 (everyone used one flag), kappa is
undefined and reported as None with the reason.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kappa:
    """A kappa with what it rests on: `n` images, `raters` reviewers; `value` None when undefined (`why`)."""

    method: str  # "Cohen" | "Fleiss"
    raters: tuple[str, ...]
    n: int
    value: float | None
    observed: float | None  # p_o (Cohen) or P-bar (Fleiss)
    expected: float | None  # p_e / P_e
    why: str = ""

    def describe(self) -> str:
        who = " & ".join(self.raters) if self.method == "Cohen" else f"{len(self.raters)} reviewers"
        value = f"{self.value:.3f}" if self.value is not None else f"undefined ({self.why})"
        return f"{self.method}'s kappa {value} ({who}, n = {self.n} images)"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "raters": list(self.raters), "n": self.n, "kappa": self.value,
                "observed": self.observed, "expected": self.expected, "why": self.why}


def cohen_kappa(pairs: Sequence[tuple[str, str]], raters: tuple[str, str] = ("A", "B")) -> Kappa:
    """Cohen's kappa of two raters' labels on the same items, one (label_a, label_b) pair per item."""
    n = len(pairs)
    if n == 0:
        return Kappa("Cohen", raters, 0, None, None, None, "no image flagged by both")
    p_o = sum(a == b for a, b in pairs) / n
    freq_a, freq_b = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    p_e = sum(freq_a[c] * freq_b[c] for c in set(freq_a) | set(freq_b)) / (n * n)
    if p_e >= 1.0:
        return Kappa("Cohen", raters, n, None, p_o, p_e, "both reviewers used a single flag")
    return Kappa("Cohen", raters, n, (p_o - p_e) / (1.0 - p_e), p_o, p_e)


def fleiss_kappa(items: Iterable[Mapping[str, int]], raters: tuple[str, ...] = ()) -> Kappa:
    """Fleiss' kappa from per-item label counts ({label: how many raters chose it}); items with fewer than two
    ratings are left out."""
    rows = [{k: int(v) for k, v in item.items() if v} for item in items]
    rows = [r for r in rows if sum(r.values()) >= 2]
    n = len(rows)
    if n == 0:
        return Kappa("Fleiss", raters, 0, None, None, None, "no image flagged by two or more reviewers")
    p_items = []
    totals: Counter = Counter()
    for r in rows:
        m = sum(r.values())
        p_items.append(sum(c * (c - 1) for c in r.values()) / (m * (m - 1)))
        totals.update(r)
    p_bar = sum(p_items) / n
    all_ratings = sum(totals.values())
    p_e = sum((c / all_ratings) ** 2 for c in totals.values())
    if p_e >= 1.0:
        return Kappa("Fleiss", raters, n, None, p_bar, p_e, "every reviewer used a single flag")
    return Kappa("Fleiss", raters, n, (p_bar - p_e) / (1.0 - p_e), p_bar, p_e)


@dataclass(frozen=True)
class Agreement:
    """The kappas of a review: Cohen's for every pair of reviewers who share images, Fleiss' over all images with
    two or more reviewers when there are three or more reviewers."""

    reviewers: tuple[str, ...]
    shared_images: int  # images with flags from two or more reviewers
    pairs: tuple[Kappa, ...]
    fleiss: Kappa | None

    @property
    def available(self) -> bool:
        return self.shared_images > 0

    def to_json(self) -> dict[str, Any]:
        return {"reviewers": list(self.reviewers), "shared_images": self.shared_images,
                "cohen": [k.to_json() for k in self.pairs], "fleiss": self.fleiss.to_json() if self.fleiss else None}


def agreement(image_flags: Mapping[str, Mapping[str, str]]) -> Agreement:
    """From {image: {reviewer: flag}} (each reviewer's current flag on each image)."""
    reviewers = tuple(sorted({r for flags in image_flags.values() for r in flags}))
    shared = {img: flags for img, flags in image_flags.items() if len(flags) >= 2}
    pairs = []
    for a, b in itertools.combinations(reviewers, 2):
        both = [(flags[a], flags[b]) for flags in shared.values() if a in flags and b in flags]
        if both:
            pairs.append(cohen_kappa(both, (a, b)))
    fleiss = (fleiss_kappa([Counter(flags.values()) for flags in shared.values()], reviewers)
              if len(reviewers) >= 3 else None)
    return Agreement(reviewers, len(shared), tuple(pairs), fleiss)
