"""The sweep record: the one module that knows where a sweep's own files live and how they are written.

A sweep's trials are ordinary run folders in the runs folder (see `core.runfolder`); beside them, the sweep
keeps a small record (a sibling concept to a run folder, owned here):

    RUNS/sweeps/NAME/
      spec.toml     the spec exactly as given (the latest `sweep` call's copy)
      sweep.json    name, spec path, engine, created/updated, and `trials`: one entry per trial in spec order:
                    name (= the run folder's name), params (the varied values), fingerprint (hash of everything
                    the trial does), status (TRIAL_STATUSES), stage, attempts, resumed_from, message

Only the sweep driver (`core.sweep`) writes sweep.json (trials report back to it), so there is one writer.
Writes are atomic (`core.runfolder.atomic_write_*`). sweep.json is read and written through its typed records,
`SweepState` and `TrialEntry` (`SweepRecord.state()` / `write_state`): the only place that knows its keys.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.runfolder import JsonFields, Run, atomic_write_json, atomic_write_text, read_document

SWEEP_SCHEMA = 1
SWEEPS_DIRNAME = "sweeps"
TRIAL_STATUSES = ("pending", "running", "finished", "failed", "interrupted")


@dataclass
class TrialEntry:
    """One trial in sweep.json `trials` (the driver updates its own entries in place while the sweep runs)."""

    name: str  # = the trial's run folder name
    params: dict[str, Any] = field(default_factory=dict)  # the varied values
    fingerprint: str = ""  # hash of everything the trial does (a finished trial with the same one is skipped)
    status: str = "pending"  # TRIAL_STATUSES
    stage: str = ""  # train | score | done
    attempts: int = 0
    resumed_from: int | None = None  # the checkpoint a retried train resumed from
    message: str = ""

    @classmethod
    def parse(cls, r: JsonFields) -> TrialEntry:
        return cls(name=r.get("name", str), params=dict(r.get("params", dict, required=False, default={})),
                   fingerprint=r.get("fingerprint", str, required=False, default=""),
                   status=r.get("status", str, choices=TRIAL_STATUSES), stage=r.get("stage", str, required=False,
                                                                                    default=""),
                   attempts=r.get("attempts", int, required=False, default=0),
                   resumed_from=r.get("resumed_from", int, required=False),
                   message=r.get("message", str, required=False, default=""))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SweepState:
    """sweep.json, validated once where it is read (`SweepRecord.state`)."""

    name: str
    spec: str  # the spec file's path when the sweep last ran
    created: float | None
    engine: dict[str, Any]  # {"ray": version, "parallel": n}
    varied: tuple[str, ...]  # the parameters the spec varies
    trials: tuple[TrialEntry, ...]
    updated: float | None = None

    @classmethod
    def parse(cls, path: Path, data: Any) -> SweepState:
        r = JsonFields.document(path, data, "rerun the sweep to rewrite it", SWEEP_SCHEMA)
        trials = []
        for i, t in enumerate(r.get("trials", list)):
            if not isinstance(t, dict):
                raise r._fail(f"trials[{i}]", "must be an object")
            trials.append(TrialEntry.parse(JsonFields(path, t, f"trials[{i}].")))
        return cls(name=r.get("name", str), spec=r.get("spec", str, required=False, default="?"),
                   created=r.get("created", float, required=False),
                   engine=dict(r.get("engine", dict, required=False, default={})),
                   varied=tuple(str(v) for v in r.get("varied", list, required=False, default=[])),
                   trials=tuple(trials), updated=r.get("updated", float, required=False))

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SWEEP_SCHEMA, "name": self.name, "spec": self.spec, "created": self.created,
                "engine": dict(self.engine), "varied": list(self.varied),
                "trials": [t.to_json() for t in self.trials], "updated": self.updated}


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

    def state(self) -> SweepState:
        """sweep.json as a validated `SweepState` (a missing or damaged one is a UserError naming the file)."""
        return SweepState.parse(self.record_path, self.read())

    def write_state(self, state: SweepState) -> None:
        atomic_write_json(self.record_path, dataclasses.replace(state, updated=time.time()).to_json())

    def read(self) -> dict[str, Any]:
        """sweep.json as written (test fixtures); everyone else reads `state()`."""
        missing = f"{self.path}: no sweep record (sweep.json); start it with `python -m core sweep SPEC`"
        return read_document(self.record_path, schema=SWEEP_SCHEMA, what="sweep record",
                             fix="rerun the sweep to rewrite it", missing=missing)

    def write(self, data: dict[str, Any]) -> None:
        """Write sweep.json from a plain dict (test fixtures), validated as a `SweepState` first."""
        for t in data.get("trials", []):
            if t.get("status") not in TRIAL_STATUSES:
                raise ValueError(f"trial status {t.get('status')!r} not in {TRIAL_STATUSES}")
        self.write_state(SweepState.parse(self.record_path, {"schema_version": SWEEP_SCHEMA, **data}))

    def write_spec(self, text: str) -> None:
        atomic_write_text(self.spec_path, text)

    def trials(self) -> list[dict[str, Any]]:
        """The trials as written (test fixtures); everyone else reads `state().trials`."""
        return [t.to_json() for t in self.state().trials]


def list_sweeps(runs_dir: str | os.PathLike) -> list[SweepRecord]:
    """Every sweep recorded under RUNS/sweeps/, sorted by name."""
    root = Path(runs_dir) / SWEEPS_DIRNAME
    if not root.is_dir():
        return []
    return [SweepRecord(runs_dir, p.name) for p in sorted(root.iterdir()) if (p / "sweep.json").exists()]
