"""`Run`, the face everyone uses: one run folder's files read and written (paths from `RunPaths`), its record,
its writer lock and the stage skeleton every writing command runs in.

The layout itself is documented in the package docstring (`core/runfolder/__init__.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import JobFailed, UserError
from core.runfolder.embedding import read_step_embedding
from core.runfolder.fileio import (
    append_csv,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    is_temp_file,
    one_line,
    read_csv_rows,
    read_document,
    read_json,
    read_jsonl,
    sha256_file,
    write_csv,
)
from core.runfolder.lock import lock_holder, writer_lock
from core.runfolder.paths import (
    _STEP_FILE,
    AUDIT_COLUMNS,
    IMAGE_COLUMNS,
    MANIFEST_COLUMNS,
    METRIC_COLUMNS,
    NEIGHBOR_COLUMNS,
    SCORE_COLUMNS,
    RunPaths,
    check_run_name,
    check_runs_dir,
)
from core.runfolder.records import SCHEMA_VERSION, STATUSES, RunRecord
from core.runfolder.stage_records import AuditRecord, ScoresRecord


class Run(RunPaths):
    """One experiment folder. Construct with an existing path, or use `Run.create`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._meta: dict[str, Any] | None = None  # run.json as read (see `meta`, `record`, `reload`)
        self._record: RunRecord | None = None

    # -------------------------------------------------------------------------------------------- one writer
    def writer(self, command: str) -> contextlib.AbstractContextManager[None]:
        """Hold the run's writer lock while `command` writes to it: `with run.writer("generate"): ...`.
        A second writer (another process) gets a one-line UserError naming the holder's pid and command; a lock
        left by a killed command is taken over (see `core.runfolder.lock`). Re-entrant within one process."""
        return writer_lock(self.path, self.lock_path, command)

    @contextlib.contextmanager
    def stage(self, command: str, *, owns_status: bool = False, hint: str = "") -> Iterator[RunRecord]:
        """The skeleton every writing stage shares: `with run.stage("score", hint=...) as record: ...`.

        1. validate: run.json is read and checked before anything is written (not a run folder, or a damaged
           run.json, is a one-line UserError and no lock file is made);
        2. hold the writer lock for the whole stage (re-entrant; a second writer is refused, naming the holder);
        3. on an unexpected exception, save its traceback in logs/<command>.log and raise the one-line JobFailed
           with `hint` (how to continue). UserError (bad input, said in one line) and KeyboardInterrupt pass.
        A stage that `owns_status` (train: the run's status is its truth) also leaves the run `interrupted` on
        Ctrl-C or SIGTERM, and `failed` with the one-line reason on any error, never `running` or `finished`."""
        record = self.record
        with self.writer(command):
            try:
                yield record
            except KeyboardInterrupt:
                if owns_status:
                    self._mark_if_running("interrupted", "interrupted" + (f"; {hint}" if hint else ""))
                raise
            except UserError as e:
                if owns_status:
                    self._mark_if_running("failed", str(e))
                raise
            except JobFailed:
                raise
            except Exception as e:
                try:  # a stage that recorded where it failed (train's loop) keeps its own message
                    already = self.reload().record.status == "failed"
                except (OSError, UserError):
                    already = False
                raise self.record_failure(command, e, mark_failed=owns_status and not already, hint=hint) from e

    def _mark_if_running(self, status: str, message: str) -> None:
        with contextlib.suppress(OSError, UserError):
            if self.reload().record.status == "running":
                self.update(status=status, message=message)

    def lock_holder(self) -> dict[str, Any] | None:
        """{pid, command, since} of the process writing this run now, or None (read-only; a lock left by a
        dead process is None). Use it to refuse or warn, e.g. a card built while `score` runs."""
        return lock_holder(self.path, self.lock_path)

    # ------------------------------------------------------------------------------------------- metadata
    @classmethod
    def create(cls, runs_dir: str | os.PathLike, name: str, meta: RunRecord | Mapping[str, Any]) -> Run:
        """Make a new run folder with run.json from `meta`: a `RunRecord` (what train and import write; its name
        becomes `name`), or, for fixtures, a partial dict. An existing non-empty folder is an error (use --resume
        or another --name)."""
        check_run_name(name)
        check_runs_dir(runs_dir)
        run = cls(Path(runs_dir) / name)
        # a folder holding only a killed first write's temp file (no run.json yet) is taken over
        if run.path.exists() and any(not is_temp_file(p) for p in run.path.iterdir()):
            raise UserError(
                f"{run.path}: a run with this name exists; continue it with --resume {run.path} "
                "or choose another --name"
            )
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{run.path}: cannot make the run folder ({e.strerror}); choose another --runs-dir") from e
        if isinstance(meta, RunRecord):
            full = dataclasses.replace(meta, name=name).to_json()
        else:
            now = time.time()
            full = {"schema_version": SCHEMA_VERSION, "name": name, "created": now, "updated": now, **meta}
            full.setdefault("status", "running")
        atomic_write_json(run.meta_path, full)
        return run

    @property
    def exists(self) -> bool:
        return self.meta_path.exists()

    def _read_meta(self) -> dict[str, Any]:
        return read_document(self.meta_path, schema=SCHEMA_VERSION, what="run.json", fix="restore it or delete the run",
                             missing=f"{self.path}: not a run folder (no run.json); pass a folder made by `train`")

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

    def update(self, **changes: Any) -> RunRecord:
        """Change fields of the run's record, typed (`status="failed"`, `timings=Timings(...)`,
        `weights=WeightsProvenance(...)`), and write run.json through `RunRecord.to_json` atomically (read fresh
        from disk; keys this version does not model are kept). Returns the new record; the cache follows."""
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"status {changes['status']!r} not in {STATUSES}")
        data = self._read_meta()
        record = dataclasses.replace(RunRecord.parse(self.meta_path, data), **changes, updated=time.time())
        data.update(record.to_json())
        atomic_write_json(self.meta_path, data)
        self._meta, self._record = data, record
        return record

    def final_step(self) -> int | None:
        """The one rule for a run's final step: what train/import recorded when the run finished, else its last
        checkpoint on disk (a run still training, interrupted or failed), else None."""
        recorded = self.record.final_step
        if recorded is not None:
            return recorded
        steps = self.embedding_steps()
        return steps[-1] if steps else None

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        """Merge raw JSON `fields` into run.json (read fresh from disk) and write it atomically; the cache follows.
        For this package (a failure must be recordable in a run.json that no longer validates) and for test
        fixtures; stages change their run through the typed `update`."""
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
        tail = f"; {hint}" if hint else ""
        return JobFailed(f"{self.path}: {command} failed: {reason} ({'; '.join(notes)}){tail}")

    def stale_reason(self, meta: RunRecord | Mapping[str, Any] | None = None) -> str | None:
        """Why run.json's `running` is not the truth, or None. A running run is written by a process holding
        the writer lock; when none holds it, that process died without recording its end (kill -9, a crash
        while writing run.json, a full disk). The message says how to continue. `meta`: the record already read
        (the dashboard caches it), else run.json is read (raw, so a half-written run.json still answers)."""
        if isinstance(meta, RunRecord):
            meta = {"status": meta.status, "pid": meta.pid, "heartbeat": meta.heartbeat, "updated": meta.updated}
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

    # ----------------------------------------------------------------------------------- the CSV files
    def _append_rows(self, attr: str, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
        append_csv(getattr(self, attr), columns, rows)

    def _write_rows(self, attr: str, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
        write_csv(getattr(self, attr), columns, rows)

    def _read_rows(self, attr: str, columns: list[str] | None = None) -> list[dict[str, str]]:
        return read_csv_rows(getattr(self, attr), columns)

    # each file and its columns once: append-only logs, tables rewritten whole, their readers (rows of str)
    append_metrics = functools.partialmethod(_append_rows, "metrics_path", METRIC_COLUMNS)
    write_manifest = functools.partialmethod(_write_rows, "manifest_path", MANIFEST_COLUMNS)
    read_manifest = functools.partialmethod(_read_rows, "manifest_path")
    append_neighbors = functools.partialmethod(_append_rows, "neighbors_path", NEIGHBOR_COLUMNS)
    rewrite_neighbors = functools.partialmethod(_write_rows, "neighbors_path", NEIGHBOR_COLUMNS)
    read_neighbors = functools.partialmethod(_read_rows, "neighbors_path")
    def append_images(self, rows: Iterable[Mapping[str, Any]]) -> None:
        append_csv(self.images_index_path, self._image_columns(), rows)

    def _image_columns(self) -> list[str]:
        """IMAGE_COLUMNS, or the header of an images.csv written before a column was added (kept as it is: new rows
        lack that column there, and readers see it as missing)."""
        try:
            with open(self.images_index_path, encoding="utf-8") as f:
                header = f.readline().strip().split(",")
        except (FileNotFoundError, UnicodeDecodeError):
            return IMAGE_COLUMNS
        return header if header != [""] and header == [c for c in IMAGE_COLUMNS if c in header] else IMAGE_COLUMNS

    read_images = functools.partialmethod(_read_rows, "images_index_path")
    write_scores = functools.partialmethod(_write_rows, "scores_path", SCORE_COLUMNS)
    read_scores = functools.partialmethod(_read_rows, "scores_path")
    write_audit = functools.partialmethod(_write_rows, "audit_path", AUDIT_COLUMNS)
    read_audit = functools.partialmethod(_read_rows, "audit_path", AUDIT_COLUMNS)

    # -------------------------------------------------------------------------------------------- metrics
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

    # ------------------------------------------------------------------------------------------ embeddings
    def save_embedding(self, step: int, vectors: Mapping[str, np.ndarray],
                       metadata: Mapping[str, str] | None = None) -> Path:
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

    # ---------------------------------------------------------------------------------------------- scores
    def scores_record(self) -> ScoresRecord | None:
        """scores.json as a validated `ScoresRecord`; None when the run is not scored."""
        return self._stage_record(ScoresRecord, self.scores_meta_path, "score")

    def write_record(self, record: ScoresRecord | AuditRecord) -> None:
        """Write a stage's record to its file (scores.json or audit.json) through its `to_json`."""
        path = self.scores_meta_path if isinstance(record, ScoresRecord) else self.audit_meta_path
        atomic_write_json(path, record.to_json())

    def _stage_record(self, cls: type, path: Path, stage: str) -> Any:
        data = read_json(path, f"rerun {self._stage_command(stage)}")
        return None if data is None else cls.parse(path, data)

    def _read_raw(self, attr: str, stage: str) -> Any:
        return read_json(getattr(self, attr), f"rerun {self._stage_command(stage)}")

    def _write_raw(self, attr: str, data: Mapping[str, Any]) -> None:
        atomic_write_json(getattr(self, attr), data)

    # scores.json and audit.json as plain JSON, for test fixtures that write them by hand (the stages write and
    # everyone reads them through their records: `write_record`, `scores_record`, `audit_record`)
    read_scores_meta = functools.partialmethod(_read_raw, "scores_meta_path", "score")
    write_scores_meta = functools.partialmethod(_write_raw, "scores_meta_path")
    read_audit_meta = functools.partialmethod(_read_raw, "audit_meta_path", "audit")
    write_audit_meta = functools.partialmethod(_write_raw, "audit_meta_path")

    def _stage_command(self, stage: str) -> str:
        """The command that (re)makes a stage's record: score or audit."""
        refs = "DIR" if stage == "score" else "TRAINING_IMAGES_DIR"
        return f"`python -m core {stage} {self.path} --references {refs}`"

    def scores_inputs(self) -> dict[str, str]:
        """sha256 of the files `score`'s summaries are computed from (recorded in scores.json `inputs`)."""
        return {p.name: sha256_file(p) for p in (self.images_index_path, self.scores_path) if p.exists()}

    def scores_stale(self, record: ScoresRecord | None = None) -> str | None:
        """Why scores.json's summaries no longer describe the run's files, with the command that refreshes them;
        None when they are current (or were written before inputs were recorded, so cannot be checked)."""
        record = self.scores_record() if record is None else record
        return None if record is None else self.inputs_stale(record, self.scores_meta_path, "scoring", "score")

    def inputs_stale(self, record: ScoresRecord | AuditRecord, written: Path, unfinished: str,
                     stage: str) -> str | None:
        """The one staleness rule for a stage's record (`written`: scores.json, audit.json) computed from images.csv
        and scores.csv, whose sha256 it recorded in `inputs`: "stale: ... rerun COMMAND" when the stage
        (`unfinished`) did not finish or when one of them changed since; None when they still match (or `inputs`
        was not recorded: written before 0.2, cannot be checked)."""
        command = self._stage_command(stage)
        if not record.complete:
            return f"stale: {unfinished} of {self.path} did not finish; rerun {command}"
        if record.inputs is None:
            return None
        changed = changed_inputs(record.inputs, self.scores_inputs())
        if not changed:
            return None
        return f"stale: {', '.join(changed)} changed since {written.name} was written; rerun {command}"

    # ----------------------------------------------------------------------------------------------- audit
    def audit_record(self) -> AuditRecord | None:
        """audit.json as a validated `AuditRecord`; None when the run is not audited."""
        return self._stage_record(AuditRecord, self.audit_meta_path, "audit")

    def audit_stale(self, record: AuditRecord | None = None) -> str | None:
        """Why audit.json no longer describes the run's images and scores (it records their sha256 in `inputs`),
        with the command that refreshes it; None when current or written before inputs were recorded."""
        record = self.audit_record() if record is None else record
        return None if record is None else self.inputs_stale(record, self.audit_meta_path, "the audit", "audit")

    # ---------------------------------------------------------------------------------------------- review
    def append_annotations(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append flag/retraction lines (core.review.records builds them) under the file's lock."""
        append_jsonl(self.annotations_path, records)

    def read_annotations(self) -> list[dict[str, Any]]:
        """annotations.jsonl as written (core.review.store turns the lines into typed records)."""
        return read_jsonl(self.annotations_path)

    def append_findings(self, records: Iterable[Mapping[str, Any]]) -> None:
        append_jsonl(self.findings_path, records)

    def read_findings(self) -> list[dict[str, Any]]:
        return read_jsonl(self.findings_path)


def changed_inputs(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The names whose sha256 differs between what a summary recorded and the files now (sorted)."""
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))


def list_runs(runs_dir: str | os.PathLike) -> list[Run]:
    """Every folder under runs_dir that has a run.json, sorted by name (hidden folders are work in progress)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if not p.name.startswith(".") and (p / "run.json").exists()]


def counterpart_run(run: Run, compare: str | os.PathLike | None) -> Run | None:
    """The run a command's `--compare` names beside `run` (None without one); one line when it is not a run (its
    record is read) or is `run` itself."""
    if compare is None:
        return None
    other = Run(compare)
    other.record  # a UserError naming the folder (or the damaged key) if it is not a run
    if other.path.resolve() == run.path.resolve():
        raise UserError(f"--compare {compare}: the same run as RUN; give the counterpart run")
    return other
