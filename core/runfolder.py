"""The run folder: the one module that knows where every file of an experiment lives and how it is written.

A run is a plain folder anyone can open (layout after MLflow's file store). Everything else in the project
(training, generation, scoring, the dashboard, the model card) reads and writes through `Run`; nothing else
builds paths into it. Writes are atomic (temp file + rename); metric and index logs are append-only CSV.

    RUN/
      run.json                     metadata: schema, status, full resolved config, weights provenance,
                                   token(s), timings, package versions, hardware (see `Run.meta`)
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
every consumer must label it so (`Run.is_pipeline_check`).
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
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from core.errors import UserError

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
_UMASK = os.umask(0)
os.umask(_UMASK)
_STEP_FILE = re.compile(r"^step-(\d{6,})\.(safetensors|npz)$")


# ----------------------------------------------------------------------------------------------- atomic io
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
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would have
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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- the run
_HELD_LOCKS: dict[str, list] = {}  # resolved run path -> [fd, depth] for the writer locks this process holds


class Run:
    """One experiment folder. Construct with an existing path, or use `Run.create`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

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
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
        run = cls(Path(runs_dir) / name)
        if run.path.exists() and any(run.path.iterdir()):
            raise UserError(
                f"{run.path}: a run with this name exists; continue it with --resume {run.path} "
                "or choose another --name"
            )
        run.path.mkdir(parents=True, exist_ok=True)
        now = time.time()
        full = {"schema_version": SCHEMA_VERSION, "name": name, "created": now, "updated": now}
        full.update(meta)
        full.setdefault("status", "running")
        atomic_write_json(run.meta_path, full)
        return run

    @property
    def exists(self) -> bool:
        return self.meta_path.exists()

    @property
    def meta(self) -> dict[str, Any]:
        """run.json as a dict. A missing or damaged file raises UserError naming it."""
        if not self.meta_path.exists():
            raise UserError(f"{self.path}: not a run folder (no run.json); pass a folder made by `train`")
        try:
            data = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.meta_path}: damaged ({e}); restore it or delete the run") from e
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{self.meta_path}: not a schema-{SCHEMA_VERSION} run.json")
        return data

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        data = self.meta
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status {fields['status']!r} not in {STATUSES}")
        data.update(fields)
        data["updated"] = time.time()
        atomic_write_json(self.meta_path, data)
        return data

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
    def weights(self) -> dict[str, Any]:
        return self.meta.get("weights", {"source": "unknown"})

    @property
    def is_pipeline_check(self) -> bool:
        """True for random-weight runs (and for runs whose provenance is unknown): never a model result."""
        return self.weights.get("source") not in ("kerascv", "local")

    @property
    def token(self) -> str:
        return self.meta["token"]["placeholder"]

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
        md = {"step": str(int(step)), "weights_source": str(self.weights.get("source", "unknown"))}
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
        from safetensors.numpy import load_file

        path = self.embedding_path(step)
        if not path.exists():
            have = ", ".join(map(str, self.embedding_steps())) or "none"
            raise UserError(f"{self.path}: no embedding for step {step} (have: {have})")
        return dict(load_file(str(path)))

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
        if not self.scores_meta_path.exists():
            return None
        return json.loads(self.scores_meta_path.read_text(encoding="utf-8"))

    # ----------------------------------------------------------------------------------------------- audit
    def write_audit(self, rows: Iterable[Mapping[str, Any]]) -> None:
        write_csv(self.audit_path, AUDIT_COLUMNS, rows)

    def read_audit(self) -> list[dict[str, str]]:
        return read_csv_rows(self.audit_path)

    def write_audit_meta(self, data: Mapping[str, Any]) -> None:
        atomic_write_json(self.audit_meta_path, data)

    def read_audit_meta(self) -> dict[str, Any] | None:
        if not self.audit_meta_path.exists():
            return None
        return json.loads(self.audit_meta_path.read_text(encoding="utf-8"))


def list_runs(runs_dir: str | os.PathLike) -> list[Run]:
    """Every folder under runs_dir that has a run.json, sorted by name."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if (p / "run.json").exists()]
