"""The facts a model card states, read once from the run folder (and the comparison, and the overrides
card.yaml) and validated there: `read_facts(run, ...) -> CardFacts`, a frozen dataclass the sections only read.

What is *measured* comes from what earlier stages wrote (scores, embeddings, the comparison); what is
*declared* comes from the overrides file; nothing is guessed. The run's files are read through the typed records
of core/runfolder.py (`Run.record`, `Run.scores_record()`) and core/compare.py (`read_comparison`), validated there.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from core.card import energy
from core.card.examples import Examples, pick_examples
from core.card.movement import Movement, measure_movement
from core.card.overrides import ETHICS_ITEMS, OWNER_NOT_STATED, load_overrides
from core.card.review import ReviewFacts, read_review
from core.card.risks import RiskFacts, misuse_templates, read_risks
from core.errors import UserError
from core.runfolder import PIPELINE_CHECK_LABEL, Run, RunRecord, ScoresRecord, comparison_dir


class CardNotReady(UserError):
    """The card's inputs are not finished yet (unscored images, scoring running or stale, a missing or stale
    comparison, a writer holding the run): a step to run first, named in the message, not damage."""

UNKNOWN_LICENSES = {"", "unknown", "?", "none", "n/a", "na", "unspecified", "not stated", "todo", "tbd"}
METRICS = ("clip_i", "clip_t")


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Summary:
    """One summary row written by `score`: CLIP-I and CLIP-T means with their bootstrap intervals."""
    step: int
    n: int
    clip_i: Interval
    clip_t: Interval
    template: str = ""  # set for the per-prompt summaries

    def as_json(self) -> dict:
        out = {"template": self.template} if self.template else {}
        out.update(step=self.step, n=self.n)
        for metric in METRICS:
            value = getattr(self, metric)
            out.update({f"{metric}_mean": value.mean, f"{metric}_lo": value.lo, f"{metric}_hi": value.hi})
        return out


def _summary(row: Mapping) -> Summary:
    return Summary(step=int(row["step"]), n=int(row["n"]), template=str(row.get("template") or ""),
                   **{metric: Interval(float(row[f"{metric}_mean"]), float(row[f"{metric}_lo"]),
                                       float(row[f"{metric}_hi"])) for metric in METRICS})


@dataclass(frozen=True)
class Scores:
    """What `score` wrote: the per-image rows, the summaries with their intervals, the scorer's provenance."""
    rows: list                    # scores.csv rows
    by_step: list                 # [Summary]
    by_prompt: list               # [Summary]
    record: ScoresRecord | None   # scores.json, typed (None when absent)
    caveat: str                   # why the numbers carry no information about quality ('' when they do)
    missing_reason: str = ""      # why there are no summaries ('' when there are)

    @property
    def available(self) -> bool:
        return bool(self.by_step)

    @property
    def n_boot(self) -> int | None:
        """The bootstrap resamples `score --n-boot` used for every interval (None: not recorded)."""
        return self.record.n_boot if self.record else None

    @property
    def final(self) -> Summary | None:
        return self.by_step[-1] if self.by_step else None

    def final_means(self) -> dict:
        final = self.final
        return {"step": final.step, "clip_i": final.clip_i.mean, "clip_t": final.clip_t.mean} if final else {}

    def public_meta(self) -> dict | None:
        """scores.json without local paths: CLIP provenance, baselines, reference files (names + sha256), and the
        identity measures of issue 21 (token similarity, identity, leakage, memorisation screen, protocol,
        provenance)."""
        record = self.record
        if record is None:
            return None
        out = {"clip": record.clip, "clip_label": record.clip_label, "n_boot": record.n_boot,
               "baselines": {"reference_ceiling_clip_i": record.reference_ceiling_clip_i,
                             "reference_ceiling": record.reference_ceiling, "initializer": record.initializer},
               "pipeline_check": record.is_pipeline_check,
               "pipeline_check_reasons": list(record.pipeline_check_reasons), "n_images": record.n_images,
               "complete": record.complete, **record.identity_json(public=True)}
        files = record.references.get("files")
        return {**out, "references": {"files": files}} if files else out

    def as_json(self) -> dict:
        out: dict[str, Any] = {"available": self.available}
        if self.available:
            out.update(by_step=[row.as_json() for row in self.by_step],
                       by_prompt=[row.as_json() for row in self.by_prompt])
        else:
            out["reason"] = self.missing_reason
        return out


def _scores_caveat(run_record: RunRecord, rows: list, record: ScoresRecord | None) -> str:
    if run_record.is_pipeline_check:
        return "the diffusion model had random weights"
    clip = record.clip if record else {}
    if "random" in (str(clip.get("source", "")).lower(), str(clip.get("pretrained", "")).lower()) or \
            any(str(row.get("clip_weights", "")).lower() == "random" for row in rows):
        return "the CLIP scorer had random weights"
    if record and record.is_pipeline_check:
        return "; ".join(record.pipeline_check_reasons) or "scores.json marks them as a pipeline check"
    return ""


