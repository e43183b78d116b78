"""What a review adds up to: flags per checkpoint and per prompt category with Wilson 95% CIs, the agreement between
reviewers, and the findings, from the store's state and the run's image index (images.csv, audit.csv categories).

The unit of every rate is the reviewed image: an image's label is its reviewers' most common current flag (a tie
goes to the more serious flag, in the order of CONSENSUS_ORDER), n is the number of reviewed images in the group
and k how many of them carry the flag. Reviewers' judgments are counted separately (`judgments`); the agreement
between them is core.review.agreement's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from core.review.agreement import Agreement, agreement
from core.review.records import FLAGS
from core.review.store import ReviewState, ReviewStore
from core.runfolder import Run
from core.stats import wilson_ci

CONSENSUS_ORDER = ("harmful", "misuse-transfer", "copy-suspected", "off-model", "other", "on-model")
GENERAL = "general prompts"  # the category of an image whose prompt is not a categorised probe
UNKNOWN = "not in images.csv"


def consensus(flags: Iterable[str]) -> str:
    """The most common flag; a tie goes to the flag that comes first in CONSENSUS_ORDER (the more serious)."""
    counts = Counter(flags)
    top = max(counts.values())
    return next(f for f in CONSENSUS_ORDER if counts.get(f) == top)


@dataclass(frozen=True)
class ImageInfo:
    path: str
    step: int
    prompt: str
    template: str
    seed: int
    category: str


@lru_cache(maxsize=1)
def _probe_categories() -> dict[str, str]:
    from core.prompts import MISUSE_FILE, load_categories

    try:
        return load_categories(MISUSE_FILE)
    except Exception:  # noqa: BLE001 - a missing probe file only loses the category names
        return {}


def image_index(run: Run) -> dict[str, ImageInfo]:
    """path -> ImageInfo from images.csv; the category is the one `audit` recorded (audit.csv), else the misuse
    probe file's category of the template, else GENERAL."""
    audited: dict[str, str] = {}
    if run.audit_path.exists():
        audited = {r["path"]: r["category"] for r in run.read_audit() if r.get("category")}
    probes = _probe_categories()
    out = {}
    for r in run.read_images():
        template = r.get("template") or r.get("prompt", "")
        try:
            step, seed = int(r.get("step") or 0), int(r.get("seed") or 0)
        except ValueError:
            continue  # images.csv damage is reported by the pages that read it
        out[r["path"]] = ImageInfo(r["path"], step, r.get("prompt", ""), template, seed,
                                   audited.get(r["path"]) or probes.get(template) or GENERAL)
    return out


def rate(k: int, n: int) -> dict[str, Any]:
    value, lo, hi = wilson_ci(k, n)
    return {"k": k, "n": n, "rate": value, "lo": lo, "hi": hi}


def rate_text(r: Mapping[str, Any]) -> str:
    """'3/12 = 0.250 (Wilson 95% CI 0.089-0.532)'."""
    if not r.get("n"):
        return "no images"
    return f"{r['k']}/{r['n']} = {r['rate']:.3f} (Wilson 95% CI {r['lo']:.3f}-{r['hi']:.3f})"


def flag_rates(image_flags: Mapping[str, Mapping[str, str]], index: Mapping[str, ImageInfo],
               by: str) -> list[dict[str, Any]]:
    """One row per group (`by` = "step" or "category"): group, n reviewed images, judgments, and per flag its
    k/n rate with a Wilson 95% CI (`flags`), in group order."""
    groups: dict[Any, list[tuple[str, Mapping[str, str]]]] = {}
    for path, flags in image_flags.items():
        info = index.get(path)
        key = (info.step if by == "step" else info.category) if info else UNKNOWN
        groups.setdefault(key, []).append((path, flags))
    rows = []
    for key in sorted(groups, key=lambda k: (isinstance(k, str), k)):
        members = groups[key]
        labels = Counter(consensus(flags.values()) for _, flags in members)
        n = len(members)
        rows.append({by: key, "n": n, "judgments": sum(len(flags) for _, flags in members),
                     "flags": {f: rate(labels.get(f, 0), n) for f in FLAGS}})
    return rows


def flat_rows(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """`flag_rates` rows as one table row per (group, flag) that was used at least once in the review."""
    used = [f for f in FLAGS if any(r["flags"][f]["k"] for r in rows)]
    return [{by: r[by], "flag": f, "images flagged": r["flags"][f]["k"], "images reviewed": r["n"],
             "rate": r["flags"][f]["rate"], "95% CI low": r["flags"][f]["lo"], "95% CI high": r["flags"][f]["hi"]}
            for r in rows for f in used]


@dataclass(frozen=True)
class ReviewSummary:
    """A run's review, added up (see the module docstring); `empty` when nobody has flagged or found anything."""

    state: ReviewState
    by_step: tuple[dict[str, Any], ...]
    by_category: tuple[dict[str, Any], ...]
    agreement: Agreement
    reviewed_images: int
    index: Mapping[str, ImageInfo]

    @property
    def empty(self) -> bool:
        return not self.state.active and not self.state.findings

    def labels(self) -> dict[str, str]:
        """image path -> its consensus flag."""
        return {path: consensus(a.flag for a in flags.values()) for path, flags in self.state.image_flags().items()}

    def to_json(self) -> dict[str, Any]:
        return {"reviewed_images": self.reviewed_images, "reviewers": self.state.reviewers,
                "flag_counts": self.state.flag_counts(), "by_step": list(self.by_step),
                "by_category": list(self.by_category), "agreement": self.agreement.to_json(),
                "unit": "reviewed image (its reviewers' most common current flag)", "ci": "Wilson 95%",
                **self.state.to_json()}


def summarize_state(state: ReviewState, index: Mapping[str, ImageInfo]) -> ReviewSummary:
    flags = {path: {r: a.flag for r, a in by.items()} for path, by in state.image_flags().items()}
    return ReviewSummary(state, tuple(flag_rates(flags, index, "step")), tuple(flag_rates(flags, index, "category")),
                         agreement(flags), len(flags), index)


def summarize(run: Run) -> ReviewSummary:
    """The review of `run`: its store folded and added up. A damaged line is a UserError naming file and line."""
    return summarize_state(ReviewStore(run).state(), image_index(run))
