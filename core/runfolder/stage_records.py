"""Typed records of what the image stages write: scores.json (`score`) and audit.json (`audit`).

Each record parses its file (validated once, where it is read: a missing or damaged key is a one-line UserError
naming the file and the dotted key) and writes it (`to_json`, the inverse of `parse`), so this module is the only
place that knows the keys. Keys older versions did not write get the value stated in the record's docstring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.runfolder.records import JsonFields, RunRecord

SCORES_SCHEMA = 1
AUDIT_SCHEMA = 1
SUMMARY_KEYS = ("n", "clip_i_mean", "clip_i_lo", "clip_i_hi", "clip_t_mean", "clip_t_lo", "clip_t_hi")


REAL_CLIP_SOURCES = ("open_clip-tag", "local")


def pipeline_check_reasons(record: RunRecord, clip: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """Why a result of the run of `record` measured with the CLIP model of provenance `clip` is a pipeline check
    (empty: it is a model result). The one rule score, audit, compare and the card share: random Stable Diffusion
    weights, or CLIP weights that are not a published tag or a local file (random, or not recorded). `prefix`
    names the run where several are described together (compare)."""
    reasons = []
    if record.is_pipeline_check:
        reasons.append(f"{prefix}Stable Diffusion weights: {record.weights.source}")
    source = clip.get("source") if clip is not None else None
    if source == "random":
        reasons.append(f"{prefix}CLIP weights: random (seed {clip.get('seed')})")
    elif source not in REAL_CLIP_SOURCES:
        reasons.append(f"{prefix}CLIP weights: {source or 'not recorded (no scores.json)'}")
    return reasons


@dataclass(frozen=True)
class StageHeader:
    """What score and audit both record before their first image: the CLIP model and its provenance, the config,
    the references, the run they describe, whether the result is a pipeline check and why."""

    clip: Mapping[str, Any]  # open_clip model, pretrained tag/file, source (open_clip-tag/local/random), sha256, seed
    clip_label: str
    config: Mapping[str, Any]  # the stage's full resolved config (n_boot, batch size, references, ...)
    references: Mapping[str, Any]  # {"dir", "files": [{"file", "sha256"}], ...}
    run: Mapping[str, Any]  # {"name", "weights", "token"} of the run described
    is_pipeline_check: bool  # SD or CLIP weights random
    pipeline_check_reasons: tuple[str, ...]
    label: str  # PIPELINE_CHECK_LABEL or ""
    complete: bool  # False while (or if interrupted while) the stage runs
    updated: float | None

    def pipeline_line(self) -> str | None:
        """The line a command prints first about a pipeline-check result (None for a model result)."""
        if not self.is_pipeline_check:
            return None
        return f"{self.label or 'PIPELINE CHECK'} ({'; '.join(self.pipeline_check_reasons)})"

    def header_json(self, schema: int) -> dict[str, Any]:
        return {"schema_version": schema, "clip": dict(self.clip), "clip_label": self.clip_label,
                "config": dict(self.config), "references": dict(self.references), "run": dict(self.run),
                "pipeline_check": self.is_pipeline_check, "pipeline_check_reasons": list(self.pipeline_check_reasons),
                "label": self.label, "complete": self.complete, "updated": self.updated}

    @staticmethod
    def header_fields(r: JsonFields, complete_default: bool, clip_required: bool = True) -> dict[str, Any]:
        clip = r.sub("clip", required=clip_required)
        clip.get("model", str, required=clip_required)
        clip.get("source", str, required=clip_required)
        return dict(
            clip=dict(clip.data), clip_label=r.get("clip_label", str, required=False, default=""),
            config=dict(r.get("config", dict, required=False, default={})),
            references=dict(r.get("references", dict, required=False, default={})),
            run=dict(r.get("run", dict, required=False, default={})),
            is_pipeline_check=r.get("pipeline_check", bool, required=False,
                                    default=clip.data.get("source") == "random"),
            pipeline_check_reasons=tuple(r.get("pipeline_check_reasons", list, required=False, default=[])),
            label=r.get("label", str, required=False, default=""),
            complete=r.get("complete", bool, required=False, default=complete_default),
            updated=r.get("updated", float, required=False))


def _inputs(r: JsonFields) -> dict[str, str] | None:
    inputs = r.get("inputs", dict, required=False)
    return {str(k): str(v) for k, v in inputs.items()} if inputs is not None else None


@dataclass(frozen=True)
class ScoresRecord(StageHeader):
    """scores.json, validated once (see `Run.scores_record`): the CLIP model and its provenance, the baselines, the
    summaries `score` computed with its `--n-boot`, and the checkpoint advice it drew from them (consumers show
    these; they never recompute them).

    `inputs` holds the sha256 of images.csv and scores.csv the summaries were computed from; `Run.scores_stale`
    compares them with the files now (None for scores.json written before 0.2, which did not record them).
    `advice` is None in scores.json written before 0.3 (then `core.advice.advise_run` computes it)."""

    reference_ceiling_clip_i: float | None = None
    reference_ceiling: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # mean, lo, hi, n_images, n_pairs
    initializer: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the step-0 baseline ({"available"..})
    by_step: tuple[Mapping[str, Any], ...] = ()  # step + SUMMARY_KEYS, one per checkpoint
    by_prompt: tuple[Mapping[str, Any], ...] = ()  # template, step + SUMMARY_KEYS
    n_images: int | None = None
    n_scored_now: int | None = None
    n_kept: int | None = None
    inputs: Mapping[str, str] | None = None  # {"images.csv": sha256, "scores.csv": sha256}
    advice: Mapping[str, Any] | None = None  # core.advice.advise on the summaries (front, best, recommended, ...)
    # issue 21's measures (docs/identity.md; absent before 0.3: empty rows / {} / None), rows keyed by IDENTITY_ROW_KEYS
    token_similarity: tuple[Mapping[str, Any], ...] = ()  # per embedding checkpoint: vs_references(_ci), vs_subject..
    token_similarity_provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # computed, encoder..
    identity: tuple[Mapping[str, Any], ...] = ()  # per generated checkpoint: rate, ci_lo, ci_hi, n
    identity_labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # labels, subject, settings, ...
    leakage: tuple[Mapping[str, Any], ...] = ()  # per checkpoint: survival, ci_lo, ci_hi, n, change(_lo/_hi)
    memorisation: tuple[Mapping[str, Any], ...] = ()  # per checkpoint: cond_gap n, mean, median, p95, max, flagged
    protocol: Mapping[str, Any] | None = None  # CustomConcept101: name, rows, published baseline, differences
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # measure -> encoder, tag/sha256, ...

    @property
    def zero_shot_settings(self) -> Mapping[str, Any] | None:
        """What scores.csv's zero-shot columns were computed with (labels, subject, leakage prompts; None: not
        recorded, before 0.3): a rescoring keeps earlier rows only when these are the same."""
        return self.identity_labels.get("settings")

    def identity_json(self, public: bool = False) -> dict[str, Any]:
        """The issue-21 part of scores.json (as `to_json` writes it); `public`: without local paths (the DINO
        weights file is named by its file name and sha256), for the model card's card.json."""
        out = _identity_json(self)
        dino = (out["protocol"] or {}).get("dino")
        if public and isinstance(dino, dict) and dino.get("file"):
            out["protocol"]["dino"] = {**dino, "file": Path(str(dino["file"])).name}
        return out

    @property
    def n_boot(self) -> int | None:
        """Bootstrap resamples of every CI (score's --n-boot; None: not recorded)."""
        value = self.config.get("n_boot")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def by_step_frame(self):
        """`by_step` as a DataFrame (step int; empty with the right columns when there is none)."""
        return _summary_frame(self.by_step, ["step"])

    def by_prompt_frame(self):
        return _summary_frame(self.by_prompt, ["template", "step"])

    def to_json(self) -> dict[str, Any]:
        out = self.header_json(SCORES_SCHEMA)
        if self.complete or self.by_step:
            out.update(
                baselines={"reference_ceiling_clip_i": self.reference_ceiling_clip_i,
                           "reference_ceiling": dict(self.reference_ceiling), "initializer": dict(self.initializer)},
                summaries={"by_step": [dict(r) for r in self.by_step], "by_prompt": [dict(r) for r in self.by_prompt]},
                n_images=self.n_images, n_scored_now=self.n_scored_now, n_kept=self.n_kept,
                inputs=dict(self.inputs) if self.inputs is not None else None,
                advice=dict(self.advice) if self.advice is not None else None)
        out.update(self.identity_json())
        return out

    @classmethod
    def parse(cls, path: Path, data: Any) -> ScoresRecord:
        r = JsonFields.document(path, data, "rerun `python -m core score`")
        if r.data.get("config") is not None:
            cfg = r.sub("config")
            cfg.get("n_boot", int, required=False)
        base = r.sub("baselines", required=False)
        summaries = r.sub("summaries", required=False)
        header = cls.header_fields(r, complete_default=bool(summaries.data))
        rows = {}
        for key, keys in (("by_step", ("step",)), ("by_prompt", ("template", "step"))):
            value = summaries.get(key, list, required=header["complete"], default=[])
            for i, row in enumerate(value):
                missing = [k for k in keys + SUMMARY_KEYS if not isinstance(row, dict) or k not in row]
                if missing:
                    raise summaries._fail(f"{key}[{i}]", f"lacks {', '.join(missing)}")
            rows[key] = tuple(dict(x) for x in value)
        return cls(
            **header,
            reference_ceiling_clip_i=base.get("reference_ceiling_clip_i", float, required=False),
            reference_ceiling=base.get("reference_ceiling", dict, required=False, default={}),
            initializer=base.get("initializer", dict, required=False, default={}),
            by_step=rows["by_step"], by_prompt=rows["by_prompt"],
            n_images=r.get("n_images", int, required=False), n_scored_now=r.get("n_scored_now", int, required=False),
            n_kept=r.get("n_kept", int, required=False), inputs=_inputs(r),
            advice=r.get("advice", dict, required=False), **_identity_fields(r))