def _score_command(run: Run) -> str:
    return f"python -m core score {run.path} --references DIR"


def _check_complete(run: Run, rows: list, record: ScoresRecord | None) -> None:
    """The card states complete, current scores only: `score` finished, every image in images.csv scored, and
    nothing changed since (score records the sha256 of images.csv and scores.csv)."""
    if record is None:
        raise CardNotReady(f"{run.scores_meta_path}: missing (scores.csv has no summaries beside it); rescore with "
                        f"`{_score_command(run)}`")
    if not record.complete:
        raise CardNotReady(f"{run.scores_meta_path}: scoring is not complete (`score` is running or was interrupted); "
                        f"finish it with `{_score_command(run)}`, then make the card")
    scored = {row.get("path") for row in rows}
    images = {row.get("path") for row in run.read_images()}
    if images - scored:
        raise CardNotReady(f"{run.scores_path}: scores are incomplete ({len(images & scored)} of {len(images)} images "
                        f"in images.csv scored); score the rest with `{_score_command(run)}`")
    stale = run.scores_stale(record)
    if stale:
        raise CardNotReady(f"{run.scores_meta_path}: {stale}")


def read_scores(run: Run, run_record: RunRecord) -> Scores:
    """What `score` wrote: scores.csv rows and the summaries in scores.json (computed there with `--n-boot`).
    Nothing is recomputed here: a card shows exactly the intervals `score` printed."""
    rows = run.read_scores()
    record = run.scores_record()
    caveat = _scores_caveat(run_record, rows, record)
    if not rows:
        return Scores(rows, [], [], record, caveat, f"no scores yet: run `python -m core score runs/{run.name} "
                                                    "--references DIR`")
    _check_complete(run, rows, record)
    by_step, by_prompt = [_summary(row) for row in record.by_step], [_summary(row) for row in record.by_prompt]
    if sum(row.n for row in by_step) != len(rows):  # folders scored before scores.json recorded its inputs
        raise UserError(f"{run.scores_meta_path}: its summaries cover {sum(row.n for row in by_step)} image(s) but "
                        f"scores.csv has {len(rows)}; rescore with `{_score_command(run)}`")
    return Scores(rows, by_step, by_prompt, record, caveat)


@dataclass(frozen=True)
class Comparison:
    """The character-versus-style comparison (`compare`), character (object) run first."""
    available: bool
    reason: str = ""                 # why there is none
    run_a: str = ""
    run_b: str = ""
    property_a: str = ""
    property_b: str = ""
    pipeline_check: bool = False
    pipeline_check_reasons: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    n_boot: int | None = None                   # bootstrap resamples `compare --n-boot` used
    table: list = field(default_factory=list)   # compare.csv rows
    plane: list = field(default_factory=list)   # plane.csv rows
    figure_png: bytes | None = None
    figure_error: str = ""

    figure_name = "comparison-plane.png"

    def as_json(self) -> dict:
        if not self.available:
            return {"available": False, "reason": self.reason}
        out = {key: getattr(self, key) for key in ("available", "run_a", "run_b", "property_a", "property_b",
                                                   "pipeline_check", "pipeline_check_reasons", "notes",
                                                   "n_boot", "table", "plane")}
        out["figure"] = self.figure_name if self.figure_png else None
        return {**out, "figure_error": self.figure_error} if self.figure_error else out


