"""Typed records of the run folder's JSON files (run.json, scores.json): validated once, where they are read.

Everything else in the project uses these records and never indexes the JSON (tests/test_boundaries.py enforces
it). A missing or damaged key is a one-line UserError naming the file and the dotted key; keys older versions did
not write get the value stated in the record's docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError

SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed", "interrupted")
PIPELINE_CHECK_LABEL = (
    "PIPELINE CHECK - random weights: these outputs test the code path only and say nothing about "
    "what Stable Diffusion learns."
)
KINDS = ("train", "import")
PROPERTIES = ("object", "style")
REAL_WEIGHT_SOURCES = ("kerascv", "local")


class JsonFields:
    """Typed access to one JSON object read from `path`; every failure names the file and the dotted key."""

    def __init__(self, path: Path, data: Any, prefix: str = ""):
        self.path, self.data, self.prefix = path, data, prefix

    def _fail(self, key: str, rule: str) -> UserError:
        return UserError(f"{self.path}: key {self.prefix + key!r} {rule}; the file is damaged or was edited by "
                         "hand - restore it (or delete the folder)")

    def get(self, key: str, types: type | tuple, *, required: bool = True, default: Any = None,
            choices: tuple | None = None) -> Any:
        """data[key] checked against `types` (and `choices`); absent or null: an error if required, else default."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._fail(key, "is missing" if key not in self.data else "is null")
            return default
        want = types if isinstance(types, tuple) else (types,)
        if float in want and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
            names = " or ".join(t.__name__ for t in want)
            raise self._fail(key, f"must be {names}, found {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise self._fail(key, f"is {value!r}, expected one of {', '.join(map(str, choices))}")
        return value

    def sub(self, key: str, *, required: bool = True) -> JsonFields:
        return JsonFields(self.path, self.get(key, dict, required=required, default={}), f"{self.prefix}{key}.")


@dataclass(frozen=True)
class WeightsProvenance:
    """Where a run's Stable Diffusion weights came from (run.json `weights`): `random` runs are pipeline checks."""

    source: str  # kerascv | local | random
    seed: int | None = None  # the seed of random weights
    files: Mapping[str, str] = field(default_factory=dict)  # weight file -> sha256 (kerascv, local)
    verified: bool | None = None  # local files matched KerasCV's sha256 (None: not applicable)
    note: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as written, for re-recording

    @property
    def is_pipeline_check(self) -> bool:
        """True unless the weights are KerasCV's files (downloaded or local): never present it as a model result."""
        return self.source not in REAL_WEIGHT_SOURCES

    def as_dict(self) -> dict[str, Any]:
        """The provenance as run.json holds it (what scores.json, PNG chunks and cards record)."""
        return dict(self.raw)

    def describe(self) -> str:
        """One line: 'random (PIPELINE CHECK)' or 'kerascv: kcv_encoder.h5 sha256 abcd... (verified)'."""
        if self.is_pipeline_check:
            return f"{self.source} (PIPELINE CHECK)"
        parts = [f"{Path(name).name} sha256 {str(sha)[:12]}" for name, sha in self.files.items()]
        tail = "" if self.verified is None else (" (verified)" if self.verified else " (NOT verified)")
        return f"{self.source}: " + ("; ".join(parts) if parts else "files not recorded") + tail

    @classmethod
    def parse(cls, r: JsonFields) -> WeightsProvenance:
        files = r.get("files", dict, required=False, default={})
        files = {str(k): str(v.get("sha256") if isinstance(v, dict) else v) for k, v in files.items()}
        return cls(source=r.get("source", str), seed=r.get("seed", int, required=False),
                   files=files, verified=r.get("verified", bool, required=False),
                   note=r.get("note", str, required=False, default=""), raw=dict(r.data))


@dataclass(frozen=True)
class TokenInfo:
    """The learned token (run.json `token`): placeholder, initializer word, vectors per token, their token names."""

    placeholder: str
    initializer: str | None  # None for imported embeddings
    vectors: int
    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, r: JsonFields) -> TokenInfo:
        placeholder = r.get("placeholder", str)
        vectors = r.get("vectors", int)
        if vectors < 1:
            raise r._fail("vectors", f"must be >= 1, found {vectors}")
        tokens = r.get("tokens", list)
        if len(tokens) != vectors or not all(isinstance(t, str) for t in tokens):
            raise r._fail("tokens", f"must list {vectors} token name(s), found {tokens!r}")
        return cls(placeholder, r.get("initializer", str, required=False), vectors, tuple(tokens))


