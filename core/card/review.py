"""The card's human-review facts: what reviewers recorded in RUN/review/ (core.review), added up once for the
"Human review" subsection, the ethics checklist's evidence column and card.json (findings as Model Card
Toolkit-style considerations: name + mitigation_strategy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.runfolder import Run

REVIEW_COMMAND = "python -m core review {run} --image PATH --flag FLAG --reviewer NAME"
SECTION = "Bias, Risks, and Limitations > Human Review"
# which ethics-checklist item a finding bears on, from the flags on its evidence images or its metric names
FLAG_ETHICS = {"copy-suspected": "copyright_and_trademark", "harmful": "misuse", "misuse-transfer": "misuse"}
METRIC_ETHICS = {"copy": "copyright_and_trademark", "misuse": "misuse"}


@dataclass(frozen=True)
class ReviewFacts:
    """The review as the card states it; `summary` is core.review.summary.ReviewSummary (None: nothing readable)."""

    summary: Any = None
    error: str = ""  # why the review could not be read (a damaged line, named)
    evidence: dict = field(default_factory=dict)  # ethics item -> the findings cited for it

    @property
    def available(self) -> bool:
        return self.summary is not None and not self.summary.empty

    def findings(self) -> list:
        return self.summary.state.live_findings() if self.summary is not None else []

    def considerations(self) -> list[dict[str, str]]:
        """Model Card Toolkit's `considerations.ethical_considerations`: one {name, mitigation_strategy} per live
        finding."""
        return [{"name": f.title, "mitigation_strategy": f.mitigation or "none recorded"} for f in self.findings()]

    def as_json(self) -> dict[str, Any]:
        if self.summary is None:
            return {"available": False, "error": self.error}
        return {"available": self.available, **self.summary.to_json()}


def ethics_items(finding: Any, image_flags: dict[str, set[str]]) -> set[str]:
    """The checklist items a finding bears on: copy-suspected flags or a copy metric in its evidence -> copyright
    and trademark; harmful or misuse-transfer flags or a misuse metric -> misuse."""
    items = set()
    for item in finding.evidence:
        for flag in image_flags.get(item, ()):
            if flag in FLAG_ETHICS:
                items.add(FLAG_ETHICS[flag])
        lowered = item.lower()
        if "/" not in item:  # a metric name, not an image path or a link
            items |= {ethic for word, ethic in METRIC_ETHICS.items() if word in lowered}
    return items


def cite(summary: Any) -> dict[str, str]:
    """ethics item -> 'finding "TITLE" (severity, status); ...' for the checklist's evidence column."""
    flags = {path: {a.flag for a in by.values()} for path, by in summary.state.image_flags().items()}
    out: dict[str, list[str]] = {}
    for f in summary.state.live_findings():
        for item in ethics_items(f, flags):
            out.setdefault(item, []).append(f'finding "{f.title}" ({f.severity}, {f.status})')
    return {item: "; ".join(texts) + f" ({SECTION})" for item, texts in out.items()}


def read_review(run: Run) -> ReviewFacts:
    """The run's review, or why it cannot be read (a damaged line is reported in the card, never a crash)."""
    from core.errors import UserError
    from core.review.summary import summarize

    try:
        summary = summarize(run)
    except UserError as e:
        return ReviewFacts(error=f"The review store cannot be read: {e}")
    return ReviewFacts(summary=summary, evidence=cite(summary))