def _records(frame) -> list[dict]:
    return [{key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
            for row in frame.to_dict("records")]


def _compare_command(first: Run, second: Run, folder: Path) -> str:
    return f"python -m core compare {first.path} {second.path} --out {folder}"


def _plane_disagrees(plane: list, name: str, scores: Scores) -> bool:
    """True when plane.csv's per-checkpoint n and means of run `name` differ from that run's scores.json (the
    comparison was made from other scores). Means do not depend on the bootstrap, so they must match exactly."""
    saved = {int(row["step"]): row for row in plane if row["run"] == name}
    if set(saved) != {row.step for row in scores.by_step}:
        return True
    return any(int(saved[row.step]["n"]) != row.n
               or abs(float(saved[row.step]["clip_i_mean"]) - row.clip_i.mean) > 1e-9
               or abs(float(saved[row.step]["clip_t_mean"]) - row.clip_t.mean) > 1e-9 for row in scores.by_step)


def read_comparison(run: Run, run_record: RunRecord, other: Run | None, scores: Scores,
                    folder: Path | None = None) -> Comparison:
    """The comparison `compare` wrote (never recomputed): refused with the command that remakes it when missing,
    or stale (either run rescored since)."""
    from core.compare import read_comparison as read_saved

    if other is None:
        return Comparison(False, "no second run given (use --compare RUN_B for character vs style)")
    first, second = run, other
    if run_record.property == "style" and other.record.property != "style":
        first, second = other, run  # character (object) first, whichever run the card is for
    found = Path(folder) if folder is not None else find_comparison(first, second)
    if found is None or not (found / "compare.json").is_file():
        target = found or comparison_dir(first, second)
        raise CardNotReady(f"{target}: no comparison of {first.name} with {second.name}; make it with "
                        f"`{_compare_command(first, second, target)}`")
    saved = read_saved(found)
    by_name = {run.name: run, other.name: other}
    stale = saved.stale_reason()
    if stale is None and saved.inputs is None:  # written before compare recorded its inputs: check the numbers
        if {saved.a.name, saved.b.name} != set(by_name) or \
                _plane_disagrees(_records(saved.plane), run.name, scores) or \
                _plane_disagrees(_records(saved.plane), other.name, read_scores(other, other.record)):
            in_order = [by_name.get(saved.a.name, first), by_name.get(saved.b.name, second)]
            stale = f"stale: remake it with `{_compare_command(*in_order, found)}`"
    if stale:
        raise CardNotReady(f"{found}: {stale}")
    return Comparison(
        True, run_a=saved.a.name, run_b=saved.b.name, property_a=saved.a.property, property_b=saved.b.property,
        pipeline_check=saved.is_pipeline_check, pipeline_check_reasons=list(saved.pipeline_check_reasons),
        notes=[str(note) for note in saved.notes], n_boot=saved.n_boot, table=_records(saved.table),
        plane=_records(saved.plane), figure_png=saved.png.read_bytes() if saved.png else None,
        figure_error="" if saved.png else f"{found.name}/plane.png is missing ({saved.png_warning or 'not written'})")


@dataclass(frozen=True)
class TrainingData:
    rows: list                    # dataset.csv rows
    unknown_license_files: list
    licenses: dict                # licence -> image count
    restricted_license_files: list = field(default_factory=list)  # a known licence that is not an open one

    def as_json(self) -> dict:
        return {"rows": self.rows, "unknown_license_files": self.unknown_license_files, "licenses": self.licenses,
                "restricted_license_files": self.restricted_license_files}


def read_training_data(run: Run) -> TrainingData:
    from core.card.legal import OPEN_LICENSE_PREFIXES

    rows = run.read_manifest()
    named = [(row.get("file", "?"), str(row.get("license", "")).strip().lower()) for row in rows]
    unknown = [file for file, name in named if name in UNKNOWN_LICENSES]
    # "All rights reserved", "(c) Studio", "screenshot": used under an exception at best (legal.py, issue 22 point 8)
    restricted = [file for file, name in named
                  if name not in UNKNOWN_LICENSES and not name.startswith(OPEN_LICENSE_PREFIXES)]
    licenses: dict[str, int] = {}
    for row in rows:
        name = str(row.get("license", "")).strip() or "unknown"
        licenses[name] = licenses.get(name, 0) + 1
    return TrainingData(rows, unknown, licenses, restricted)


def _environment(run: Run, record: RunRecord, scores: Scores, env_overrides: Mapping) -> energy.Environment:
    training: float | None = record.timings.seconds_total
    source = "run.json timings.seconds_total"
    if not training or training <= 0:
        training = max((row["seconds"] for row in run.read_metrics()), default=None)
        source = "last `seconds` in metrics.csv; run.json has no timings.seconds_total"
    generation = 0.0
    for row in run.read_images():  # images.csv records each image's share of its sampler call
        try:
            generation += max(float(row.get("seconds") or 0.0), 0.0)
        except ValueError:
            continue
    return energy.estimate(training, source, generation, None, record.hardware, env_overrides)  # scoring: not timed


# ------------------------------------------------------------------------------------------------ facts
@dataclass(frozen=True)
class CardFacts:
    """Everything a card states, read once. Sections only read these fields."""
    run: RunRecord                # run.json's typed record (core.runfolder), as it was read
    name: str                     # the run folder's name
    checkpoints: tuple            # the steps with an embedding file
    final_step: int | None        # Run.final_step: the one rule for the final step
    run_ref: str                  # how the card names the run in commands: runs/NAME (never a local path)
    date: str                     # ISO date from run.json (not the clock: same inputs, same bytes)
    final_embedding: str          # the final embedding's path inside the run, or a note that there is none
    overrides_file: str           # the overrides file name (card.yaml)
    overrides: dict
    owner: str
    subject: str
    ethics: dict                  # item -> {status, notes}
    training_data: TrainingData
    scores: Scores
    movement: Movement
    examples: Examples
    comparison: Comparison
    environment: energy.Environment
    warnings: list
    risks: RiskFacts = field(default_factory=RiskFacts)  # audit (copying, misuse transfer) and checkpoint advice
    review: ReviewFacts = field(default_factory=ReviewFacts)  # the human review (RUN/review/, core.review)

    @property
    def token(self) -> str:
        return self.run.token.placeholder

    @property
    def initializer(self) -> str:
        """The initializer word, or '?' for an imported embedding (which has none)."""
        return self.run.token.initializer or "?"

    @property
    def pipeline_check(self) -> bool:
        return self.run.is_pipeline_check

    @property
    def is_character(self) -> bool:
        return self.run.property == "object"


def _warnings(record: RunRecord, run: Run, overrides: Mapping, training: TrainingData, examples: Examples,
              comparison: Comparison, ethics: Mapping) -> list[str]:
    warnings = [PIPELINE_CHECK_LABEL] if record.is_pipeline_check else []
    if "owner" not in overrides:
        warnings.append(f"The owner (the rights holder named in the official copyright/trademark notice) of what "
                        f"{record.token.placeholder} depicts is not stated: set 'owner' in "
                        f"{run.card_overrides_path.name}.")
    if not training.rows:
        warnings.append(f"No training-image manifest ({run.manifest_path.name}): the sources and licences of the "
                        "training images are unknown.")
    elif training.unknown_license_files:
        warnings.append("Training images with unknown licence: " + ", ".join(training.unknown_license_files)
                        + ". Find and record their licences (dataset.csv) or remove them before publishing.")
    warnings += [f"{path}: listed in scores.csv but the image file is missing or unreadable"
                 for path in examples.missing]
    if comparison.figure_error:
        warnings.append(f"Comparison plane not drawn ({comparison.figure_error}); the table is complete.")
    if comparison.available and comparison.pipeline_check and not record.is_pipeline_check:
        warnings.append("The comparison run has random weights (pipeline check): the comparison says nothing "
                        "about what Stable Diffusion learns.")
    still_open = [ETHICS_ITEMS[key] for key, entry in ethics.items() if entry["status"] == "open"]
    if still_open:
        warnings.append("Ethics checklist items still open: " + ", ".join(still_open) + ".")
    return warnings


def _check_no_writer(run: Run) -> None:
    """A card states finished work only: refused while a command writes the run (iss10's writer lock)."""
    holder = run.lock_holder()
    if holder is not None:
        raise CardNotReady(f"{run.path}: pid {holder.get('pid', '?')} ({holder.get('command', '?')}) is writing this "
                        "run; make the card when it has finished")


def find_comparison(run: Run, other: Run) -> Path | None:
    """The folder `compare` wrote for this pair (RUNS_DIR/reports/A-vs-B, either order), or None."""
    return next((folder for folder in (comparison_dir(run, other), comparison_dir(other, run))
                 if (folder / "compare.json").is_file()), None)


def read_facts(run: Run, compare_run: Run | None = None, overrides_path: str | Path | None = None,
               comparison_folder: str | Path | None = None) -> CardFacts:
    """Read and validate everything the card says about `run` (and the comparison with `compare_run`, its
    character/style pair, from the folder `compare` wrote: `comparison_folder`, default RUNS_DIR/reports/A-vs-B)."""
    for each in (run, compare_run) if compare_run is not None else (run,):
        _check_no_writer(each)
    record = run.record  # validated where it is read: a missing or damaged key is a UserError naming it
    overrides = load_overrides(run, overrides_path)
    training = read_training_data(run)
    scores = read_scores(run, record)
    examples = pick_examples(run, scores.rows, misuse_templates(run), record.is_pipeline_check)
    comparison = read_comparison(run, record, compare_run, scores,
                                 Path(comparison_folder) if comparison_folder is not None else None)
    ethics = {key: overrides.get("ethics", {}).get(key, {"status": "open", "notes": ""}) for key in ETHICS_ITEMS}
    final = run.final_step()
    return CardFacts(
        run=record, name=run.name, checkpoints=tuple(run.embedding_steps()), final_step=final,
        run_ref=f"runs/{run.name}",
        date=_dt.datetime.fromtimestamp(float(record.updated or record.created or 0),
                                        tz=_dt.timezone.utc).date().isoformat(),
        final_embedding=(run.embedding_path(final).relative_to(run.path).as_posix() if final is not None
                         else "embeddings/ (none yet)"),
        overrides_file=run.card_overrides_path.name, overrides=overrides,
        owner=overrides.get("owner", OWNER_NOT_STATED), subject=overrides.get("subject", ""), ethics=ethics,
        training_data=training, scores=scores, movement=measure_movement(run, record.token.placeholder),
        examples=examples,
        comparison=comparison, environment=_environment(run, record, scores, overrides.get("environment", {})),
        warnings=_warnings(record, run, overrides, training, examples, comparison, ethics), risks=read_risks(run),
        review=read_review(run))
