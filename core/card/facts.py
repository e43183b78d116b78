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
    def n_boot(self) -> int | None:
        """The bootstrap resamples `score --n-boot` used for every interval (None: not recorded)."""
        value = (self.meta.get("config") or {}).get("n_boot")
        return int(value) if isinstance(value, (int, float)) else None

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


def _score_command(run: Run) -> str:
    return f"python -m core score {run.path} --references DIR"


def _check_complete(run: Run, rows: list, meta: Mapping) -> None:
    """The card states complete scores only: every image in images.csv scored, and `score` finished."""
    if meta.get("complete") is False:
        raise UserError(f"{run.scores_meta_path}: scoring is not complete (`score` is running or was interrupted); "
                        f"finish it with `{_score_command(run)}`, then make the card")
    scored = {row.get("path") for row in rows}
    images = {row.get("path") for row in run.read_images()}
    if images - scored:
        raise UserError(f"{run.scores_path}: scores are incomplete ({len(images & scored)} of {len(images)} images "
                        f"in images.csv scored); score the rest with `{_score_command(run)}`")


def _summaries(run: Run, meta: Mapping, key: str) -> list[Summary]:
    rows = (meta.get("summaries") or {}).get(key) if isinstance(meta.get("summaries"), Mapping) else None
    if not isinstance(rows, list) or (key == "by_step" and not rows):
        raise UserError(f"{run.scores_meta_path}: has no summaries.{key} (written by an older or interrupted "
                        f"`score`); rescore with `{_score_command(run)}`")
    try:
        return [_summary(row) for row in rows]  # in the order `score` wrote them (by step, by template)
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{run.scores_meta_path}: summaries.{key} is damaged ({type(error).__name__}: {error}); "
                        f"rescore with `{_score_command(run)}`") from None


def read_scores(run: Run, record: RunRecord) -> Scores:
    """What `score` wrote: scores.csv rows and the summaries in scores.json (computed there with `--n-boot`).
    Nothing is recomputed here: a card shows exactly the intervals `score` printed."""
    rows = run.read_scores()
    meta = run.read_scores_meta() or {}
    caveat = _scores_caveat(record, rows, meta)
    if not rows:
        return Scores(rows, [], [], meta, caveat, f"no scores yet: run `python -m core score runs/{run.name} "
                                                  "--references DIR`")
    _check_complete(run, rows, meta)
    by_step, by_prompt = _summaries(run, meta, "by_step"), _summaries(run, meta, "by_prompt")
    if sum(row.n for row in by_step) != len(rows):
        raise UserError(f"{run.scores_meta_path}: its summaries cover {sum(row.n for row in by_step)} image(s) but "
                        f"scores.csv has {len(rows)}; rescore with `{_score_command(run)}`")
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
                                                   "matched_on", "n_boot", "table", "plane")}
        out["figure"] = self.figure_name if self.figure_png else None
        return {**out, "figure_error": self.figure_error} if self.figure_error else out


def _records(frame) -> list[dict]:
    return [{key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
            for row in frame.to_dict("records")]


def comparison_dir(first: Run, second: Run) -> Path:
    """RUNS_DIR/reports/A-vs-B: where `compare` writes for the card, the demo and the dashboard."""
    return first.path.parent / "reports" / f"{first.name}-vs-{second.name}"


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


def _saved_comparison(first: Run, second: Run, folder: Path | None) -> tuple[Path, dict]:
    """The folder `compare` wrote for this pair (either order) and what is in it; a UserError naming the command
    that makes it when there is none."""
    from core.compare import FILES, load_comparison

    found = Path(folder) if folder is not None else find_comparison(first, second)
    if found is None or not (found / FILES["meta"]).is_file():
        target = found or comparison_dir(first, second)
        raise UserError(f"{target}: no comparison of {first.name} with {second.name}; make it with "
                        f"`{_compare_command(first, second, target)}`")
    return found, load_comparison(found)


def read_comparison(run: Run, record: RunRecord, other: Run | None, scores: Scores,
                    folder: Path | None = None) -> Comparison:
    """The comparison `compare` wrote (never recomputed): refused with the command that remakes it when missing,
    or stale (its numbers are not those of the runs' current scores)."""
    if other is None:
        return Comparison(False, "no second run given (use --compare RUN_B for character vs style)")
    first, second = run, other
    if record.property == "style" and _run_record(other).property != "style":
        first, second = other, run  # character (object) first, whichever run the card is for
    found, saved = _saved_comparison(first, second, folder)
    meta, plane = saved["meta"], _records(saved["plane"])
    runs = meta.get("runs") or {}
    names = {key: (runs.get(key) or {}).get("name") for key in ("a", "b")}
    other_scores = read_scores(other, _run_record(other))
    if set(names.values()) != {run.name, other.name} or \
            _plane_disagrees(plane, run.name, scores) or _plane_disagrees(plane, other.name, other_scores):
        in_order = (second, first) if names.get("a") == second.name else (first, second)
        raise UserError(f"{found}: stale (it does not match the current scores of {run.name} and {other.name}); "
                        f"remake it with `{_compare_command(*in_order, found)}`")
    picture = found / "plane.png"
    png_note = (meta.get("png") or {}).get("warning") if isinstance(meta.get("png"), Mapping) else None
    return Comparison(
        True, run_a=names["a"], run_b=names["b"], property_a=str(runs["a"].get("property", "")),
        property_b=str(runs["b"].get("property", "")), pipeline_check=bool(meta.get("pipeline_check", True)),
        pipeline_check_reasons=[str(reason) for reason in meta.get("pipeline_check_reasons") or []],
        notes=[str(note) for note in meta.get("notes") or []], matched_on=meta.get("matched_on"),
        n_boot=meta.get("n_boot"), table=_records(saved["table"]), plane=plane,
        figure_png=picture.read_bytes() if picture.is_file() else None,
        figure_error="" if picture.is_file() else f"{found.name}/plane.png is missing ({png_note or 'not written'})")


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


def _check_no_writer(run: Run) -> None:
    """A card states finished work only: refused while a command writes the run (iss10's writer lock)."""
    holder = run.lock_holder()
    if holder is not None:
        raise UserError(f"{run.path}: pid {holder.get('pid', '?')} ({holder.get('command', '?')}) is writing this "
                        "run; make the card when it has finished")


def find_comparison(run: Run, other: Run) -> Path | None:
    """The folder `compare` wrote for this pair (RUNS_DIR/reports/A-vs-B, either order), or None."""
    from core.compare import FILES

    return next((folder for folder in (comparison_dir(run, other), comparison_dir(other, run))
                 if (folder / FILES["meta"]).is_file()), None)


def read_facts(run: Run, compare_run: Run | None = None, overrides_path: str | Path | None = None,
               comparison_folder: str | Path | None = None) -> CardFacts:
    """Read and validate everything the card says about `run` (and the comparison with `compare_run`, its
    character/style pair, from the folder `compare` wrote: `comparison_folder`, default RUNS_DIR/reports/A-vs-B)."""
    for each in (run, compare_run) if compare_run is not None else (run,):
        _check_no_writer(each)
    record = _run_record(run)
    overrides = load_overrides(run, overrides_path)
    training = read_training_data(run)
    scores = read_scores(run, record)
    examples = pick_examples(run, scores.rows)
    comparison = read_comparison(run, record, compare_run, scores,
                                 Path(comparison_folder) if comparison_folder is not None else None)
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