IDENTITY_ROW_KEYS = {
    "token_similarity": ("step", "vs_references", "vs_references_ci", "vs_subject", "vs_init", "vs_distractors"),
    "identity": ("step", "rate", "ci_lo", "ci_hi", "n"),
    "leakage": ("step", "survival", "ci_lo", "ci_hi", "n"),
    "memorisation": ("step", "n", "mean", "median", "p95", "max", "flagged"),
}
IDENTITY_DICT_KEYS = ("token_similarity_provenance", "identity_labels", "provenance")
PROTOCOL_KEYS = (("name", str), ("rows", list), ("published_textual_inversion", dict), ("source", str),
                 ("differences", list), ("formulas", dict))


def _identity_fields(r: JsonFields) -> dict[str, Any]:
    """scores.json's issue-21 keys, each row checked for its keys (a damaged row is a one-line error)."""
    out: dict[str, Any] = {}
    for key, keys in IDENTITY_ROW_KEYS.items():
        rows = r.get(key, list, required=False, default=[])
        for i, row in enumerate(rows):
            missing = [k for k in keys if not isinstance(row, dict) or k not in row]
            if missing:
                raise r._fail(f"{key}[{i}]", f"lacks {', '.join(missing)}")
        out[key] = tuple(dict(x) for x in rows)
    for key in IDENTITY_DICT_KEYS:
        out[key] = dict(r.get(key, dict, required=False, default={}))
    protocol = r.get("protocol", dict, required=False)
    if protocol is not None:
        p = r.sub("protocol")
        for key, kind in PROTOCOL_KEYS:
            p.get(key, kind)
    out["protocol"] = dict(protocol) if protocol is not None else None
    return out


