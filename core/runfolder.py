"""The run folder: the one module that knows where every file of an experiment lives and how it is written.

A run is a plain folder anyone can open (layout after MLflow's file store). Everything else in the project
(training, generation, scoring, the dashboard, the model card) reads and writes through `Run`; nothing else
builds paths into it. Writes are atomic (temp file + rename); metric and index logs are append-only CSV.

    RUN/
      run.json                     metadata: schema, status, full resolved config, weights provenance,
                                   token(s), timings, package versions, hardware (see `Run.record`)
      metrics.csv                  step,loss,lr,seconds           one line per optimisation step, append-only
      dataset.csv                  file,sha256,bytes,width,height,license,source,author   training images
      embeddings/step-NNNNNN.safetensors   {token: float32[n_vectors, 768]}; step 0 is the initializer
      checkpoints/step-NNNNNN.npz  optimizer state + step for --resume (embedding lives in embeddings/)
      neighbors.csv                step,vector,rank,token,token_id,cosine,distance_from_init  (token explorer)
      images/step-NNNNNN/*.png     generated images (PNG text chunks hold their full provenance)
      images.csv                   one row per generated image (IMAGE_COLUMNS), append-only
      grids/*.png                  labelled prompt x seed and checkpoint x seed grids
      scores.csv                   one row per scored image (SCORE_COLUMNS)
      scores.json                  CLIP model + provenance, baselines (reference ceiling), summaries
      audit.csv                    one row per audited image (AUDIT_COLUMNS): nearest training image per measure
      audit.json                   copy-audit thresholds with their calibration, copy rates, misuse transfer
      audit/pairs/*.png            the closest generated/training pairs side by side (written by `audit`)
      card.yaml                    model-card overrides the user fills (owner, intended use, ethics checklist)
      .writer.lock                 held (flock) by the one command writing the run; holds its pid + command
      logs/<command>.log           tracebacks of failed commands (the terminal shows one line unless --debug)

Every path read from a run goes through `Run.resolve_inside` (no file outside the run, or its declared
references folder, is ever read through a run); one writer at a time holds `Run.writer(command)`.

`weights.source` in run.json is "kerascv", "local" or "random"; a "random" run is a pipeline check and
every consumer must label it so (`Run.record.is_pipeline_check`).

Typed records: the JSON files are validated once, here, where they are read, and consumers use the records
(never the JSON keys; tests/test_boundaries.py enforces it). A missing or damaged key is a one-line UserError
naming the file and the key. Keys older versions did not write get the value stated in the record's docstring.

    Run.record          -> RunRecord: name, kind (train/import), status, property, token (TokenInfo: placeholder,
                           initializer, vectors, tokens), weights (WeightsProvenance: source, files, is_pipeline_check,
                           describe()), config (the saved dict) and resolution, weights_arg, weights_seed,
                           allow_unverified, mixed_precision, steps (budget), final_step, last_checkpoint,
                           timings (Timings), versions, hardware, message, created, updated, source_file, pid,
                           heartbeat.
                           Read once per `Run` instance; `Run.reload()` reads again; `update_meta` keeps it current.
    Run.scores_record() -> ScoresRecord (scores.json): clip provenance and label, pipeline-check flag and reasons,
                           n_boot, references, baselines, the summaries `score` computed (by_step / by_prompt,
                           also as DataFrames), and `inputs` (sha256 of images.csv and scores.csv).
    Run.scores_stale()  -> None, or "stale: ... rerun `python -m core score ...`" when those inputs changed.
    core.compare.read_comparison(folder) -> ComparisonRecord (a folder written by `compare`), with stale_reason().
`Run.meta` (the raw dict) is for this module only.

Where report folders live (one place): `reports_dir(runs_dir)` = RUNS_DIR/reports; `comparison_dir(a, b)` =
RUNS_DIR/reports/A-vs-B; `card_dir(run)` = RUNS_DIR/reports/RUN.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from core.errors import JobFailed, UserError

SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed", "interrupted")
METRIC_COLUMNS = ["step", "loss", "lr", "seconds"]
MANIFEST_COLUMNS = ["file", "sha256", "bytes", "width", "height", "license", "source", "author"]
NEIGHBOR_COLUMNS = ["step", "vector", "rank", "token", "token_id", "cosine", "distance_from_init"]
IMAGE_COLUMNS = [
    "path", "prompt", "template", "negative_prompt", "seed", "step", "steps", "guidance", "token",
    "init_image", "strength", "weights_source", "width", "height", "sampler", "seconds",
]
SCORE_COLUMNS = [
    "path", "step", "prompt", "template", "seed", "clip_i", "clip_t", "clip_model", "clip_weights",
]
AUDIT_COLUMNS = [
    "path", "step", "template", "seed", "category", "phash_nearest", "phash_distance", "clip_nearest",
    "clip_cosine", "heldout_phash_distance", "heldout_clip_cosine", "copy_phash", "copy_clip", "copy",
]
PIPELINE_CHECK_LABEL = (
    "PIPELINE CHECK - random weights: these outputs test the code path only and say nothing about "
    "what Stable Diffusion learns."
)
_STEP_FILE = re.compile(r"^step-(\d{6,})\.(safetensors|npz)$")


# ----------------------------------------------------------------------------------------------- atomic io
def _umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status), so other threads (the dashboard
    is threaded) never see a flipped umask. Without /proc it is read once, setting and restoring it under a lock."""
    global _UMASK_FALLBACK
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        if _UMASK_FALLBACK is None:
            _UMASK_FALLBACK = os.umask(0o022)
            os.umask(_UMASK_FALLBACK)
        return _UMASK_FALLBACK


