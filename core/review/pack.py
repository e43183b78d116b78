"""`python -m core review-pack RUN [--compare RUN2] [--out FILE.html]`: a run's limitations review as one
self-contained HTML file to present offline or print to PDF: the run's summary, its images per checkpoint, CLIP
scores with CIs, the measured risks, the human review (flags with Wilson CIs, agreement, findings, notes) and the
model card. Every part is read from what earlier stages wrote (scores.json, audit.json, the review store, the card
built by core.card); a part that is missing says so and names the command that makes it. Random-weight runs carry
the PIPELINE CHECK label. Options are the fields of `PackConfig`; the default output is
RUNS_DIR/reports/RUN/review-pack.html (core.runfolder.card_dir)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import StrictConfig, add_options, add_run_argument, check, from_args, option
from core.errors import UserError
from core.review.pack_html import (
    Html,
    badge,
    esc,
    image_uri,
    img,
    join,
    note,
    page,
    pipeline_banner,
    section,
    table,
    tag,
)
from core.review.summary import ReviewSummary, rate_text, summarize
from core.runfolder import Run, atomic_write_bytes, card_dir, counterpart_run

PACK_NAME = "review-pack.html"


@dataclass
class PackConfig(StrictConfig):
    """`review-pack` options besides the run."""

    compare: Path | None = option(None, "a second run to include (the character/style counterpart); the card's "
                                        "comparison is read from the folder `compare` wrote", metavar="RUN2")
    out: Path | None = option(None, f"the HTML file to write; default RUNS_DIR/reports/RUN/{PACK_NAME}",
                              metavar="FILE.html")
    thumb: int = option(160, "longest side of the image thumbnails in the grids, px (JPEG, inline)")
    max_per_checkpoint: int = option(60, "most images shown per checkpoint in the grids (the review section "
                                         "shows every flagged image)")

    def validate(self) -> None:
        check(32 <= self.thumb <= 1024, "thumb", self.thumb, "must be 32-1024 px")
        check(1 <= self.max_per_checkpoint <= 10_000, "max_per_checkpoint", self.max_per_checkpoint,
              "must be 1-10000")


def _anchor(run: Run, part: str) -> str:
    return f"{run.name}-{part}"


def _thumb(run: Run, rel: str, size: int, alt: str) -> Html:
    """An image of the run (contained in it) as an inline thumbnail, or a short note why it cannot be shown."""
    try:
        return img(image_uri(run.resolve_inside(rel, what="image"), size), alt)
    except UserError as e:
        return tag("span", f"not shown: {e}", cls="muted")


# ------------------------------------------------------------------------------------------------ sections
def summary_part(run: Run, review: ReviewSummary) -> Html:
    rec = run.record
    rows = [("run", run.name), ("status", rec.status), ("kind", rec.kind), ("learns", rec.property),
            ("token", rec.token.placeholder), ("initializer", rec.token.initializer or "-"),
            ("weights", rec.weights.describe()), ("training steps", rec.steps if rec.steps is not None else "-"),
            ("checkpoints", ", ".join(map(str, run.embedding_steps())) or "none"),
            ("generated images", len(review.index)), ("reviewed images", review.reviewed_images),
            ("reviewers", ", ".join(review.state.reviewers) or "none")]
    banner = [pipeline_banner()] if rec.is_pipeline_check else []
    return section(f"Run {run.name}", _anchor(run, "summary"), *banner, table(["", ""], rows))


def grids_part(run: Run, review: ReviewSummary, cfg: PackConfig) -> Html:
    labels = review.labels()
    by_step: dict[int, list] = {}
    for info in review.index.values():
        by_step.setdefault(info.step, []).append(info)
    if not by_step:
        return section("Images per checkpoint", _anchor(run, "grids"),
                       tag("p", f"No generated images: run `python -m core generate {run.path} --checkpoints all`."))
    parts = []
    for step in sorted(by_step):
        infos = by_step[step][: cfg.max_per_checkpoint]
        seeds = sorted({i.seed for i in infos})
        templates = list(dict.fromkeys(i.template for i in infos))
        cell = {(i.template, i.seed): i for i in infos}
        rows = []
        for t in templates:
            row: list[Any] = [t]
            for s in seeds:
                i = cell.get((t, s))
                row.append(join([_thumb(run, i.path, cfg.thumb, f"{i.prompt} (seed {s}, step {step})"),
                                 badge(labels[i.path]) if i.path in labels else ""]) if i else "")
            rows.append(row)
        shown = f" (first {len(infos)} of {len(by_step[step])})" if len(by_step[step]) > len(infos) else ""
        parts += [tag("h3", f"Step {step}" + (" (initializer)" if step == 0 else "") + shown),
                  table(["prompt template"] + [f"seed {s}" for s in seeds], rows, cls="grid")]
    return section("Images per checkpoint", _anchor(run, "grids"), *parts)


def scores_part(run: Run) -> Html:
    from core.card.formatting import number

    title, anchor = "CLIP scores (means with bootstrap 95% CIs, as `score` wrote them)", _anchor(run, "scores")
    record = run.scores_record()
    if record is None or not record.by_step:
        return section(title, anchor, tag("p", f"Not scored: run `python -m core score {run.path} --references DIR`."))
    parts: list[Any] = [pipeline_banner()] if record.is_pipeline_check else []
    stale = run.scores_stale(record)
    if stale:
        parts.append(tag("p", f"Out of date: {stale}", cls="callout"))
    rows = [[r["step"], r["n"], f"{number(r['clip_i_mean'])} [{number(r['clip_i_lo'])}, {number(r['clip_i_hi'])}]",
             f"{number(r['clip_t_mean'])} [{number(r['clip_t_lo'])}, {number(r['clip_t_hi'])}]"]
            for r in record.by_step]
    parts.append(table(["step", "images", "CLIP-I (reconstruction)", "CLIP-T (editability)"], rows))
    parts.append(tag("p", f"CLIP: {record.clip_label or record.clip.get('model', '?')}; bootstrap resamples: "
                          f"{record.n_boot or 'not recorded'}.", cls="muted"))
    return section(title, anchor, *parts)


def risks_part(run: Run) -> Html:
    from core.card.risks import rate_text as bootstrap_rate
    from core.card.risks import read_risks

    risks = read_risks(run)
    parts: list[Any] = [pipeline_banner()] if risks.pipeline_check else []
    adv = risks.advice or {}
    rec = adv.get("recommended")
    parts.append(tag("p", f"Recommended checkpoint: {'none' if rec is None else f'step {rec}'}. "
                          f"{adv.get('reason') or risks.advice_error}"))
    audit = risks.audit
    if audit is None:
        parts.append(tag("p", risks.audit_error))
        return section("Measured risks", _anchor(run, "risks"), *parts)
    parts.append(table(["step", "images", "copy rate (any measure)", "pHash", "CLIP"],
                       [[r["step"], r["n"], bootstrap_rate(r["copy"]), bootstrap_rate(r["copy_phash"]),
                         bootstrap_rate(r["copy_clip"])] for r in audit.copy_rates]))
    mis = audit.misuse
    if mis.get("available"):
        parts.append(tag("p", f"Misuse transfer: {mis.get('method', '')}."))
        parts.append(table(["step", "category", "learned concept comes through"],
                           [[r["step"], r["category"], bootstrap_rate(r)] for r in mis.get("by_step_category", [])]))
    pairs = [p for p in audit.pairs if p.get("measure") == "phash"] or list(audit.pairs)
    figures = [tag("figure", join([_thumb(run, p["image"], 640, f"pair {p['rank']}"),
                                   tag("figcaption", f"#{p['rank']} ({p['measure']}) step {p['step']}: "
                                                     f"{'FLAGGED' if p.get('flagged') else 'not flagged'} · "
                                                     f"{p.get('training_file', '')}")]))
               for p in pairs]
    if figures:
        parts += [tag("h3", "Closest generated / training pairs"), tag("div", join(figures), cls="pairs")]
    return section("Measured risks", _anchor(run, "risks"), *parts)


def _flag_table(rows: Any, by: str) -> Html:
    used = [f for f in rows[0]["flags"] if any(r["flags"][f]["k"] for r in rows)] if rows else []
    return table([by, "reviewed images"] + used,
                 [[r[by], r["n"]] + [rate_text(r["flags"][f]) for f in used] for r in rows])


def review_part(run: Run, review: ReviewSummary, cfg: PackConfig) -> Html:
    state, title, anchor = review.state, "Human review", _anchor(run, "review")
    if review.empty:
        return section(title, anchor, tag("p", f"No flags or findings yet: `python -m core review {run.path} --image "
                                               "PATH --flag FLAG --reviewer NAME`, or the dashboard's review mode."))
    parts: list[Any] = [tag("p", f"{review.reviewed_images} reviewed image(s), {len(state.active)} current flag "
                                 f"line(s), {len(state.retracted)} retracted, by {', '.join(state.reviewers)}. Rates: "
                                 "share of reviewed images whose most common flag is the one named, with Wilson 95% "
                                 "CIs.")]
    if review.by_step:
        parts += [tag("h3", "Flags per checkpoint"), _flag_table(list(review.by_step), "step"),
                  tag("h3", "Flags per prompt category"), _flag_table(list(review.by_category), "category")]
    ag = review.agreement
    kappas = [k.describe() for k in ag.pairs + ((ag.fleiss,) if ag.fleiss else ())]
    parts += [tag("h3", "Agreement between reviewers"),
              tag("ul", join(tag("li", k) for k in kappas)) if kappas else
              tag("p", "No image was flagged by two or more reviewers.")]
    if state.findings:
        parts += [tag("h3", "Findings"), table(
            ["id", "title", "severity", "status", "mitigation", "reviewer", "date", "evidence", "text"],
            [[f.id, f.title + (" (retracted)" if f.retracted else ""), f.severity, f.status, note(f.mitigation or "-"),
              f.reviewer, f.date, note("\n".join(f.evidence) or "-"), note(f.text)] for f in state.findings])]
    rows = [[a.id, a.time, a.reviewer, badge(a.flag),
             _thumb(run, a.target.path, cfg.thumb, a.target.path) if a.target.type == "image" else "",
             a.target.describe(), note(a.note)] for a in state.active]
    parts += [tag("h3", "Flags"), table(["id", "time", "reviewer", "flag", "image", "target", "note"], rows)]
    parts += [tag("p", f"warning: {w}", cls="callout") for w in state.warnings]
    return section(title, anchor, *parts)


def card_part(run: Run, compare: Run | None) -> Html:
    from core.card import build_card, fragment

    notes = []
    try:
        try:
            card = build_card(run, compare)
        except UserError as e:
            if compare is None:
                raise
            card = build_card(run)  # the card without the character-vs-style part, saying why
            notes.append(tag("p", f"The card below leaves out the comparison with {compare.name}: {e}", cls="callout"))
    except UserError as e:  # not ready (unscored images, scoring running, ...) or damaged: say which
        return section("Model card", _anchor(run, "card"), tag("p", f"Not included: {e}", cls="callout"))
    keep = set(card.figures)  # a figure without its picture would point at a file outside the pack: left out
    sections = [dataclasses.replace(s, blocks=[b for b in s.blocks if getattr(b, "kind", "") != "figure"
                                               or b.name in keep]) for s in card.sections]
    return section("Model card", _anchor(run, "card"), *notes,
                   Html(fragment(dataclasses.replace(card, sections=sections))))


# ---------------------------------------------------------------------------------------------------- pack
def run_parts(run: Run, compare: Run | None, cfg: PackConfig) -> list[Html]:
    review = summarize(run)
    return [summary_part(run, review), grids_part(run, review, cfg), scores_part(run), risks_part(run),
            review_part(run, review, cfg), card_part(run, compare)]


def contents(runs: list[Run]) -> Html:
    items = [tag("li", join([tag("a", f"{r.name}: {label}", href=f"#{_anchor(r, part)}")]))
             for r in runs for part, label in (("summary", "summary"), ("grids", "images"), ("scores", "CLIP scores"),
                                               ("risks", "risks"), ("review", "human review"), ("card", "model card"))]
    return tag("nav", join([tag("h2", "Contents", id="contents"), tag("ul", join(items))]))


def build_pack(run: Run, compare: Run | None = None, cfg: PackConfig | None = None,
               generated: str | None = None) -> bytes:
    """The review pack of `run` (and `compare`) as the bytes of one HTML file."""
    cfg = cfg or PackConfig()
    runs = [run] + ([compare] if compare is not None else [])
    parts: list[Any] = [contents(runs)]
    for r in runs:
        parts += run_parts(r, run if r is compare else compare, cfg)
    generated = generated or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Limitations review: {' and '.join(r.name for r in runs)}"
    return page(title, parts, any(r.record.is_pipeline_check for r in runs), generated)


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser, command: str) -> None:
    add_run_argument(parser, "run folder (made by `train` or `import`)")
    add_options(parser, PackConfig)


def run(args) -> int:
    cfg = from_args(PackConfig, args)
    main = Run(args.run)
    main.record  # a UserError naming the folder (or the damaged key) if it is not a run
    compare = counterpart_run(main, cfg.compare)
    out = cfg.out or card_dir(main) / PACK_NAME
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the HTML file to write, e.g. {out / PACK_NAME}")
    data = build_pack(main, compare, cfg)
    atomic_write_bytes(out, data)
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB)" + (" - PIPELINE CHECK (random weights)"
                                                       if b'class="pipeline-check"' in data else ""))
    return 0


__all__ = ["PackConfig", "build_pack", "esc"]
