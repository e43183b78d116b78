"""One sweep trial's work as plain functions, each meant for a fresh process: `train_stage` (train, then
generate; the TensorFlow side) and `score_stage` (CLIP scoring, then the optional risk audit; the torch side).

They call exactly what `python -m core train` / `generate` / `score` call, on the trial's run folder, so a
trial's folder is an ordinary run. Both stages are idempotent: a finished training is not repeated, an
interrupted or crashed one resumes from its last checkpoint (`train --resume`), `generate` skips images already
made and `score` scores only new images. So the sweep can retry a stage, or be rerun, safely.

`TrialPlan.components` is the dotted path `module:callable` of the factory that builds the four networks,
called as `factory(weight_spec, resolution)`. The default, `core.components:Components`, is what `train` uses;
tests pass tiny stand-ins (`tests.tiny:sweep_components`) and a custom model may pass its own builder.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.errors import UserError
from core.runfolder import Run

DEFAULT_COMPONENTS = "core.components:Components"


@dataclass
class TrialPlan:
    """Everything one trial does (plain data: it travels to a Ray worker)."""

    name: str  # the run folder's name (deterministic from the parameters; see core.sweep.trial_name)
    runs_dir: str  # absolute; on a cluster, storage every node shares
    train: dict[str, Any]  # TrainConfig fields
    generate: dict[str, Any] | None = None  # GenerateConfig fields; None: no generation
    score: dict[str, Any] | None = None  # ScoreConfig fields; None: no scoring
    audit: dict[str, Any] | None = None  # AuditConfig fields (core.audit); None: no audit
    components: str = DEFAULT_COMPONENTS  # factory(weight_spec, resolution) -> Components

    @property
    def run(self) -> Run:
        return Run(Path(self.runs_dir) / self.name)


def load_factory(dotted: str) -> Callable[..., Any]:
    """'package.module:callable' -> the callable (a clear error for a bad path)."""
    module_name, sep, attr = dotted.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"components={dotted!r}: expected 'package.module:callable', e.g. {DEFAULT_COMPONENTS}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"components={dotted!r}: cannot import {module_name} ({e})") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"components={dotted!r}: {module_name} has no callable {attr!r}")
    return fn


def train_stage(plan: TrialPlan) -> dict[str, Any]:
    """Train the trial's run (or resume it, or skip a finished one), then generate its images, holding the run's
    writer lock. Returns {"status", "resumed_from", "final_step", "generated", "message"}."""
    from core.train import TRAINING_COMPONENTS, TrainConfig, set_precision, start_run, train

    cfg = TrainConfig.from_dict(plan.train)
    spec = cfg.weight_spec()
    for name in TRAINING_COMPONENTS:  # fetch / hash-check weight files before a run folder exists
        spec.resolve(name)
    run = plan.run
    if run.path.exists() and not run.exists:
        raise UserError(f"{run.path}: exists but is not a run folder; move it away (the sweep names a trial's "
                        "run folder after its parameters)")
    if run.exists and not run.checkpoint_steps() and run.lock_holder() is None:
        shutil.rmtree(run.path)  # died before its step-0 checkpoint: nothing learned to keep; start it again
    with contextlib.ExitStack() as stack:
        resume, resumed_from = False, None
        if run.exists:
            stack.enter_context(run.writer("sweep trial: train + generate"))
            if dict(run.record.config) != cfg.to_dict():
                raise UserError(f"{run.path}: a run with this name was trained with another configuration; move "
                                "it away or rename the sweep")
            if run.record.status != "finished":
                done = [s for s in run.checkpoint_steps() if s in run.embedding_steps()]
                if not done:
                    raise UserError(f"{run.path}: no complete checkpoint to resume from; delete the folder and "
                                    "rerun the sweep")
                resume, resumed_from = True, done[-1]
        set_precision(cfg.mixed_precision)
        components = load_factory(plan.components)(spec, cfg.resolution)
        if not (run.exists and run.record.status == "finished"):
            if not resume:
                run = start_run(cfg, Path(plan.runs_dir), plan.name)
                stack.enter_context(run.writer("sweep trial: train + generate"))
            try:
                train(cfg, run, components, resume=resume, progress=False)
            except UserError:
                if run.reload().record.status == "running":
                    run.update(status="failed")
                raise
        rec = run.reload().record
        out: dict[str, Any] = {"status": rec.status, "resumed_from": resumed_from, "final_step": rec.final_step,
                               "generated": 0, "message": rec.message or ""}
        if rec.status != "finished":
            return out
        if plan.generate is not None:
            from core.generate import GenerateConfig, generate

            counts = generate(run, GenerateConfig.from_dict(plan.generate), components, progress=False)
            out["generated"] = counts["generated"]
        return out


def score_stage(plan: TrialPlan) -> dict[str, Any]:
    """CLIP-score the trial's images (only new ones), then run the risk audit if asked (one CLIP model loaded
    when both use the same). Torch side only; holds the run's writer lock."""
    from core.clip_score import load_clip

    out: dict[str, Any] = {"status": "finished", "message": ""}
    quiet = lambda *a, **k: None  # noqa: E731 - workers' output is the sweep's log; results go to the record
    scorers: dict[tuple, Any] = {}

    def scorer(cfg) -> Any:
        key = (cfg.clip, cfg.clip_seed, cfg.device)
        if key not in scorers:
            scorers[key] = load_clip(cfg.clip, seed=cfg.clip_seed, device=cfg.device)
        return scorers[key]

    run = plan.run
    with run.writer("sweep trial: score + audit"):
        if plan.score is not None:
            from core.score import ScoreConfig, score_run

            cfg = ScoreConfig(**plan.score)
            meta = score_run(run, cfg, scorer=scorer(cfg), progress=False, log=quiet)
            out.update(n_images=meta["n_images"], n_scored_now=meta["n_scored_now"])
        if plan.audit is not None:
            from core.audit import AuditConfig, audit_run

            cfg = AuditConfig(**plan.audit)
            audit_run(run, cfg, scorer=scorer(cfg), progress=False, log=quiet)
    return out
