"""Typed records of the run folder's JSON files (run.json, scores.json): validated once, where they are read.

Everything else in the project uses these records and never indexes the JSON (tests/test_boundaries.py enforces
it). A missing or damaged key is a one-line UserError naming the file and the dotted key; keys older versions did
not write get the value stated in the record's docstring.
"""

from __future__ import annotations

import builtins
import time
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
REAL_WEIGHT_SOURCES = ("kerascv", "local", "checkpoint")  # checkpoint: a user's SD 1.x file, converted


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

    @classmethod
    def document(cls, path: Path, data: Any, fix: str, schema: int | None = None) -> JsonFields:
        """A whole JSON file's object: anything else is a UserError saying `fix`; `schema`: its schema_version."""
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a JSON object; {fix}")
        fields = cls(path, data)
        if schema is not None:
            fields.get("schema_version", int, choices=(schema,))
        return fields

    def sub(self, key: str, *, required: bool = True) -> JsonFields:
        return JsonFields(self.path, self.get(key, dict, required=required, default={}), f"{self.prefix}{key}.")


@dataclass(frozen=True)
class CheckpointInfo:
    """run.json `weights` of source `checkpoint`: the user's SD 1.x checkpoint the weights were converted from
    (core.convert's source.json: the same keys)."""

    format: str  # safetensors | ckpt | diffusers
    file: str  # the single file or diffusers folder, resolved
    sha256: str  # of the file (a diffusers folder: of its files' sha256 listing)
    short_hash: str  # A1111's short hash: the first 10 hex digits of sha256
    dtype: str  # fp32 | fp16 | bf16 | e.g. fp16+fp32
    ema: str  # none in file | not used (as A1111 and diffusers) | used (--ema)
    vae_file: str | None  # --vae FILE, if one replaced the checkpoint's VAE
    vae_sha256: str | None
    modelspec: Mapping[str, str]  # the file's ModelSpec metadata (modelspec.title, modelspec.license, ...)

    @property
    def name(self) -> str:
        """The checkpoint's name as A1111 lists it: the file name without its extension."""
        return Path(self.file).stem if self.format != "diffusers" else Path(self.file).name

    @property
    def licence(self) -> str | None:
        """The licence the file's ModelSpec metadata states, or None (never assumed)."""
        return self.modelspec.get("modelspec.license") or None

    @classmethod
    def parse(cls, r: JsonFields) -> CheckpointInfo:
        vae = r.sub("vae", required=False)
        spec = r.get("modelspec", dict, required=False, default={})
        return cls(format=r.get("format", str), file=r.get("file", str), sha256=r.get("sha256", str),
                   short_hash=r.get("short_hash", str), dtype=r.get("dtype", str), ema=r.get("ema", str),
                   vae_file=vae.get("file", str, required=False), vae_sha256=vae.get("sha256", str, required=False),
                   modelspec={str(k): str(v) for k, v in spec.items()})


