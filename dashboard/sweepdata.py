"""The Sweeps page's data: a sweep's typed record (core.sweeprecord.SweepState) and one row per trial, read from
what the sweep, `score` and `train` wrote (never recomputed), cached by the files' signatures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.runfolder import Run
from dashboard.cache import caches_errors, signature


def sweep_names(runs_dir: str) -> list[str]:
    """Names of the sweeps recorded under RUNS/sweeps/ (see core.sweeprecord)."""
    from core.sweeprecord import list_sweeps

    return [s.name for s in list_sweeps(runs_dir)]


@dataclass(frozen=True)
class SweepView:
    """A sweep as the Sweeps page shows it: its typed record and one table row per trial."""

    state: Any  # core.sweeprecord.SweepState (sweep.json, validated)
    table: pd.DataFrame  # trial, the varied parameters, status, run status, pipeline_check, final step, ...

    @property
    def varied(self) -> list[str]:
        return list(self.state.varied)


def sweep(runs_dir: str, name: str) -> SweepView:
    """A sweep's record plus one row per trial: the trial, the varied parameters, status, run status,
    pipeline_check, final step, final CLIP-I/CLIP-T means and 95% CIs as `score` wrote them in scores.json (read,
    not recomputed) and the recommended checkpoint (core.advice.advise_run: what `score` recorded)."""
    from core.sweeprecord import SweepRecord

    rec = SweepRecord(runs_dir, name)
    state = _sweep_state(runs_dir, name, signature(rec.record_path))
    rows = []
    for t in state.trials:
        run = rec.run(t.name)
        rows.append(_trial_row(str(run.path), (signature(run.meta_path), signature(run.scores_meta_path),
                                                signature(run.scores_path), signature(run.embeddings_dir)),
                               json.dumps(t.to_json(), sort_keys=True, default=str)))
    df = pd.DataFrame(rows)
    if not df.empty:
        for p in state.varied:
            df[p] = [r["params"].get(p) for r in rows]
        df = df.drop(columns=["params"])
    return SweepView(state, df)


def _record_path(runs_dir: str, name: str, key: Any) -> Path:
    from core.sweeprecord import SweepRecord

    return SweepRecord(runs_dir, name).record_path


@caches_errors(_record_path, max_entries=50)
def _sweep_state(runs_dir: str, name: str, key: Any):
    from core.sweeprecord import SweepRecord

    return SweepRecord(runs_dir, name).state()


@st.cache_data(show_spinner=False, max_entries=2000)
def _trial_row(run_path: str, key: Any, trial_json: str) -> dict[str, Any]:
    from core.runfolder import JsonFields
    from core.sweeprecord import TrialEntry

    t = TrialEntry.parse(JsonFields(Path(run_path), json.loads(trial_json)))
    run = Run(run_path)
    row: dict[str, Any] = {"trial": t.name, "path": run_path, "params": t.params, "status": t.status,
                           "attempts": t.attempts, "resumed_from": t.resumed_from, "message": t.message,
                           "run_status": "not started", "pipeline_check": True, "final_step": None,
                           "recommended": None, "error": None}
    for m in ("clip_i", "clip_t"):
        row.update({f"{m}_mean": None, f"{m}_lo": None, f"{m}_hi": None})
    if not run.exists:
        return row
    try:
        rec = run.record
        row.update(run_status=rec.status, pipeline_check=rec.weights.is_pipeline_check, final_step=run.final_step())
        scores = run.scores_record()
    except Exception as e:  # noqa: BLE001 - one damaged trial must not hide the others
        row["error"] = str(e)
        return row
    if scores is not None:
        by_step = list(scores.by_step)
        if by_step:
            last = max(by_step, key=lambda r: r["step"])
            row["scored_step"] = last["step"]
            for m in ("clip_i", "clip_t"):
                for s in ("mean", "lo", "hi"):
                    row[f"{m}_{s}"] = last.get(f"{m}_{s}")
        row["pipeline_check"] = bool(row["pipeline_check"] or scores.is_pipeline_check)
        from core.advice import advise_run

        try:
            row["recommended"] = advise_run(run).get("recommended")
        except Exception:  # noqa: BLE001 - one trial's unreadable advice must not hide the others
            row["recommended"] = None
    return row
