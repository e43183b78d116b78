"""The facts a model card states, read once from the run folder (and the comparison, and the overrides
card.yaml) and validated there: `read_facts(run, ...) -> CardFacts`, a frozen dataclass the sections only read.

What is *measured* comes from what earlier stages wrote (scores, embeddings, the comparison); what is
*declared* comes from the overrides file; nothing is guessed. Reading the run's records is confined to
`_run_record`, `read_scores` and `read_comparison`, so switching them to typed readers is a few lines.
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
from core.errors import UserError
from core.runfolder import PIPELINE_CHECK_LABEL, Run

UNKNOWN_LICENSES = {"", "unknown", "?", "none", "n/a", "na", "unspecified", "not stated", "todo", "tbd"}
METRICS = ("clip_i", "clip_t")


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class RunRecord:
    """run.json, typed: the only place the card reads its keys."""
    name: str
    status: str
    kind: str
    token: str
    initializer: str
    n_vectors: int
    property: str
    weights: dict
    pipeline_check: bool
    final_step: int | None
    checkpoints: list
    config: dict
    versions: dict
    hardware: dict
    timings: dict
    created: float | None
    updated: float | None


def _run_record(run: Run) -> RunRecord:
    meta = run.meta
    token = meta.get("token")
    if not isinstance(token, Mapping) or not token.get("placeholder"):
        raise UserError(f"{run.meta_path}: records no token (token.placeholder); is this a run made by `train`?")
    config = meta.get("config") or {}
    steps = run.embedding_steps()
    return RunRecord(
        name=run.name, status=str(meta.get("status", "?")), kind=str(meta.get("kind", "")),
        token=str(token["placeholder"]), initializer=str(token.get("initializer", config.get("init", "?"))),
        n_vectors=int(token.get("vectors", config.get("vectors", 1)) or 1),
        property=str(meta.get("property", config.get("property", "object"))), weights=dict(run.weights),
        pipeline_check=run.is_pipeline_check, final_step=meta.get("final_step", steps[-1] if steps else None),
        checkpoints=steps, config=dict(config), versions=dict(meta.get("versions") or {}),
        hardware=dict(meta.get("hardware") or {}), timings=dict(meta.get("timings") or {}),
        created=meta.get("created"), updated=meta.get("updated"))


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
    meta: dict                    # scores.json ({} when absent)
    caveat: str                   # why the numbers carry no information about quality ('' when they do)
    missing_reason: str = ""      # why there are no summaries ('' when there are)

    @property
    def available(self) -> bool:
        return bool(self.by_step)

    @property
    def final(self) -> Summary | None:
        return self.by_step[-1] if self.by_step else None

    def final_means(self) -> dict:
        final = self.final
        return {"step": final.step, "clip_i": final.clip_i.mean, "clip_t": final.clip_t.mean} if final else {}

    def public_meta(self) -> dict | None:
        """scores.json without local paths: CLIP provenance, baselines, reference files (names + sha256)."""
        if not self.meta:
            return None
        keep = ("clip", "clip_label", "baselines", "pipeline_check", "pipeline_check_reasons", "n_images", "complete")
        out = {key: self.meta[key] for key in keep if key in self.meta}
        files = (self.meta.get("references") or {}).get("files")
        if files:
            out["references"] = {"files": files}
        return out

    def as_json(self) -> dict:
        out: dict[str, Any] = {"available": self.available}
        if self.available:
            out.update(by_step=[row.as_json() for row in self.by_step],
                       by_prompt=[row.as_json() for row in self.by_prompt])
        else:
            out["reason"] = self.missing_reason
        return out


def _scores_caveat(record: RunRecord, rows: list, meta: Mapping) -> str:
    if record.pipeline_check:
        return "the diffusion model had random weights"
    if meta.get("pipeline_check"):
        return "; ".join(meta.get("pipeline_check_reasons") or []) or "scores.json marks them as a pipeline check"
    clip = meta.get("clip") or {}
    if "random" in (str(clip.get("source", "")).lower(), str(clip.get("pretrained", "")).lower()) or \
            any(str(row.get("clip_weights", "")).lower() == "random" for row in rows):
        return "the CLIP scorer had random weights"
    return ""


def read_scores(run: Run, record: RunRecord) -> Scores:
    rows = run.read_scores()
    meta = run.read_scores_meta() or {}
    caveat = _scores_caveat(record, rows, meta)
    if not rows:
        return Scores(rows, [], [], meta, caveat,
                      f"no scores yet: run `python -m core score runs/{run.name} --references DIR`")
    from core import score as score_module

    by_step = [_summary(row) for row in score_module.summarize_by_step(rows).to_dict("records")]
    by_prompt = [_summary(row) for row in score_module.summarize_by_prompt(rows).to_dict("records")]
    return Scores(rows, by_step, by_prompt, meta, caveat)


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
    matched_on: str | None = None
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
                                                   "matched_on", "table", "plane")}
        out["figure"] = self.figure_name if self.figure_png else None
        return {**out, "figure_error": self.figure_error} if self.figure_error else out


def _records(frame) -> list[dict]:
    return [{key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
            for row in frame.to_dict("records")]


def read_comparison(run: Run, record: RunRecord, other: Run | None) -> Comparison:
    if other is None:
        return Comparison(False, "no second run given (use --compare RUN_B for character vs style)")
    from core import compare as compare_module

    first, second = run, other
    if record.property == "style" and _run_record(other).property != "style":
        first, second = other, run  # character (object) first, whichever run the card is for
    result = compare_module.compare_runs(first, second)
    runs = result.info["runs"]
    try:  # the plane as a picture for HTML/PDF (PIL drawing: deterministic, needs no browser)
        figure, figure_error = compare_module.render_plane_pil(result), ""
    except Exception as error:  # noqa: BLE001 - a missing picture must not lose the card; say so instead
        figure, figure_error = None, f"{type(error).__name__}: {error}"
    return Comparison(
        True, run_a=first.name, run_b=second.name, property_a=runs["a"]["property"],
        property_b=runs["b"]["property"], pipeline_check=bool(result.info["pipeline_check"]),
        pipeline_check_reasons=list(result.info["pipeline_check_reasons"]),
        notes=[str(note) for note in result.info["notes"]], matched_on=result.info["matched_on"],
        table=_records(result.table), plane=_records(result.plane), figure_png=figure, figure_error=figure_error)


@dataclass(frozen=True)
class TrainingData:
    rows: list                    # dataset.csv rows
    unknown_license_files: list
    licenses: dict                # licence -> image count

    def as_json(self) -> dict:
        return {"rows": self.rows, "unknown_license_files": self.unknown_license_files, "licenses": self.licenses}


def read_training_data(run: Run) -> TrainingData:
    rows = run.read_manifest()
    unknown = [row.get("file", "?") for row in rows
               if str(row.get("license", "")).strip().lower() in UNKNOWN_LICENSES]
    licenses: dict[str, int] = {}
    for row in rows:
        name = str(row.get("license", "")).strip() or "unknown"
        licenses[name] = licenses.get(name, 0) + 1
    return TrainingData(rows, unknown, licenses)


def _environment(run: Run, record: RunRecord, scores: Scores, env_overrides: Mapping) -> energy.Environment:
    training = record.timings.get("seconds_total")
    source = "run.json timings.seconds_total"
    if not isinstance(training, (int, float)) or training <= 0:
        training = max((row["seconds"] for row in run.read_metrics()), default=None)
        source = "last `seconds` in metrics.csv; run.json has no timings.seconds_total"
    generation = 0.0
    for row in run.read_images():  # images.csv records each image's share of its sampler call
        try:
            generation += max(float(row.get("seconds") or 0.0), 0.0)
        except ValueError:
            continue
    scoring = scores.meta.get("seconds") if isinstance(scores.meta.get("seconds"), (int, float)) else None
    return energy.estimate(training, source, generation, scoring, record.hardware, env_overrides)


# ------------------------------------------------------------------------------------------------ facts
@dataclass(frozen=True)
class CardFacts:
    """Everything a card states, read once. Sections only read these fields."""
    run: RunRecord
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

    @property
    def token(self) -> str:
        return self.run.token

    @property
    def pipeline_check(self) -> bool:
        return self.run.pipeline_check

    @property
    def is_character(self) -> bool:
        return self.run.property == "object"


def _warnings(record: RunRecord, run: Run, overrides: Mapping, training: TrainingData, examples: Examples,
              comparison: Comparison, ethics: Mapping) -> list[str]:
    warnings = [PIPELINE_CHECK_LABEL] if record.pipeline_check else []
    if "owner" not in overrides:
        warnings.append(f"The owner (copyright/trademark holder) of what {record.token} depicts is not stated: "
                        f"set 'owner' in {run.card_overrides_path.name}.")
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
    if comparison.available and comparison.pipeline_check and not record.pipeline_check:
        warnings.append("The comparison run has random weights (pipeline check): the comparison says nothing "
                        "about what Stable Diffusion learns.")
    still_open = [ETHICS_ITEMS[key] for key, entry in ethics.items() if entry["status"] == "open"]
    if still_open:
        warnings.append("Ethics checklist items still open: " + ", ".join(still_open) + ".")
    return warnings


def read_facts(run: Run, compare_run: Run | None = None, overrides_path: str | Path | None = None) -> CardFacts:
    """Read and validate everything the card says about `run` (and `compare_run`, its character/style pair)."""
    record = _run_record(run)
    overrides = load_overrides(run, overrides_path)
    training = read_training_data(run)
    scores = read_scores(run, record)
    examples = pick_examples(run, scores.rows)
    comparison = read_comparison(run, record, compare_run)
    ethics = {key: overrides.get("ethics", {}).get(key, {"status": "open", "notes": ""}) for key in ETHICS_ITEMS}
    final = record.final_step
    return CardFacts(
        run=record, run_ref=f"runs/{run.name}",
        date=_dt.datetime.fromtimestamp(float(record.updated or record.created or 0),
                                        tz=_dt.timezone.utc).date().isoformat(),
        final_embedding=(run.embedding_path(final).relative_to(run.path).as_posix() if final is not None
                         else "embeddings/ (none yet)"),
        overrides_file=run.card_overrides_path.name, overrides=overrides,
        owner=overrides.get("owner", OWNER_NOT_STATED), subject=overrides.get("subject", ""), ethics=ethics,
        training_data=training, scores=scores, movement=measure_movement(run, record.token), examples=examples,
        comparison=comparison, environment=_environment(run, record, scores, overrides.get("environment", {})),
        warnings=_warnings(record, run, overrides, training, examples, comparison, ethics))