_UMASK_LOCK = threading.Lock()
_UMASK_FALLBACK: int | None = None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would have
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: Path, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Atomically (re)write a whole CSV with a header."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    atomic_write_text(path, buf.getvalue())


def append_csv(path: Path, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows under an exclusive lock on the file: the header is written only by the process that finds
    the file empty, and a torn last line (a writer killed mid-append) is cut off first, never merged with the
    new rows. Each call ends with a flushed, complete line."""
    import io

    path = Path(path)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    body = buf.getvalue()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size:
            end = _complete_length(fd, size)
            if end != size:
                print(f"{path}: cut a torn last line ({size - end} bytes, a writer was killed mid-append)",
                      file=sys.stderr)
                os.ftruncate(fd, end)
                size = end
        header = "" if size else ",".join(columns) + "\n"
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, (header + body).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _complete_length(fd: int, size: int) -> int:
    """Length of the file up to and including its last newline (0 if it has none)."""
    pos = size
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def read_csv_rows(path: Path, columns: list[str] | None = None) -> list[dict[str, str]]:
    """Rows of a CSV written by this module. A torn last line (killed mid-write) is dropped; with `columns`,
    a header or a row that does not fit them is refused with a UserError naming the file and line."""
    import io

    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); the file is damaged") from e
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    if columns is not None and rows:
        if reader.fieldnames != columns:
            raise UserError(f"{path}: header is {','.join(reader.fieldnames or [])!r}, expected "
                            f"{','.join(columns)!r}; the file is damaged or from another version")
        for i, r in enumerate(rows):
            if None in r or any(v is None for v in r.values()):
                raise UserError(f"{path}: row {i + 2} has {len(r) - (None in r) + len(r.get(None) or [])} "
                                f"fields, expected {len(columns)}; the file is damaged (repair or delete that line)")
    return rows


def one_line(text: str, limit: int = 300) -> str:
    """`text` as one short line: terminal colour codes dropped, whitespace collapsed, cut at `limit`."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_EMBEDDING_BYTES = 64 << 20  # a textual-inversion file holds a few vectors of 768/1024 floats: ~KB


def read_step_embedding(path: Path, dim: int | None = None) -> dict[str, np.ndarray]:
    """A run's own checkpoint file (embeddings/step_N.safetensors; other tools' layouts: core/embedfile.py) ->
    {token: float32[n_vectors, dim]}, validated where it is read: a real safetensors
    file of sane size, every tensor 2-D (n_vectors >= 1) with the same width (`dim` when given), floating point,
    all values finite. Anything else is a one-line UserError naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise UserError(f"{path}: empty embedding file (0 bytes); delete it and re-run the step that writes it")
        if size > MAX_EMBEDDING_BYTES:
            raise UserError(f"{path}: {size:,} bytes is far too large for a textual-inversion embedding")
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the embedding ({e.strerror or e})") from e
    try:
        tensors = dict(load(data))
    except (SafetensorError, ValueError, TypeError, OverflowError) as e:
        raise UserError(f"{path}: not a safetensors embedding ({' '.join(str(e).split())[:160]})") from e
    return validate_step_embedding(tensors, str(path), dim)


def validate_step_embedding(tensors: Mapping[str, Any], source: str, dim: int | None = None) -> dict[str, np.ndarray]:
    """The checks of `read_step_embedding` on tensors already in memory: returns float32 copies."""
    if not tensors:
        raise UserError(f"{source}: holds no tensors; expected {{token: [n_vectors, dim]}}")
    out, widths = {}, set()
    for name, t in tensors.items():
        a = np.asarray(t)
        if a.dtype.kind != "f":
            raise UserError(f"{source}: tensor {name!r} has dtype {a.dtype}; an embedding is floating point")
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise UserError(f"{source}: tensor {name!r} has shape {list(a.shape)}; expected [n_vectors, dim]")
        if dim is not None and a.shape[1] != dim:
            raise UserError(f"{source}: tensor {name!r} is {a.shape[1]} wide; this text encoder needs {dim}")
        if not np.isfinite(a).all():
            raise UserError(f"{source}: tensor {name!r} holds NaN or infinite values; it cannot be used")
        widths.add(a.shape[1])
        out[name] = a.astype(np.float32)
    if len(widths) > 1:
        raise UserError(f"{source}: tensors of different widths {sorted(widths)}")
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()



# ------------------------------------------------------------------------------------------- typed records
# run.json and scores.json are validated once, here, where they are read; everything else in the project uses
# these records and never indexes the JSON. A missing or damaged key is a one-line UserError naming file and key.
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

    def sub(self, key: str, *, required: bool = True) -> "JsonFields":
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
    def parse(cls, r: JsonFields) -> "WeightsProvenance":
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
    def parse(cls, r: JsonFields) -> "TokenInfo":
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
    def parse(cls, r: JsonFields) -> "Timings":
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
    def parse(cls, path: Path, data: Any) -> "RunRecord":
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
    def parse(cls, path: Path, data: Any) -> "ScoresRecord":
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


def reports_dir(runs_dir: str | os.PathLike) -> Path:
    """RUNS_DIR/reports: the one place comparison and model-card folders live (compare, card, demo, dashboard)."""
    return Path(runs_dir) / "reports"


def comparison_dir(run_a: "Run", run_b: "Run") -> Path:
    """Where `compare A B` writes by default and the dashboard looks: RUNS_DIR/reports/A-vs-B (RUNS_DIR = A's)."""
    return reports_dir(run_a.path.parent) / f"{run_a.name}-vs-{run_b.name}"


def card_dir(run: "Run") -> Path:
    """Where `card RUN` writes by default: RUNS_DIR/reports/RUN."""
    return reports_dir(run.path.parent) / run.name


# ------------------------------------------------------------------------------------------------- the run
MAX_NAME_CHARS = 200  # a run folder's name (file systems stop at 255 bytes; leave room for temp files)


def check_run_name(name: str) -> None:
    """A run folder name: 1-200 of letters, digits, '.', '_', '-', not starting with '.', '_' or '-'."""
    if not name:
        raise UserError("--name '': give a run name (letters, digits, '.', '_', '-') or leave --name out")
    if len(name) > MAX_NAME_CHARS:
        raise UserError(f"--name {name[:40]!r}...: {len(name)} characters; use at most {MAX_NAME_CHARS}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")


def check_runs_dir(runs_dir: str | os.PathLike) -> None:
    """The runs folder must be a writable folder, or not exist yet under a writable parent."""
    p = Path(runs_dir)
    if p.exists() and not p.is_dir():
        raise UserError(f"--runs-dir {p}: is a file, not a folder; pass a folder for the runs")
    probe = p if p.exists() else next((a for a in p.absolute().parents if a.exists()), Path("/"))
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--runs-dir {p}: {probe} is not writable; pass a folder you can write to")


_HELD_LOCKS: dict[str, list] = {}  # resolved run path -> [fd, depth] for the writer locks this process holds


class Run:
    """One experiment folder. Construct with an existing path, or use `Run.create`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._meta: dict[str, Any] | None = None  # run.json as read (see `meta`, `record`, `reload`)
        self._record: RunRecord | None = None

    # paths (the only place they are spelled)
    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def manifest_path(self) -> Path:
        return self.path / "dataset.csv"

    @property
    def embeddings_dir(self) -> Path:
        return self.path / "embeddings"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def neighbors_path(self) -> Path:
        return self.path / "neighbors.csv"

    @property
    def images_dir(self) -> Path:
        return self.path / "images"

    @property
    def images_index_path(self) -> Path:
        return self.path / "images.csv"

    @property
    def grids_dir(self) -> Path:
        return self.path / "grids"

    @property
    def scores_path(self) -> Path:
        return self.path / "scores.csv"

    @property
    def scores_meta_path(self) -> Path:
        return self.path / "scores.json"

    @property
    def audit_path(self) -> Path:
        return self.path / "audit.csv"

    @property
    def audit_meta_path(self) -> Path:
        return self.path / "audit.json"

    @property
    def audit_pairs_dir(self) -> Path:
        return self.path / "audit" / "pairs"

    def audit_pair_relpath(self, filename: str) -> str:
        return f"audit/pairs/{filename}"

    @property
    def card_overrides_path(self) -> Path:
        """card.yaml: the user's model-card overrides (YAML; JSON is valid YAML too). Read by `core.card`."""
        return self.path / "card.yaml"

    @property
    def lock_path(self) -> Path:
        return self.path / ".writer.lock"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def log_path(self, command: str) -> Path:
        return self.logs_dir / f"{command}.log"

    @property
    def name(self) -> str:
        return self.path.name

    # ----------------------------------------------------------------------------------------- containment
    def resolve_inside(self, relpath: str | os.PathLike, *, also: Iterable[str | os.PathLike] = (),
                       what: str = "file") -> Path:
        """The real path of `relpath` (relative to the run, or absolute), which must stay inside the run folder
        or one of the folders in `also` (e.g. the run's declared references folder) after every symlink is
        followed. Anything else (`../x`, `/etc/passwd`, a symlink out of the run) is a one-line UserError.
        Use it for every path that comes from a run's files or a listing of its folders."""
        raw = Path(os.fspath(relpath))
        if str(raw) in ("", "."):
            raise UserError(f"{self.path}: empty {what} path")
        if not raw.is_absolute() and not self.path.is_absolute() and raw.is_relative_to(self.path):
            raw = raw.relative_to(self.path)  # a path this Run built (run.grid_path(...)) from a relative run path
        try:
            target = (raw if raw.is_absolute() else self.path / raw).resolve()
        except (OSError, RuntimeError) as e:  # symlink loop
            raise UserError(f"{self.path}: {what} {str(raw)!r} cannot be resolved ({e})") from e
        roots = [self.path.resolve()] + [Path(a).resolve() for a in also if a]
        if not any(target == r or target.is_relative_to(r) for r in roots):
            raise UserError(f"{self.path}: {what} {str(raw)!r} leads outside the run folder (to {target}); "
                            "refused - remove it or regenerate it inside the run")
        return target

    # -------------------------------------------------------------------------------------------- one writer
    @contextlib.contextmanager
    def writer(self, command: str) -> Iterator[None]:
        """Hold the run's writer lock while `command` writes to it: `with run.writer("generate"): ...`.
        A second writer (another process) gets a one-line UserError naming the holder's pid and command. The
        lock is the kernel's (flock): it dies with its process, so a lock left by a killed command is taken
        over. Re-entrant within one process."""
        key = str(self.path.resolve())
        held = _HELD_LOCKS.get(key)
        if held is not None:
            held[1] += 1
            try:
                yield
            finally:
                held[1] -= 1
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        for attempt in range(20):  # a reader's momentary shared lock (lock_holder) must not refuse a writer
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.025)
        else:
            os.close(fd)
            holder = self.lock_holder()
            who = (f"pid {holder['pid']} ({holder.get('command', '?')})" if holder else "another process")
            raise UserError(f"{self.path}: {who} is writing this run; wait for it to end (or stop it) and retry")
        try:
            info = json.dumps({"pid": os.getpid(), "command": command, "argv": sys.argv[:8],
                               "since": time.time()}).encode("utf-8")
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, info, 0)
            except OSError:  # a full disk: the kernel lock still protects the run; the holder is just unnamed
                pass
            _HELD_LOCKS[key] = [fd, 1]
            yield
        finally:
            _HELD_LOCKS.pop(key, None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # the file stays (unlinking a flock file races); empty means free
            os.close(fd)

    def lock_holder(self) -> dict[str, Any] | None:
        """{pid, command, since} of the process writing this run now, or None (read-only; a lock left by a
        dead process is None). Use it to refuse or warn, e.g. a card built while `score` runs."""
        if not self.lock_path.exists():
            return None
        key = str(self.path.resolve())
        if key in _HELD_LOCKS:
            fd = _HELD_LOCKS[key][0]
        else:
            try:
                fd = os.open(self.lock_path, os.O_RDONLY)
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                return None  # nobody holds it
            except BlockingIOError:
                pass
        try:
            raw = os.pread(fd, 4096, 0)
        finally:
            if key not in _HELD_LOCKS:
                os.close(fd)
        try:
            info = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            info = {}
        return {"pid": info.get("pid", "?"), "command": info.get("command", "?"), "since": info.get("since")}

    # ------------------------------------------------------------------------------------------- metadata
    @classmethod
    def create(cls, runs_dir: str | os.PathLike, name: str, meta: Mapping[str, Any]) -> "Run":
        """Make a new run folder; an existing non-empty one is an error (use --resume or another --name)."""
        check_run_name(name)
        check_runs_dir(runs_dir)
        run = cls(Path(runs_dir) / name)
        if run.path.exists() and any(run.path.iterdir()):
            raise UserError(
                f"{run.path}: a run with this name exists; continue it with --resume {run.path} "
                "or choose another --name"
            )
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{run.path}: cannot make the run folder ({e.strerror}); choose another --runs-dir") from e
        now = time.time()
        full = {"schema_version": SCHEMA_VERSION, "name": name, "created": now, "updated": now}
        full.update(meta)
        full.setdefault("status", "running")
        atomic_write_json(run.meta_path, full)
        return run

    @property
    def exists(self) -> bool:
        return self.meta_path.exists()

    def _read_meta(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            raise UserError(f"{self.path}: not a run folder (no run.json); pass a folder made by `train`")
        try:
            data = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.meta_path}: damaged ({e}); restore it or delete the run") from e
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{self.meta_path}: not a schema-{SCHEMA_VERSION} run.json")
        return data

    @property
    def meta(self) -> dict[str, Any]:
        """run.json as a dict (a copy), read once per instance (`reload()` reads it again). Only this module
        indexes it: everyone else reads `record`. A missing or damaged file raises UserError naming it."""
        if self._meta is None:
            self._meta = self._read_meta()
        return json.loads(json.dumps(self._meta))

    @property
    def record(self) -> RunRecord:
        """run.json as a validated `RunRecord`, parsed once per instance (`reload()` reads it again). A missing
        or damaged key is a UserError naming the file and the key."""
        if self._record is None:
            self._record = RunRecord.parse(self.meta_path, self.meta)
        return self._record

    def reload(self) -> "Run":
        """Forget what was read from run.json, so the next access reads the file again (another process wrote it)."""
        self._meta = self._record = None
        return self

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into run.json (read fresh from disk) and write it atomically; the cache follows."""
        data = self._read_meta()
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status {fields['status']!r} not in {STATUSES}")
        data.update(fields)
        data["updated"] = time.time()
        atomic_write_json(self.meta_path, data)
        self._meta, self._record = data, None
        return json.loads(json.dumps(data))

    def record_failure(self, command: str, exc: BaseException, *, mark_failed: bool = True,
                       hint: str = "") -> JobFailed:
        """Save `exc`'s traceback in logs/<command>.log, mark the run `failed` with the one-line reason (when
        `mark_failed`; the run's status belongs to `train`/`import`) and return the JobFailed to raise. When even
        that cannot be written (a full disk), the returned message says so: the run will then read as stale."""
        import traceback

        reason = one_line(f"{type(exc).__name__}: {exc}")
        log = self.log_path(command)
        notes = []
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} {command}: {reason}\n")
                f.write("".join(traceback.format_exception(exc)))
            notes.append(f"traceback in {log}")
        except OSError as e:
            notes.append(f"the traceback could not be saved ({e.strerror})")
        if mark_failed:
            try:
                self.update_meta(status="failed", message=f"{command} failed: {reason}" + (f"; {hint}" if hint else ""))
            except (OSError, UserError) as e:
                notes.append(f"run.json could not record the failure ({getattr(e, 'strerror', None) or e}); "
                             "the run will show as stale")
        return JobFailed(f"{self.path}: {command} failed: {reason} ({'; '.join(notes)})" + (f"; {hint}" if hint else ""))

    def stale_reason(self, meta: Mapping[str, Any] | None = None) -> str | None:
        """Why run.json's `running` is not the truth, or None. A running run is written by a process holding
        the writer lock; when none holds it, that process died without recording its end (kill -9, a crash
        while writing run.json, a full disk). The message says how to continue."""
        meta = self.meta if meta is None else meta
        if meta.get("status") != "running" or self.lock_holder() is not None:
            return None
        pid = meta.get("pid")
        beat = meta.get("heartbeat") or meta.get("updated")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(beat)) if isinstance(beat, (int, float)) else "?"
        return (f"stale: run.json says running but its process (pid {pid or '?'}) is gone (last heartbeat {when}); "
                f"it crashed or was killed - continue with: python -m core train --resume {self.path}")

    @property
    def is_pipeline_check(self) -> bool:
        """`record.is_pipeline_check`: random-weight runs are never a model result."""
        return self.record.is_pipeline_check

    # -------------------------------------------------------------------------------------------- metrics
    def append_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        append_csv(self.metrics_path, METRIC_COLUMNS, rows)

    def read_metrics(self) -> list[dict[str, float]]:
        out = []
        for r in read_csv_rows(self.metrics_path):
            out.append({"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"]),
                        "seconds": float(r["seconds"])})
        return out

    def truncate_metrics(self, last_step: int) -> None:
        """Keep only steps <= last_step (used by --resume so each step's line appears exactly once)."""
        keep = [r for r in self.read_metrics() if r["step"] <= last_step]
        write_csv(self.metrics_path, METRIC_COLUMNS, keep)

    # --------------------------------------------------------------------------------------------- dataset
    def write_manifest(self, rows: Iterable[Mapping[str, Any]]) -> None:
        write_csv(self.manifest_path, MANIFEST_COLUMNS, rows)

    def read_manifest(self) -> list[dict[str, str]]:
        return read_csv_rows(self.manifest_path)

    # ------------------------------------------------------------------------------------------ embeddings
    def embedding_path(self, step: int) -> Path:
        return self.embeddings_dir / f"step-{int(step):06d}.safetensors"

    def save_embedding(self, step: int, vectors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> Path:
        """Save {token: float32[n_vectors, 768]} for `step` (safetensors, diffusers' layout)."""
        from safetensors.numpy import save

        tensors = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in vectors.items()}
        for k, v in tensors.items():
            if v.ndim != 2:
                raise ValueError(f"embedding for {k!r} must be [n_vectors, dim], got shape {v.shape}")
        weights = self.meta.get("weights")  # as written so far (a run being created may not validate yet)
        md = {"step": str(int(step)),
              "weights_source": str(weights.get("source", "unknown") if isinstance(weights, dict) else "unknown")}
        md.update({k: str(v) for k, v in (metadata or {}).items()})
        path = self.embedding_path(step)
        atomic_write_bytes(path, save(tensors, metadata=md))
        return path

    def embedding_steps(self) -> list[int]:
        if not self.embeddings_dir.exists():
            return []
        steps = []
        for p in self.embeddings_dir.iterdir():
            m = _STEP_FILE.match(p.name)
            if m and m.group(2) == "safetensors":
                steps.append(int(m.group(1)))
        return sorted(steps)

    def load_embedding(self, step: int) -> dict[str, np.ndarray]:
        """{token: float32[n_vectors, dim]} of checkpoint `step`, validated (see `read_step_embedding`)."""
        path = self.embedding_path(step)
        if not path.exists():
            have = ", ".join(map(str, self.embedding_steps())) or "none"
            raise UserError(f"{self.path}: no embedding for step {step} (have: {have})")
        return read_step_embedding(self.resolve_inside(path, what="embedding"))

    def resolve_steps(self, spec: str) -> list[int]:
        """'0,final' / 'all' / '0,100,200' -> sorted checkpoint steps that exist; unknown ones are an error."""
        have = self.embedding_steps()
        if not have:
            raise UserError(f"{self.path}: no checkpoints yet; run `python -m core train` first")
        if spec.strip() == "all":
            return have
        out = set()
        for part in spec.split(","):
            part = part.strip()
            if part == "final":
                out.add(have[-1])
            elif part.isdigit() and int(part) in have:
                out.add(int(part))
            else:
                raise UserError(
                    f"--checkpoints {part!r}: no such checkpoint in {self.path} "
                    f"(have: {', '.join(map(str, have))}, or 'final', 'all')"
                )
        return sorted(out)

    # ----------------------------------------------------------------------------------------- checkpoints
    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{int(step):06d}.npz"

    def save_checkpoint(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(self.checkpoint_path(step), buf.getvalue())

    def checkpoint_steps(self) -> list[int]:
        if not self.checkpoints_dir.exists():
            return []
        return sorted(int(m.group(1)) for p in self.checkpoints_dir.iterdir()
                      if (m := _STEP_FILE.match(p.name)) and m.group(2) == "npz")

    def load_checkpoint(self, step: int) -> dict[str, np.ndarray]:
        with np.load(self.checkpoint_path(step)) as z:
            return {k: z[k] for k in z.files}

    # ------------------------------------------------------------------------------------------- neighbors
    def append_neighbors(self, rows: Iterable[Mapping[str, Any]]) -> None:
        append_csv(self.neighbors_path, NEIGHBOR_COLUMNS, rows)

    def read_neighbors(self) -> list[dict[str, str]]:
        return read_csv_rows(self.neighbors_path)

    def rewrite_neighbors(self, rows: Iterable[Mapping[str, Any]]) -> None:
        write_csv(self.neighbors_path, NEIGHBOR_COLUMNS, rows)

    # ---------------------------------------------------------------------------------------------- images
    def image_relpath(self, step: int, filename: str) -> str:
        return f"images/step-{int(step):06d}/{filename}"

    def append_images(self, rows: Iterable[Mapping[str, Any]]) -> None:
        append_csv(self.images_index_path, IMAGE_COLUMNS, rows)

    def read_images(self) -> list[dict[str, str]]:
        return read_csv_rows(self.images_index_path)

    def grid_path(self, filename: str) -> Path:
        return self.grids_dir / filename

    # ---------------------------------------------------------------------------------------------- scores
    def write_scores(self, rows: Iterable[Mapping[str, Any]]) -> None:
        write_csv(self.scores_path, SCORE_COLUMNS, rows)

    def read_scores(self) -> list[dict[str, str]]:
        return read_csv_rows(self.scores_path)

    def write_scores_meta(self, data: Mapping[str, Any]) -> None:
        atomic_write_json(self.scores_meta_path, data)

    def read_scores_meta(self) -> dict[str, Any] | None:
        """scores.json as written (for `score` itself, which rewrites it); everyone else reads `scores_record`."""
        if not self.scores_meta_path.exists():
            return None
        try:
            return json.loads(self.scores_meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.scores_meta_path}: damaged ({e}); rerun `python -m core score {self.path} "
                            "--references DIR`") from e

    def scores_record(self) -> ScoresRecord | None:
        """scores.json as a validated `ScoresRecord`; None when the run is not scored."""
        data = self.read_scores_meta()
        return None if data is None else ScoresRecord.parse(self.scores_meta_path, data)

    def scores_inputs(self) -> dict[str, str]:
        """sha256 of the files `score`'s summaries are computed from (recorded in scores.json `inputs`)."""
        return {p.name: sha256_file(p) for p in (self.images_index_path, self.scores_path) if p.exists()}

    def scores_stale(self, record: ScoresRecord | None = None) -> str | None:
        """Why scores.json's summaries no longer describe the run's files, with the command that refreshes them;
        None when they are current (or were written before inputs were recorded, so cannot be checked)."""
        record = self.scores_record() if record is None else record
        if record is None or record.inputs is None:
            return None
        if not record.complete:
            return (f"stale: scoring of {self.path} did not finish; rerun `python -m core score {self.path} "
                    "--references DIR`")
        now = self.scores_inputs()
        changed = sorted(k for k in set(now) | set(record.inputs) if now.get(k) != record.inputs.get(k))
        if not changed:
            return None
        return (f"stale: {', '.join(changed)} changed since scores.json was written; rerun `python -m core score "
                f"{self.path} --references DIR`")

    # ----------------------------------------------------------------------------------------------- audit
    def write_audit(self, rows: Iterable[Mapping[str, Any]]) -> None:
        write_csv(self.audit_path, AUDIT_COLUMNS, rows)

    def read_audit(self) -> list[dict[str, str]]:
        return read_csv_rows(self.audit_path, AUDIT_COLUMNS)

    def write_audit_meta(self, data: Mapping[str, Any]) -> None:
        atomic_write_json(self.audit_meta_path, data)

    def read_audit_meta(self) -> dict[str, Any] | None:
        if not self.audit_meta_path.exists():
            return None
        return json.loads(self.audit_meta_path.read_text(encoding="utf-8"))

    def audit_stale(self, meta: Mapping[str, Any] | None = None) -> str | None:
        """Why audit.json no longer describes the run's images and scores (it records their sha256 in `inputs`),
        with the command that refreshes it; None when current or written before inputs were recorded."""
        meta = self.read_audit_meta() if meta is None else meta
        if not meta or not isinstance(meta.get("inputs"), dict):
            return None
        command = f"`python -m core audit {self.path} --references TRAINING_IMAGES_DIR`"
        if not meta.get("complete"):
            return f"stale: the audit of {self.path} did not finish; rerun {command}"
        now = self.scores_inputs()
        changed = sorted(k for k in set(now) | set(meta["inputs"]) if now.get(k) != meta["inputs"].get(k))
        if not changed:
            return None
        return f"stale: {', '.join(changed)} changed since audit.json was written; rerun {command}"


def list_runs(runs_dir: str | os.PathLike) -> list[Run]:
    """Every folder under runs_dir that has a run.json, sorted by name."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if (p / "run.json").exists()]