@dataclass(frozen=True)
class Timings:
    """run.json `timings`: wall-clock seconds of training over all sessions, steps done, start/finish times."""

    seconds_total: float = 0.0
    steps_done: int = 0
    started: float | None = None
    finished: float | None = None
    last_session_started: float | None = None

    @classmethod
    def parse(cls, r: JsonFields) -> Timings:
        return cls(seconds_total=r.get("seconds_total", float, required=False, default=0.0),
                   steps_done=r.get("steps_done", int, required=False, default=0),
                   started=r.get("started", float, required=False),
                   finished=r.get("finished", float, required=False),
                   last_session_started=r.get("last_session_started", float, required=False))


@dataclass(frozen=True)
class RunRecord:
    """run.json, validated once (see `Run.record`). `config` is the full resolved config as saved (a TrainConfig
    for `train` runs; for `import` runs the generation settings); the fields below it are what consumers need.

    Keys that older writers or `import` never wrote have the value the writer meant, stated here once:
    `config.allow_unverified` False and `config.mixed_precision` "no" (import runs generate in float32),
    `steps` None for imports (no training budget), `versions`/`hardware` empty for imports."""

    name: str
    kind: str  # train | import
    status: str  # running | finished | failed | interrupted
    property: str  # object | style
    token: TokenInfo
    weights: WeightsProvenance
    config: Mapping[str, Any]
    resolution: int  # training (and default generation) resolution, px
    weights_arg: str  # the --weights value: kerascv | random | DIR (rebuilds the WeightSpec to generate with)
    weights_seed: int
    allow_unverified: bool
    mixed_precision: str  # no | bf16 | fp16
    steps: int | None  # training budget (--steps); None for imported embeddings
    final_step: int | None  # last checkpoint of a finished run
    last_checkpoint: int | None
    timings: Timings
    versions: Mapping[str, str]
    hardware: Mapping[str, Any]
    message: str | None  # why the run stopped (failed / interrupted), with the command that continues it
    created: float | None
    updated: float | None
    source_file: Mapping[str, Any] | None  # import runs: the embedding file and its sha256
    pid: int | None = None  # the process that last set status `running` (see Run.stale_reason)
    heartbeat: float | None = None  # when that process last wrote a checkpoint

    @property
    def is_pipeline_check(self) -> bool:
        return self.weights.is_pipeline_check

    @classmethod
    def parse(cls, path: Path, data: Any) -> RunRecord:
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a JSON object; restore it or delete the run")
        r = JsonFields(path, data)
        r.get("schema_version", int, choices=(SCHEMA_VERSION,))
        kind = r.get("kind", str, choices=KINDS)
        cfg = r.sub("config")
        return cls(
            name=r.get("name", str), kind=kind, status=r.get("status", str, choices=STATUSES),
            property=r.get("property", str, choices=PROPERTIES),
            token=TokenInfo.parse(r.sub("token")), weights=WeightsProvenance.parse(r.sub("weights")),
            config=dict(cfg.data), resolution=cfg.get("resolution", int), weights_arg=cfg.get("weights", str),
            weights_seed=cfg.get("weights_seed", int),
            allow_unverified=cfg.get("allow_unverified", bool, required=False, default=False),
            mixed_precision=cfg.get("mixed_precision", str, required=False, default="no",
                                    choices=("no", "bf16", "fp16")),
            steps=cfg.get("steps", int, required=kind == "train"),
            final_step=r.get("final_step", int, required=False),
            last_checkpoint=r.get("last_checkpoint", int, required=False),
            timings=Timings.parse(r.sub("timings", required=False)),
            versions={str(k): str(v) for k, v in r.get("versions", dict, required=False, default={}).items()},
            hardware=dict(r.get("hardware", dict, required=False, default={})),
            message=r.get("message", str, required=False),
            created=r.get("created", float, required=False), updated=r.get("updated", float, required=False),
            source_file=r.get("source_file", dict, required=False),
            pid=r.get("pid", int, required=False), heartbeat=r.get("heartbeat", float, required=False),
        )


