"""The review's data for the dashboard (issue 20): the run's folded review store with its rates and agreement, and
the review pack's bytes, cached by the files they read (dashboard/data.py's signatures)."""

from __future__ import annotations

from typing import Any

from core.runfolder import Run
from dashboard.cache import caches_errors, file_loader, signature
from dashboard.data import q, run_signature

REVIEW_FILES = ("annotations_path", "findings_path", "images_index_path", "audit_path")


@file_loader(*REVIEW_FILES, max_entries=50)
def review_summary(run: Run) -> Any:
    """`core.review.summary.summarize`: the run's flags per checkpoint and category with Wilson CIs, agreement and
    findings (a `ReviewSummary`), cached by the review files' and images.csv's signatures; DataError naming a
    damaged line."""
    from core.review.summary import summarize

    return summarize(run)


@file_loader(*REVIEW_FILES, max_entries=50)
def image_flag_texts(run: Run) -> dict[str, str]:
    """{image path: 'flags: off-model (ann) · on-model (bob)'} for every flagged image: what the grids show under
    each image, read per image from a small cached dict (the whole summary would be unpickled for each image)."""
    flags = review_summary(str(run.path)).state.image_flags()
    return {rel: "flags: " + " · ".join(f"{a.flag} ({who})" for who, a in sorted(by.items()))
            for rel, by in flags.items() if by}


def review_pack(run_path: str, other_path: str | None = None) -> bytes:
    """The bytes `python -m core review-pack RUN [--compare OTHER]` writes (built on demand, cached by the runs'
    files)."""
    paths = (run_path,) + ((other_path,) if other_path else ())
    # run_signature covers run.json, images.csv, scores, the audit's JSON and the review files; audit.csv beside them
    key = tuple(run_signature(Run(p)) + (signature(Run(p).audit_path),) for p in paths)
    return _review_pack(paths, key)


@caches_errors(lambda paths, key: Run(paths[0]).annotations_path, max_entries=10)
def _review_pack(paths: tuple, key: tuple) -> bytes:
    from core.review.pack import build_pack

    runs = [Run(p) for p in paths]
    return build_pack(runs[0], runs[1] if len(runs) > 1 else None)


def command_review(run_path: str) -> str:
    return f"python -m core review {q(run_path)} --image PATH --flag FLAG --reviewer NAME"