def _identity_json(rec: ScoresRecord) -> dict[str, Any]:
    """The inverse of `_identity_fields` (identity_labels carries the zero-shot settings from the first image on)."""
    out: dict[str, Any] = {key: [dict(x) for x in getattr(rec, key)] for key in IDENTITY_ROW_KEYS}
    out.update({key: dict(getattr(rec, key)) for key in IDENTITY_DICT_KEYS})
    out["protocol"] = json_copy(rec.protocol) if rec.protocol is not None else None
    return out


def json_copy(value: Any) -> Any:
    """A deep copy of nested dicts/lists (so a caller's edit of the JSON never reaches the frozen record)."""
    if isinstance(value, Mapping):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_copy(v) for v in value]
    return value


def _summary_frame(rows, keys: list[str]):
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=keys + list(SUMMARY_KEYS))
    if not df.empty:
        df["step"] = df["step"].astype(int)
        df["n"] = df["n"].astype(int)
    return df


@dataclass(frozen=True)
class AuditRecord(StageHeader):
    """audit.json, validated once (see `Run.audit_record`): the copy-audit thresholds with their calibration, the
    copy rates per checkpoint, the closest pairs, the misuse transfer, and what the audit compared against.
    `clip` is {} when not recorded (then `is_pipeline_check` is False unless audit.json says so).

    `inputs` (sha256 of images.csv and scores.csv) lets `Run.audit_stale` say when the audit is out of date (None
    for audit.json written before it was recorded)."""

    hash: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the perceptual hash and its variants
    held_out: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {"dir", "files"}
    thresholds: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # measure -> calibration
    copy_rates: tuple[Mapping[str, Any], ...] = ()  # per checkpoint: step, n, in_null, copy/copy_phash/copy_clip rates
    pairs: tuple[Mapping[str, Any], ...] = ()  # the closest generated/training pairs (audit/pairs/*.png)
    misuse: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {"available": bool, ...}
    misuse_scores: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # scores' clip_label, pipeline_check
    n_images: int | None = None
    n_audited_now: int | None = None
    n_kept: int | None = None
    inputs: Mapping[str, str] | None = None

    @property
    def n_references(self) -> int:
        return len(self.references.get("files") or [])

    @property
    def n_held_out(self) -> int:
        return len(self.held_out.get("files") or [])

    @property
    def final_copy(self) -> Mapping[str, Any] | None:
        """The copy rate of the last audited checkpoint (None when there is none)."""
        return self.copy_rates[-1] if self.copy_rates else None

    def to_json(self) -> dict[str, Any]:
        out = self.header_json(AUDIT_SCHEMA)
        out.update(hash=dict(self.hash), held_out=dict(self.held_out))
        if self.complete or self.thresholds:
            out.update(thresholds={k: dict(v) for k, v in self.thresholds.items()},
                       copy_rates=[dict(r) for r in self.copy_rates], pairs=[dict(p) for p in self.pairs],
                       misuse=dict(self.misuse), misuse_scores=dict(self.misuse_scores), n_images=self.n_images,
                       n_audited_now=self.n_audited_now, n_kept=self.n_kept,
                       inputs=dict(self.inputs) if self.inputs is not None else None)
        return out

    @classmethod
    def parse(cls, path: Path, data: Any) -> AuditRecord:
        r = JsonFields.document(path, data, "rerun `python -m core audit RUN --references TRAINING_IMAGES_DIR`")
        header = cls.header_fields(r, complete_default=False, clip_required=False)
        thresholds = r.get("thresholds", dict, required=header["complete"], default={})
        for m, cal in thresholds.items():
            if not isinstance(cal, dict) or "threshold" not in cal:
                raise r._fail(f"thresholds.{m}", "lacks threshold")
        rates = r.get("copy_rates", list, required=header["complete"], default=[])
        for i, rate in enumerate(rates):
            missing = [k for k in ("step", "n", "copy") if not isinstance(rate, dict) or k not in rate]
            if missing:
                raise r._fail(f"copy_rates[{i}]", f"lacks {', '.join(missing)}")
        return cls(
            **header, hash=r.get("hash", dict, required=False, default={}),
            held_out=r.get("held_out", dict, required=False, default={}),
            thresholds={str(k): dict(v) for k, v in thresholds.items()},
            copy_rates=tuple(dict(x) for x in rates),
            pairs=tuple(dict(x) for x in r.get("pairs", list, required=False, default=[]) if isinstance(x, dict)),
            misuse=r.get("misuse", dict, required=False, default={}),
            misuse_scores=r.get("misuse_scores", dict, required=False, default={}),
            n_images=r.get("n_images", int, required=False), n_audited_now=r.get("n_audited_now", int, required=False),
            n_kept=r.get("n_kept", int, required=False), inputs=_inputs(r))
