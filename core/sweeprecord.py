"""The sweep record: the one module that knows where a sweep's own files live and how they are written.

A sweep's trials are ordinary run folders in the runs folder (see `core.runfolder`); beside them, the sweep
keeps a small record (a sibling concept to a run folder, owned here):

    RUNS/sweeps/NAME/
      spec.toml     the spec exactly as given (the latest `sweep` call's copy)
      sweep.json    name, spec path, engine, created/updated, and `trials`: one entry per trial in spec order:
                    name (= the run folder's name), params (the varied values), fingerprint (hash of everything
                    the trial does), status (TRIAL_STATUSES), stage, attempts, resumed_from, message

Only the sweep driver (`core.sweep`) writes sweep.json (trials report back to it), so there is one writer.
Writes are atomic (`core.runfolder.atomic_write_*`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.runfolder import Run, atomic_write_json, atomic_write_text

SWEEP_SCHEMA = 1
SWEEPS_DIRNAME = "sweeps"
TRIAL_STATUSES = ("pending", "running", "finished", "failed", "interrupted")


class SweepRecord:
    """RUNS/sweeps/NAME/. Construct with the runs folder and the sweep's name."""

    def __init__(self, runs_dir: str | os.PathLike, name: str):
        self.runs_dir = Path(runs_dir)
        self.name = name
        self.path = self.runs_dir / SWEEPS_DIRNAME / name

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.toml"

    @property
    def record_path(self) -> Path:
        return self.path / "sweep.json"

    @property
    def exists(self) -> bool:
        return self.record_path.exists()

    def run(self, trial_name: str) -> Run:
        """The run folder of a trial (an ordinary run in the runs folder)."""
        return Run(self.runs_dir / trial_name)

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{self.path}: no sweep record (sweep.json); start it with `python -m core sweep SPEC`")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.record_path}: damaged ({e}); rerun the sweep to rewrite it") from e
        if not isinstance(data, dict) or data.get("schema_version") != SWEEP_SCHEMA:
            raise UserError(f"{self.record_path}: not a schema-{SWEEP_SCHEMA} sweep record")
        return data

    def write(self, data: dict[str, Any]) -> None:
        for t in data.get("trials", []):
            if t.get("status") not in TRIAL_STATUSES:
                raise ValueError(f"trial status {t.get('status')!r} not in {TRIAL_STATUSES}")
        data = {"schema_version": SWEEP_SCHEMA, **data, "updated": time.time()}
        atomic_write_json(self.record_path, data)

    def write_spec(self, text: str) -> None:
        atomic_write_text(self.spec_path, text)

    def trials(self) -> list[dict[str, Any]]:
        return list(self.read().get("trials", []))


def list_sweeps(runs_dir: str | os.PathLike) -> list[SweepRecord]:
    """Every sweep recorded under RUNS/sweeps/, sorted by name."""
    root = Path(runs_dir) / SWEEPS_DIRNAME
    if not root.is_dir():
        return []
    return [SweepRecord(runs_dir, p.name) for p in sorted(root.iterdir()) if (p / "sweep.json").exists()]