SUMMARY_KEYS = ("n", "clip_i_mean", "clip_i_lo", "clip_i_hi", "clip_t_mean", "clip_t_lo", "clip_t_hi")


@dataclass(frozen=True)
class ScoresRecord:
    """scores.json, validated once (see `Run.scores_record`): the CLIP model and its provenance, the baselines, and
    the summaries `score` computed with its `--n-boot` (consumers show these; they never recompute them).

    `inputs` holds the sha256 of images.csv and scores.csv the summaries were computed from; `Run.scores_stale`
    compares them with the files now (None for scores.json written before 0.2, which did not record them)."""

    clip: Mapping[str, Any]  # open_clip model, pretrained tag/file, source (open_clip-tag | local | random), sha256, seed
    clip_label: str
    is_pipeline_check: bool  # SD or CLIP weights random
    pipeline_check_reasons: tuple[str, ...]
    label: str  # PIPELINE_CHECK_LABEL or ""
    complete: bool  # False while (or if interrupted while) scoring
    n_boot: int | None  # bootstrap resamples of every CI below (None: not recorded)
    references: Mapping[str, Any]  # {"dir", "files": [{"file", "sha256"}]}
    reference_ceiling_clip_i: float | None
    reference_ceiling: Mapping[str, Any]  # mean, lo, hi, n_images, n_pairs
    initializer: Mapping[str, Any]  # the step-0 baseline ({"available": bool, ...})
    by_step: tuple[Mapping[str, Any], ...]  # step + SUMMARY_KEYS, one per checkpoint
    by_prompt: tuple[Mapping[str, Any], ...]  # template, step + SUMMARY_KEYS
    n_images: int | None
    inputs: Mapping[str, str] | None  # {"images.csv": sha256, "scores.csv": sha256}
    updated: float | None

    def by_step_frame(self):
        """`by_step` as a DataFrame (step int; empty with the right columns when there is none)."""
        return _summary_frame(self.by_step, ["step"])

    def by_prompt_frame(self):
        return _summary_frame(self.by_prompt, ["template", "step"])

    @classmethod
    def parse(cls, path: Path, data: Any) -> ScoresRecord:
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a JSON object; rerun `python -m core score`")
        r = JsonFields(path, data)
        clip = r.sub("clip")
        clip.get("model", str)
        clip.get("source", str)
        base = r.sub("baselines", required=False)
        summaries = r.sub("summaries", required=False)
        complete = r.get("complete", bool, required=False, default=bool(summaries.data))
        rows = {}
        for key, keys in (("by_step", ("step",)), ("by_prompt", ("template", "step"))):
            value = summaries.get(key, list, required=complete, default=[])
            for i, row in enumerate(value):
                missing = [k for k in keys + SUMMARY_KEYS if not isinstance(row, dict) or k not in row]
                if missing:
                    raise summaries._fail(f"{key}[{i}]", f"lacks {', '.join(missing)}")
            rows[key] = tuple(dict(x) for x in value)
        cfg = r.sub("config", required=False)
        inputs = r.get("inputs", dict, required=False)
        return cls(
            clip=dict(clip.data), clip_label=r.get("clip_label", str, required=False, default=""),
            is_pipeline_check=r.get("pipeline_check", bool, required=False,
                                    default=clip.data.get("source") == "random"),
            pipeline_check_reasons=tuple(r.get("pipeline_check_reasons", list, required=False, default=[])),
            label=r.get("label", str, required=False, default=""), complete=complete,
            n_boot=cfg.get("n_boot", int, required=False), references=r.get("references", dict, required=False,
                                                                              default={}),
            reference_ceiling_clip_i=base.get("reference_ceiling_clip_i", float, required=False),
            reference_ceiling=base.get("reference_ceiling", dict, required=False, default={}),
            initializer=base.get("initializer", dict, required=False, default={}),
            by_step=rows["by_step"], by_prompt=rows["by_prompt"],
            n_images=r.get("n_images", int, required=False),
            inputs={str(k): str(v) for k, v in inputs.items()} if inputs is not None else None,
            updated=r.get("updated", float, required=False),
        )


def _summary_frame(rows, keys: list[str]):
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=keys + list(SUMMARY_KEYS))
    if not df.empty:
        df["step"] = df["step"].astype(int)
        df["n"] = df["n"].astype(int)
    return df
