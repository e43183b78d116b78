"""The card's measured-risk facts (issue 13): what `audit` wrote (copy rate, misuse transfer) and core.advice's
recommended checkpoint, read once for the sections; plus which evidence each ethics-checklist item links to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.runfolder import AuditRecord, Run

AUDIT_COMMAND = "python -m core audit {run} --references TRAINING_IMAGES_DIR"
EVIDENCE_SECTION = "Bias, Risks, and Limitations > Measured Risks"
# ethics item -> the evidence in this card it rests on. Copyright points at both measures: the copy rate finds
# memorised near-copies of training images only; a new pose of the character copies no training image and can still
# infringe, which the misuse transfer (does the character come through in other contexts) speaks to (issue 22, 5).
ETHICS_EVIDENCE = {
    "copyright_and_trademark": ("copy rate of the training images (near-copies only) and misuse transfer per "
                                f"category (does the learned concept come through in other contexts); neither "
                                f"shows that an image does not infringe ({EVIDENCE_SECTION})"),
    "consent": "training-image sources and licences (Training Details > Training Data)",
    "misuse": f"misuse transfer per category ({EVIDENCE_SECTION})",
    "bias": "not measured by this tool",
    "ai_disclosure": "not measured by this tool",
}


@dataclass(frozen=True)
class RiskFacts:
    """audit.json (its typed record) and the checkpoint advice; `audit` is None when the run is not audited."""

    audit: AuditRecord | None = None
    advice: dict | None = None
    audit_error: str = ""
    advice_error: str = ""
    pipeline_check: bool = False
    evidence: dict = field(default_factory=lambda: dict(ETHICS_EVIDENCE))

    @property
    def final_copy(self) -> Mapping[str, Any] | None:
        return self.audit.final_copy if self.audit is not None else None


def read_risks(run: Run) -> RiskFacts:
    """The run's audit and advice, or the reason each is missing (never raises for a damaged file: says so)."""
    from core.advice import advise_run

    audit, audit_error, advice, advice_error = None, "", None, ""
    try:
        record = run.audit_record()
        stale = run.audit_stale(record) if record is not None else None
        if stale:
            audit_error = f"The copy audit is out of date, so its numbers are not shown here ({stale})."
        elif record is not None:
            audit = record
        else:
            audit_error = (f"No copy audit yet: run `{AUDIT_COMMAND.format(run=f'runs/{run.name}')}` "
                           "(and generate with --prompts prompts/eval/misuse.txt first for the misuse transfer).")
    except Exception as e:  # noqa: BLE001 - a damaged audit.json is reported in the card, not a crash
        audit_error = f"{run.audit_meta_path.name} cannot be read ({type(e).__name__}: {e}); rerun the audit."
    try:
        advice = advise_run(run)
    except Exception as e:  # noqa: BLE001
        advice_error = f"no checkpoint advice ({type(e).__name__}: {e})"
    pipe = bool(run.is_pipeline_check or (audit is not None and audit.is_pipeline_check)
                or (advice or {}).get("pipeline_check"))
    return RiskFacts(audit=audit, advice=advice, audit_error=audit_error, advice_error=advice_error,
                     pipeline_check=pipe)


def misuse_templates(run: Run) -> frozenset:
    """The prompt templates of misuse probes: those of the default probe file (prompts/eval/misuse.txt) and those
    the run's audit categorised (audit.csv `category`, from the file `audit --misuse` read). Their images are
    evidence for the card's tables, never material for its published figures."""
    from core.errors import UserError
    from core.prompts import MISUSE_FILE, load_categories

    found: set[str] = set()
    try:
        found |= set(load_categories(MISUSE_FILE))
    except UserError:  # the probe file is missing or damaged in this checkout: the audit's list still counts
        pass
    try:
        found |= {row.get("template", "") for row in run.read_audit() if row.get("category")}
    except UserError:  # a damaged audit.csv: the card reports the audit's state in Measured Risks
        pass
    return frozenset(template for template in found if template)


def rate_text(r: dict[str, Any]) -> str:
    """'3/20 = 0.150 (bootstrap 95% CI 0.000-0.300)' with the exact upper bound when nothing was flagged; below two
    images no interval is printed (a bootstrap of one image is a single point), only n (issue 22, point 9)."""
    if not r or not r.get("n"):
        return "no images"
    if r["n"] < 2:
        return f"{r['k']}/{r['n']} = {r['rate']:.3f} (n = {r['n']}: too few images for an interval)"
    text = f"{r['k']}/{r['n']} = {r['rate']:.3f} (bootstrap 95% CI {r['lo']:.3f}-{r['hi']:.3f})"
    if r["k"] == 0 and r.get("exact_hi") is not None:
        text += f"; exact 95% upper bound {r['exact_hi']:.3f}"
    return text
