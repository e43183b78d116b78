"""`sweep`: many runs from one spec on Ray - an embedded local Ray by default, an existing cluster with --address.

SPEC is a TOML file, read and validated by `core.sweepspec` (its docstring lists the tables).

Every trial is an ordinary run folder in --runs-dir named from its parameters (`trial_name`), plus the sweep's
record in RUNS/sweeps/NAME/ (`core.sweeprecord`). Train+generate run in one fresh Ray worker process
(TensorFlow side) and score+audit in another (torch side): `max_calls=1`, so TensorFlow and torch never share a
process. A crashed worker is retried (`max_retries`) and the trial resumes from its last checkpoint; a rerun
skips finished trials; Ctrl-C stops the trials and leaves each run folder and the record with a true status.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import StrictConfig, add_options, check, from_args, option
from core.errors import UserError
from core.runfolder import list_runs
from core.sweeprecord import SweepRecord, SweepState, TrialEntry
from core.sweepspec import (  # noqa: F401
    PATH_KEYS,
    SWEEP_DEFAULTS,
    TABLES,
    SweepSettings,
    SweepSpec,
    Trial,
    expand,
    load_spec,
    trial_name,
)
from core.trial import TrialPlan

OBJECT_STORE_MB = 200  # trials exchange only small dicts; keep Ray's shared memory small


# ----------------------------------------------------------------------------------------------- estimates
def _this_machine() -> tuple[str, int | None]:
    return platform.platform(), os.cpu_count()


def measured_times(runs_dir: Path, train: dict[str, Any]) -> dict[str, Any]:
    """Median seconds per training step (and per generated image) of earlier runs on this machine with the same
    resolution, batch size, precision and XLA setting; the runs it came from. Steps after the first only (the
    first one's time includes building and compiling)."""
    keys = ("resolution", "batch_size", "mixed_precision", "jit_compile")
    step_dts, img_secs, sources = [], [], []
    here = _this_machine()
    for run in list_runs(runs_dir):
        try:
            rec = run.record
        except UserError:
            continue
        cfg, hw = rec.config, rec.hardware
        if any(cfg.get(k) != train.get(k) for k in keys) or (hw.get("platform"), hw.get("cpu_count")) != here:
            continue
        try:
            secs = [m["seconds"] for m in run.read_metrics()]
        except (KeyError, ValueError):
            continue
        dts = [b - a for a, b in zip(secs, secs[1:])]  # steps 2..n (step 1 includes building/compiling)
        if dts:
            step_dts += dts
            sources.append(run.name)
        img_secs += [float(r["seconds"]) for r in run.read_images() if r.get("seconds")]
    return {"step_seconds": statistics.median(step_dts) if step_dts else None,
            "image_seconds": statistics.median(img_secs) if img_secs else None,
            "n_steps": len(step_dts), "n_images": len(img_secs), "runs": sources}


def n_images(plan: TrialPlan) -> int:
    """Images `generate` makes for one trial (templates x seeds x checkpoints)."""
    if plan.generate is None:
        return 0
    from core.generate import GenerateConfig
    from core.prompts import EVAL_FILES, load_templates

    g = GenerateConfig.from_dict(plan.generate)
    templates = load_templates(g.prompts or EVAL_FILES[plan.train["property"]])
    steps, every = int(plan.train["steps"]), int(plan.train["checkpoint_every"])
    saved = sorted({0, steps, *range(every, steps + 1, every)})
    spec = g.checkpoints.strip()
    n_ckpt = len(saved) if spec == "all" else len({steps if p.strip() == "final" else p.strip()
                                                   for p in spec.split(",")})
    return len(templates) * len(g.seed_list()) * n_ckpt


def dry_run(spec: SweepSpec, runs_dir: Path, parallel: int) -> str:
    record = SweepRecord(runs_dir, spec.name)
    prev = {t.name: t for t in (record.state().trials if record.exists else ())}
    lines = [f"sweep {spec.name}: {len(spec.trials)} trial(s), run folders in {runs_dir}"]
    total, unknown = 0.0, []
    cache: dict[str, dict[str, Any]] = {}
    for t in spec.trials:
        key = json.dumps({k: t.plan.train.get(k) for k in ("resolution", "batch_size", "mixed_precision",
                                                             "jit_compile")}, sort_keys=True)
        m = cache.setdefault(key, measured_times(runs_dir, t.plan.train))
        old = prev.get(t.name) or TrialEntry(t.name, status="new")
        done = old.status == "finished" and old.fingerprint == t.fingerprint
        imgs = n_images(t.plan)
        est = ""
        if not done:
            if m["step_seconds"] is None or (imgs and m["image_seconds"] is None):
                unknown.append(t.name)
            else:
                sec = t.plan.train["steps"] * m["step_seconds"] + imgs * (m["image_seconds"] or 0.0)
                total += sec
                est = f"~{sec / 60:.1f} min"
        params = " ".join(f"{k}={v}" for k, v in t.params.items()) or "(base only)"
        lines.append(f"  {t.name}  {params}  steps={t.plan.train['steps']} images={imgs}  "
                     f"{'finished (skipped)' if done else old.status}  {est}".rstrip())
    for key, m in cache.items():
        cfg = json.loads(key)
        what = (f"resolution {cfg['resolution']}, batch {cfg['batch_size']}, precision {cfg['mixed_precision']}"
                f"{', XLA' if cfg['jit_compile'] else ''}")
        if m["step_seconds"] is None:
            lines.append(f"step time ({what}): no earlier run on this machine ({platform.node()}) in {runs_dir} "
                         "to measure it from; run one short trial first (e.g. steps = [2] in [grid])")
        else:
            img = f", {m['image_seconds']:.2f} s/image over {m['n_images']} image(s)" if m["image_seconds"] else ""
            lines.append(f"step time ({what}): {m['step_seconds']:.3f} s/step measured from {m['n_steps']} step(s) "
                         f"of {len(m['runs'])} earlier run(s) on this machine ({', '.join(m['runs'][:3])}"
                         f"{', ...' if len(m['runs']) > 3 else ''}){img}")
    if unknown:
        lines.append(f"estimate: unavailable for {len(unknown)} trial(s) (no measured step or image time)")
    if total:
        lines.append(f"estimate: {total / 60:.1f} min of training/generation for the measured trials, "
                     f"~{total / 60 / max(1, parallel):.1f} min wall with {parallel} at once (model builds and "
                     "scoring not included)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- the engine
def _run_train(plan: TrialPlan) -> dict[str, Any]:
    """Ray task body (fresh process): train + generate. A UserError is a result, not a retryable failure."""
    from core.trial import train_stage

    try:
        return train_stage(plan)
    except UserError as e:
        return {"status": "failed", "message": str(e)}


def _run_score(plan: TrialPlan) -> dict[str, Any]:
    """Ray task body (fresh process): CLIP scoring + audit (torch side)."""
    from core.trial import score_stage

    try:
        return score_stage(plan)
    except UserError as e:
        return {"status": "failed", "message": str(e)}


def start_ray(address: str | None, num_cpus: int | None, object_store_mb: int):
    """Attach to a cluster (`address`) or start an embedded local Ray for this command."""
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # this command's own instance: no token in ~/.ray
    try:
        import ray
    except ImportError:
        raise UserError("ray is not installed; pip install -r requirements.txt") from None
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # the workers import `core` as this process does: through `make install`'s editable install
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, log_to_driver=True, configure_logging=False)
    return ray


def default_parallel(spec: SweepSpec, cluster_gpus: float) -> int:
    if spec.sweep.parallel:
        return int(spec.sweep.parallel)
    if cluster_gpus and spec.sweep.gpus_per_trial:
        return max(1, int(cluster_gpus // spec.sweep.gpus_per_trial))
    return 1  # CPU only: a 512 px build holds many GB; one trial trains at a time


class Driver:
    """Runs the trials' stages as Ray tasks, keeps the sweep record, and stops cleanly on Ctrl-C."""

    def __init__(self, ray, spec: SweepSpec, runs_dir: Path, record: SweepRecord, parallel: int, gpus: float):
        self.ray, self.spec, self.record, self.parallel = ray, spec, record, parallel
        s = spec.sweep
        opts = dict(num_cpus=s.cpus_per_trial, num_gpus=(s.gpus_per_trial if gpus else 0), max_calls=1,
                    max_retries=s.max_retries, retry_exceptions=s.retry_exceptions)
        self.train_task = ray.remote(**opts)(_run_train)
        self.score_task = ray.remote(**opts)(_run_score)
        state = record.state() if record.exists else None
        prev = {t.name: t for t in (state.trials if state else ())}
        self.rows: dict[str, TrialEntry] = {}
        for t in spec.trials:
            old = prev.get(t.name) or TrialEntry(t.name)
            row = TrialEntry(t.name, params=dict(t.params), fingerprint=t.fingerprint, attempts=old.attempts,
                             resumed_from=old.resumed_from)
            if (old.status == "finished" and old.fingerprint == t.fingerprint
                    and t.plan.run.exists and t.plan.run.record.status == "finished"):
                row.status, row.stage, row.message = "finished", "done", old.message
            self.rows[t.name] = row
        self.created = (state.created if state else None) or time.time()
        self.stopped: list[str] = []

    def save(self) -> None:
        self.record.write_state(SweepState(
            name=self.spec.name, spec=str(self.spec.path.resolve()), created=self.created,
            engine={"ray": self.ray.__version__, "parallel": self.parallel}, varied=tuple(self.spec.varied),
            trials=tuple(self.rows.values())))

    def run(self) -> dict[str, int]:
        by_name = {t.name: t for t in self.spec.trials}
        queue = [t for t in self.spec.trials if self.rows[t.name].status != "finished"]
        skipped = len(self.spec.trials) - len(queue)
        if skipped:
            print(f"{skipped} trial(s) already finished: skipped")
        inflight: dict[Any, tuple[str, str]] = {}
        self.record.write_spec(self.spec.text)
        self.save()
        try:
            while queue or inflight:
                n_train = sum(1 for _, stage in inflight.values() if stage == "train")
                while queue and n_train < self.parallel:
                    t = queue.pop(0)
                    inflight[self.train_task.options(name=f"train {t.name}").remote(t.plan)] = (t.name, "train")
                    row = self.rows[t.name]
                    row.status, row.stage, row.attempts = "running", "train", row.attempts + 1
                    n_train += 1
                    print(f"start  {t.name}")
                self.save()
                ready, _ = self.ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    name, stage = inflight.pop(ref)
                    row, trial = self.rows[name], by_name[name]
                    try:
                        res = self.ray.get(ref)
                    except self.ray.exceptions.RayError as e:
                        res = {"status": "failed", "message": f"{stage} failed after retries: {str(e).splitlines()[0]}"}
                    if stage == "train" and res.get("resumed_from") is not None:
                        row.resumed_from = res["resumed_from"]
                    if res["status"] == "finished" and stage == "train" and (trial.plan.score or trial.plan.audit):
                        inflight[self.score_task.options(name=f"score {name}").remote(trial.plan)] = (name, "score")
                        row.stage = "score"
                        continue
                    row.status, row.message = res["status"], res.get("message", "")
                    row.stage = "done" if res["status"] == "finished" else stage
                    print(f"{res['status']:<9} {name}" + (f": {row.message}" if row.message else ""))
                self.save()
        except KeyboardInterrupt:
            self.stop(inflight)
            raise
        counts: dict[str, int] = {}
        for r in self.rows.values():
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def stop(self, inflight: dict[Any, tuple[str, str]], grace: float = 10.0) -> None:
        """Ctrl-C: ask every running stage to stop (train marks its run interrupted at a step boundary); a stage
        whose worker still holds its run's writer lock after `grace` seconds (a cancel does not always reach a
        retried task) is killed, so no trial trains on after the sweep has exited. Then record the truth: a run
        still marked running after its worker is gone was interrupted (`settle`)."""
        print("interrupted: stopping the running trials ...", file=sys.stderr)
        by_name = {t.name: t for t in self.spec.trials}
        for force in (False, True):
            for ref in inflight:
                try:
                    self.ray.cancel(ref, force=force)
                except Exception:  # noqa: BLE001 - already finished
                    pass
            deadline = time.time() + (grace if not force else 30.0)
            held = [by_name[n].plan.run for n, _ in inflight.values()]
            while held and time.time() < deadline:
                held = [r for r in held if r.exists and r.lock_holder() is not None]
                time.sleep(0.2)
            if not held:
                break
        for name, stage in inflight.values():
            row = self.rows[name]
            row.status, row.stage, row.message = "interrupted", stage, "sweep interrupted (Ctrl-C)"
            self.stopped.append(name)
        for row in self.rows.values():
            if row.status == "pending":
                row.message = "not started (sweep interrupted)"
        self.save()

    def settle(self) -> None:
        """After Ray is shut down (its workers gone): a stopped trial's run still marked running was interrupted.
        Takes the run's writer lock, so a run some other process still writes is left alone."""
        by_name = {t.name: t for t in self.spec.trials}
        for name in self.stopped:
            run = by_name[name].plan.run
            try:
                if run.exists:
                    with run.writer("sweep: record the interruption"):
                        if run.reload().record.status == "running":
                            run.update(status="interrupted", message="sweep interrupted; rerun the sweep to resume")
            except UserError as e:
                print(f"{name}: {e}", file=sys.stderr)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# -------------------------------------------------------------------------------------------------------- CLI
@dataclass
class SweepCommandConfig(StrictConfig):
    """`sweep` options besides the spec file (what to run is in the spec; these say where and how)."""

    runs_dir: Path = option(Path("runs"), "where the trials' run folders go (on a cluster: storage every node "
                                          "shares)", metavar="DIR")
    address: str | None = option(None, "attach to an existing Ray cluster (HEAD:6379, or auto on a node of it); "
                                       "default: start an embedded local Ray")
    num_cpus: int | None = option(None, "CPUs of the embedded local Ray (default: all)")
    object_store_mb: int = option(OBJECT_STORE_MB, "shared memory of the embedded local Ray in MB (trials exchange "
                                                   "only small results)")
    dry_run: bool = option(False, "print the trials and a time estimate; run nothing")

    def validate(self) -> None:
        check(self.num_cpus is None or self.num_cpus >= 1, "num_cpus", self.num_cpus, "must be at least 1")
        check(self.object_store_mb >= 1, "object_store_mb", self.object_store_mb, "must be at least 1")


def add_arguments(p, command: str) -> None:
    p.add_argument("spec", type=Path, metavar="SPEC", help="the sweep's TOML file (see `core/sweep.py`'s docstring)")
    add_options(p, SweepCommandConfig)


def run(args) -> int:
    cfg = from_args(SweepCommandConfig, args)
    runs_dir = cfg.runs_dir.resolve()
    spec = load_spec(args.spec, runs_dir)  # everything validated before Ray starts or a folder is made
    record = SweepRecord(runs_dir, spec.name)
    if cfg.dry_run:
        print(dry_run(spec, runs_dir, spec.sweep.parallel or 1))
        return 0
    ray = start_ray(cfg.address, cfg.num_cpus, cfg.object_store_mb)
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    driver = None
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        parallel = default_parallel(spec, gpus)
        print(f"sweep {spec.name}: {len(spec.trials)} trial(s), {parallel} training at once "
              f"({'%g GPU(s)' % gpus if gpus else 'no GPU'}), runs in {runs_dir}, record in {record.path}")
        driver = Driver(ray, spec, runs_dir, record, parallel, gpus)
        counts = driver.run()
    except KeyboardInterrupt:
        ray.shutdown()
        if driver is not None:
            driver.settle()
        print(f"sweep interrupted; rerun the same command to resume ({record.record_path})", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
        ray.shutdown()
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"; record: {record.record_path}")
    return 0 if set(counts) == {"finished"} else 1
