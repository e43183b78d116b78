"""The "Human Review" subsection of Bias, Risks, and Limitations: reviewers' flags per checkpoint and per prompt
category with Wilson 95% CIs, the agreement between reviewers, the findings and the reviewers' notes (all text from
the review store is plain text here; each renderer escapes it)."""

from __future__ import annotations

from core.card.document import Callout, Mono, Para, Table
from core.card.review import REVIEW_COMMAND
from core.card.sections.common import section

MAX_NOTES = 100  # notes listed in the card (the review pack lists them all)


def _rates_table(rows: list, by: str) -> Table:
    from core.review.summary import rate_text

    used = [f for f in (rows[0]["flags"] if rows else {}) if any(r["flags"][f]["k"] for r in rows)]
    return Table([by, "reviewed images"] + used, [[str(r[by]), str(r["n"])] + [rate_text(r["flags"][f]) for f in used]
                                                  for r in rows])


def _agreement(summary) -> Para:
    ag = summary.agreement
    kappas = [k.describe() for k in ag.pairs + ((ag.fleiss,) if ag.fleiss else ())]
    if not kappas:
        return Para(["Agreement between reviewers: not measurable (no image was flagged by two or more reviewers)."])
    return Para([f"Agreement between reviewers, on the {ag.shared_images} image(s) two or more of them flagged: "
                 + "; ".join(kappas) + "."])


def _findings(findings: list) -> list:
    if not findings:
        return [Para(["Findings: none recorded."])]
    return [Para(["Findings:"]),
            Table(["finding", "severity", "status", "mitigation", "reviewer", "date"],
                  [[f.title, f.severity, f.status, f.mitigation or "-", f.reviewer, f.date] for f in findings])]


def _notes(state) -> list:
    noted = [a for a in state.active if a.note]
    if not noted:
        return []
    more = len(noted) - MAX_NOTES
    shown = f" (the first {MAX_NOTES}; {more} more in the review pack)" if more > 0 else ""
    return [Para([f"Reviewers' notes{shown}:"]),
            Table(["flag", "target", "reviewer", "date", "note"],
                  [[a.flag, a.target.describe(), a.reviewer, a.time[:10], a.note] for a in noted[:MAX_NOTES]])]


def human_review(facts):
    review = facts.review
    title = "Human Review"
    if review.error:
        return section(title, 3, Para([review.error]))
    if not review.available:
        return section(title, 3, Para(["No human review recorded. Reviewers flag images with ",
                                       Mono(REVIEW_COMMAND.format(run=facts.run_ref)),
                                       " or in the dashboard's review mode (python -m dashboard --review)."]))
    summary = review.summary
    state = summary.state
    blocks: list = []
    if facts.pipeline_check:
        blocks.append(Callout(["Pipeline check (random weights): these flags were given to images of random weights "
                               "and say nothing about what the embedding learned."]))
    blocks.append(Para([f"{summary.reviewed_images} image(s) reviewed by {len(state.reviewers)} reviewer(s) "
                        f"({', '.join(state.reviewers)}); {len(state.active)} current flag line(s), "
                        f"{len(state.retracted)} retracted (kept in the history). A rate is the share of reviewed "
                        "images whose most common flag is the one named, with its Wilson 95% CI."]))
    if summary.by_step:
        blocks += [Para(["Flags per checkpoint:"]), _rates_table(list(summary.by_step), "step"),
                   Para(["Flags per prompt category:"]), _rates_table(list(summary.by_category), "category")]
    others = state.other_flags()
    if others:
        blocks.append(Para(["Flags on checkpoints or the whole run: "
                            + "; ".join(f"{a.flag} on {a.target.describe()} ({a.reviewer})" for a in others) + "."]))
    blocks.append(_agreement(summary))
    blocks += _findings(state.live_findings())
    blocks += _notes(state)
    return section(title, 3, *blocks)