@dataclass(frozen=True)
class WeightsProvenance:
    """Where a run's Stable Diffusion weights came from (run.json `weights`): `random` runs are pipeline checks."""

    source: str  # kerascv | local | checkpoint | random
    seed: int | None = None  # the seed of random weights
    files: Mapping[str, str] = field(default_factory=dict)  # weight file -> sha256 (kerascv, local, checkpoint)
    verified: bool | None = None  # local files matched KerasCV's sha256 (None: not applicable)
    note: str = ""
    checkpoint: CheckpointInfo | None = None  # source `checkpoint`: the file the .h5 files were converted from
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as written, for re-recording

    @property
    def is_pipeline_check(self) -> bool:
        """True unless the weights are KerasCV's files (downloaded or local): never present it as a model result."""
        return self.source not in REAL_WEIGHT_SOURCES

    def as_dict(self) -> dict[str, Any]:
        """The provenance as run.json holds it (what scores.json, PNG chunks and cards record)."""
        return dict(self.raw)

    def to_json(self) -> dict[str, Any]:
        """run.json's `weights` object: as it was read (keeping what this version does not model), or, for a
        provenance built in code, its fields."""
        if self.raw:
            return dict(self.raw)
        out = {"source": self.source, "seed": self.seed, "files": dict(self.files) or None,
               "verified": self.verified, "note": self.note or None}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "weights provenance") -> WeightsProvenance:
        """A provenance dict as `core.weights.WeightSpec.provenance()` makes it, validated like run.json's."""
        return cls.parse(JsonFields(Path(where), dict(data)))

    def describe(self) -> str:
        """One line: 'random (PIPELINE CHECK)' or 'kerascv: kcv_encoder.h5 sha256 abcd... (verified)'."""
        if self.is_pipeline_check:
            return f"{self.source} (PIPELINE CHECK)"
        if self.checkpoint is not None:
            c = self.checkpoint
            vae = f", VAE {Path(c.vae_file).name}" if c.vae_file else ""
            return f"checkpoint: {c.name} [{c.short_hash}] ({c.format}, {c.dtype}{vae})"
        parts = [f"{Path(name).name} sha256 {str(sha)[:12]}" for name, sha in self.files.items()]
        tail = "" if self.verified is None else (" (verified)" if self.verified else " (NOT verified)")
        return f"{self.source}: " + ("; ".join(parts) if parts else "files not recorded") + tail

    @classmethod
    def parse(cls, r: JsonFields) -> WeightsProvenance:
        files = r.get("files", dict, required=False, default={})
        files = {str(k): str(v.get("sha256") if isinstance(v, dict) else v) for k, v in files.items()}
        source = r.get("source", str)
        return cls(source=source, seed=r.get("seed", int, required=False),
                   files=files, verified=r.get("verified", bool, required=False),
                   note=r.get("note", str, required=False, default=""),
                   checkpoint=CheckpointInfo.parse(r) if source == "checkpoint" else None, raw=dict(r.data))


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

    def to_json(self) -> dict[str, Any]:
        return {"placeholder": self.placeholder, "initializer": self.initializer, "vectors": self.vectors,
                "tokens": list(self.tokens)}


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

    def to_json(self) -> dict[str, Any]:
        out = {"started": self.started, "seconds_total": self.seconds_total, "steps_done": self.steps_done,
               "last_session_started": self.last_session_started, "finished": self.finished}
        return {k: v for k, v in out.items() if v is not None}


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
    weights_arg: str  # the --weights value: kerascv | random | DIR | FILE (rebuilds the WeightSpec to generate with)
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
    vae_arg: str | None = None  # `config.vae`: --vae FILE with --weights FILE/DIR (None without it and in older runs)
    ema: bool = False  # `config.ema`: the EMA weights of a full checkpoint were used (False in older runs)

    @builtins.property  # the field `property` above is the run's object/style kind
    def is_pipeline_check(self) -> bool:
        return self.weights.is_pipeline_check

    @classmethod
    def new(cls, *, name: str, kind: str, property: str, token: TokenInfo, weights: WeightsProvenance,  # noqa: A002
            config: Mapping[str, Any], status: str = "running", final_step: int | None = None,
            timings: Timings | None = None, source_file: Mapping[str, Any] | None = None,
            now: float | None = None) -> RunRecord:
        """The record of a new run (what `Run.create` writes), validated by the same rules as a read one."""
        now = time.time() if now is None else now
        data = {"schema_version": SCHEMA_VERSION, "name": name, "kind": kind, "status": status,
                "property": property, "token": token.to_json(), "weights": weights.to_json(), "config": dict(config),
                "final_step": final_step, "timings": (timings or Timings()).to_json(),
                "source_file": dict(source_file) if source_file is not None else None, "created": now, "updated": now}
        return cls.parse(Path(name) / "run.json", {k: v for k, v in data.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        """run.json as this record states it: the inverse of `parse` (`parse(p, r.to_json()) == r`). A None field
        is written as null, which readers take as absent (so an update can clear `message`). Fields derived from
        `config` (resolution, weights_arg, ...) are written through `config`."""
        return {"schema_version": SCHEMA_VERSION, "name": self.name, "kind": self.kind, "status": self.status,
                "property": self.property, "token": self.token.to_json(), "weights": self.weights.to_json(),
                "config": dict(self.config), "final_step": self.final_step, "last_checkpoint": self.last_checkpoint,
                "timings": self.timings.to_json(), "versions": dict(self.versions), "hardware": dict(self.hardware),
                "message": self.message, "created": self.created, "updated": self.updated,
                "source_file": dict(self.source_file) if self.source_file is not None else None, "pid": self.pid,
                "heartbeat": self.heartbeat}

    @classmethod
    def parse(cls, path: Path, data: Any) -> RunRecord:
        r = JsonFields.document(path, data, "restore it or delete the run", SCHEMA_VERSION)
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
            vae_arg=cfg.get("vae", str, required=False), ema=cfg.get("ema", bool, required=False, default=False),
        )

    def weight_spec(self):
        """The WeightSpec the run's weights came from (core.weights), to generate with the same ones."""
        from core.weights import WeightSpec

        return WeightSpec.parse(self.weights_arg, self.weights_seed, self.allow_unverified, self.vae_arg, self.ema)
