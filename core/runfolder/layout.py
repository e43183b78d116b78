"""The run folder's layout: `Run`, the face everyone uses, which knows where each file of a run lives.

The layout itself is documented in the package docstring (`core/runfolder/__init__.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import JobFailed, UserError
from core.runfolder.embedding import read_step_embedding
from core.runfolder.fileio import (
    append_csv,
    atomic_write_bytes,
    atomic_write_json,
    one_line,
    read_csv_rows,
    sha256_file,
    write_csv,
)
from core.runfolder.lock import lock_holder, writer_lock
from core.runfolder.records import SCHEMA_VERSION, STATUSES, RunRecord, ScoresRecord

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
_STEP_FILE = re.compile(r"^step-(\d{6,})\.(safetensors|npz)$")


def reports_dir(runs_dir: str | os.PathLike) -> Path:
    """RUNS_DIR/reports: the one place comparison and model-card folders live (compare, card, demo, dashboard)."""
    return Path(runs_dir) / "reports"


def comparison_dir(run_a: Run, run_b: Run) -> Path:
    """Where `compare A B` writes by default and the dashboard looks: RUNS_DIR/reports/A-vs-B (RUNS_DIR = A's)."""
    return reports_dir(run_a.path.parent) / f"{run_a.name}-vs-{run_b.name}"


def card_dir(run: Run) -> Path:
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
    def writer(self, command: str) -> contextlib.AbstractContextManager[None]:
        """Hold the run's writer lock while `command` writes to it: `with run.writer("generate"): ...`.
        A second writer (another process) gets a one-line UserError naming the holder's pid and command; a lock
        left by a killed command is taken over (see `core.runfolder.lock`). Re-entrant within one process."""
        return writer_lock(self.path, self.lock_path, command)

    def lock_holder(self) -> dict[str, Any] | None:
        """{pid, command, since} of the process writing this run now, or None (read-only; a lock left by a
        dead process is None). Use it to refuse or warn, e.g. a card built while `score` runs."""
        return lock_holder(self.path, self.lock_path)

    # ------------------------------------------------------------------------------------------- metadata
    @classmethod
    def create(cls, runs_dir: str | os.PathLike, name: str, meta: Mapping[str, Any]) -> Run:
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

    def reload(self) -> Run:
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
        if record is None:
            return None
        return self.inputs_stale(record.inputs, record.complete, written=self.scores_meta_path.name,
                                 unfinished="scoring", command=f"`python -m core score {self.path} --references DIR`")

    def inputs_stale(self, inputs: Mapping[str, str] | None, complete: bool, *, written: str, unfinished: str,
                     command: str) -> str | None:
        """The one staleness rule for a summary file (`written`) computed from images.csv and scores.csv, which
        recorded their sha256 in `inputs`: None when they still match (or `inputs` was not recorded: written
        before 0.2, cannot be checked); else "stale: ... rerun COMMAND" naming what changed, or that the stage
        that writes it (`unfinished`) did not finish."""
        if inputs is None:
            return None
        if not complete:
            return f"stale: {unfinished} of {self.path} did not finish; rerun {command}"
        changed = changed_inputs(inputs, self.scores_inputs())
        if not changed:
            return None
        return f"stale: {', '.join(changed)} changed since {written} was written; rerun {command}"

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
        return self.inputs_stale(meta["inputs"], bool(meta.get("complete")), written=self.audit_meta_path.name,
                                 unfinished="the audit",
                                 command=f"`python -m core audit {self.path} --references TRAINING_IMAGES_DIR`")


def changed_inputs(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The names whose sha256 differs between what a summary recorded and the files now (sorted)."""
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))


def list_runs(runs_dir: str | os.PathLike) -> list[Run]:
    """Every folder under runs_dir that has a run.json, sorted by name."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if (p / "run.json").exists()]
