"""`python -m core review RUN ...`: add a flag, a finding, an update or a retraction to a run's review, or list it.

    python -m core review RUN --image PATH --flag FLAG [--note TEXT] --reviewer NAME
    python -m core review RUN --checkpoint STEP --flag FLAG ... | --on-run --flag FLAG ...
    python -m core review RUN --finding TITLE --text TEXT --severity S --reviewer NAME [--evidence X ...]
    python -m core review RUN --update FINDING_ID [--status S] [--mitigation TEXT] [--evidence X] --reviewer NAME
    python -m core review RUN --retract ID [--note WHY] --reviewer NAME
    python -m core review RUN --list [--json]

Bad input (an unknown flag or severity, an image the run does not list or a path leaving it, an empty reviewer,
a note over 2,000 characters, control characters) is one line and exit status 2, with nothing written.
Options are the fields of `ReviewConfig`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from core.config import StrictConfig, add_options, add_run_argument, from_args, option
from core.errors import UserError
from core.review.records import FINDING_STATUSES, FLAGS, SEVERITIES, Target
from core.review.store import ReviewStore
from core.review.summary import ReviewSummary, rate_text, summarize
from core.runfolder import PIPELINE_CHECK_LABEL, Run

MODES = ("a flag (--image/--checkpoint/--on-run with --flag)", "--finding", "--update", "--retract", "--list")


@dataclass
class ReviewConfig(StrictConfig):
    """`review` options besides the run: exactly one of the modes in MODES per call."""

    image: str | None = option(None, "flag this image (its path relative to the run, as images.csv lists it)",
                               metavar="PATH")
    checkpoint: int | None = option(None, "flag this checkpoint (a step)", metavar="STEP")
    on_run: bool = option(False, "flag the whole run")
    flag: str | None = option(None, "the flag to give", choices=FLAGS)
    note: str = option("", "a note with the flag, update or retraction (at most 2,000 characters)", metavar="TEXT")
    reviewer: str | None = option(None, "your name, recorded on the line (required to write)", metavar="NAME")
    finding: str | None = option(None, "write a finding with this title", metavar="TITLE")
    text: str | None = option(None, "what the finding says", metavar="TEXT")
    severity: str | None = option(None, "the finding's severity", choices=SEVERITIES)
    status: str | None = option(None, "the finding's status (a new finding: open unless given)",
                                choices=FINDING_STATUSES)
    mitigation: str | None = option(None, "what mitigates the finding", metavar="TEXT")
    evidence: list[str] | None = option(None, "evidence for a finding: an image path, a metric name or a dashboard "
                                              "link; repeat for more", metavar="ITEM", repeat=True)
    update: str | None = option(None, "update the finding with this id (--status, --severity, --mitigation, "
                                      "--evidence)", metavar="FINDING_ID")
    retract: str | None = option(None, "withdraw the flag or finding with this id (a new line; the history stays)",
                                 metavar="ID")
    list_: bool = option(False, "show the run's review: flags, findings, rates with CIs, agreement", flag="--list")
    as_json: bool = option(False, "with --list: print it as JSON", flag="--json")

    def mode(self) -> str:
        """Which of the five things this call does; more or fewer than one is a one-line error."""
        chosen = [name for name, on in (("flag", self.image is not None or self.checkpoint is not None or self.on_run
                                         or self.flag is not None),
                                        ("finding", self.finding is not None), ("update", self.update is not None),
                                        ("retract", self.retract is not None), ("list", self.list_)) if on]
        if len(chosen) != 1:
            what = "nothing" if not chosen else " and ".join(chosen)
            raise UserError(f"review: asked for {what}; give exactly one of: {'; '.join(MODES)}")
        return chosen[0]

    def validate(self) -> None:
        mode = self.mode()
        if mode == "flag":
            targets = sum([self.image is not None, self.checkpoint is not None, self.on_run])
            if targets != 1:
                raise UserError("review: a flag needs exactly one target: --image PATH, --checkpoint STEP or --on-run")
            if self.flag is None:
                raise UserError(f"review: give --flag ({', '.join(FLAGS)})")
        if mode == "finding" and (self.text is None or self.severity is None):
            raise UserError("review --finding: give --text TEXT and --severity (low, medium, high)")
        if self.as_json and mode != "list":
            raise UserError("review: --json goes with --list")
        if mode != "list" and self.reviewer is None:
            raise UserError("review: give --reviewer NAME (it is recorded on the line)")


def add_arguments(parser, command: str) -> None:
    add_run_argument(parser, "run folder (made by `train` or `import`)")
    add_options(parser, ReviewConfig)


def _target(cfg: ReviewConfig) -> Target:
    if cfg.image is not None:
        return Target.image(cfg.image)
    if cfg.checkpoint is not None:
        return Target.checkpoint(cfg.checkpoint)
    return Target("run")


def write(store: ReviewStore, cfg: ReviewConfig, mode: str) -> str:
    """Append the line this call asks for; the one-line confirmation (its id first)."""
    if mode == "flag":
        line = store.add_flag(cfg.reviewer, _target(cfg), cfg.flag, cfg.note)
        return f"{line.id}: {line.flag} on {line.target.describe()} by {line.reviewer}"
    if mode == "finding":
        line = store.add_finding(cfg.reviewer, cfg.finding, cfg.text, cfg.severity, cfg.status or "open",
                                 cfg.mitigation or "", cfg.evidence or [])
        return f"{line.id}: finding {line.title!r} ({line.severity}, {line.status}) by {line.reviewer}"
    if mode == "update":
        line = store.update_finding(cfg.reviewer, cfg.update, severity=cfg.severity, status=cfg.status,
                                    mitigation=cfg.mitigation, evidence=cfg.evidence or [], note=cfg.note)
        return f"{line.id}: updated {line.updates} by {line.reviewer}"
    line = store.retract(cfg.reviewer, cfg.retract, cfg.note)
    return f"{line.id}: retracted {line.retracts} by {line.reviewer}"


def listing(run: Run, summary: ReviewSummary) -> str:
    """The review as text for a terminal (every field was checked for control characters where it entered)."""
    state = summary.state
    out = [f"review of {run.path}" + (f"  [{PIPELINE_CHECK_LABEL}]" if run.record.is_pipeline_check else "")]
    if summary.empty:
        return "\n".join(out + ["  no flags or findings yet"])
    out.append(f"flags: {len(state.active)} current line(s), {len(state.retracted)} retracted; reviewers: "
               f"{', '.join(state.reviewers)}")
    for a in state.active:
        note = f"  note: {a.note!r}" if a.note else ""
        out.append(f"  {a.id}  {a.time}  {a.reviewer}  {a.flag:<15} {a.target.describe()}{note}")
    if summary.by_step:
        out.append("per checkpoint (reviewed images, label = most common flag):")
        for r in summary.by_step:
            used = [f"{f} {rate_text(v)}" for f, v in r["flags"].items() if v["k"]]
            out.append(f"  step {r['step']}: " + "; ".join(used))
    ag = summary.agreement
    if ag.available:
        out.append(f"agreement ({ag.shared_images} image(s) with two or more reviewers):")
        out += [f"  {k.describe()}" for k in ag.pairs + ((ag.fleiss,) if ag.fleiss else ())]
    if state.findings:
        out.append("findings:")
    for f in state.findings:
        tag = "RETRACTED " if f.retracted else ""
        out.append(f"  {f.id}  {tag}[{f.severity}, {f.status}] {f.title!r} by {f.reviewer} on {f.date}"
                   + (f"; mitigation: {f.mitigation!r}" if f.mitigation else ""))
    out += [f"warning: {w}" for w in state.warnings]
    return "\n".join(out)


def run(args) -> int:
    cfg = from_args(ReviewConfig, args)
    review_run = Run(args.run)
    review_run.record  # a UserError naming the folder (or the damaged key) if it is not a run
    mode = cfg.mode()
    if mode == "list":
        summary = summarize(review_run)
        if cfg.as_json:
            json.dump(summary.to_json(), sys.stdout, indent=2, ensure_ascii=False, allow_nan=False,
                      default=lambda v: None)
            print()
        else:
            print(listing(review_run, summary))
        return 0
    print(write(ReviewStore(review_run), cfg, mode))
    return 0
