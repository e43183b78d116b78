"""`sweep`: many runs from one spec on Ray - an embedded local Ray by default, an existing cluster with --address.

SPEC is a TOML file (tables below; every table but [base] is optional). Relative paths in it are resolved against
the current folder, as on the command line, and stored absolute so every worker finds them.

    name = "tom-lr"            # the sweep's name (default: the spec file's stem); trial runs start with it
    [base]                     # `train`'s options (TrainConfig field names; '-' or '_' both accepted)
    images = "my-tom-pictures"
    token = "<tom-cat>"
    [grid]                     # every combination of these lists
    steps = [1000, 3000]
    lr = [0.002, 0.005]
    [random]                   # n draws (seeded) per grid point: a list = choices, a table = a range
    n = 4
    seed = 0
    vectors = [1, 2, 4]
    lr = { min = 1e-4, max = 1e-2, log = true }
    [generate]                 # after training: `generate`'s options (GenerateConfig); omit to skip
    checkpoints = "0,final"
    [score]                    # after generating: `score`'s options (ScoreConfig); `references` is required
    references = "my-tom-pictures"
    [audit]                    # the risk audit: `audit`'s options (AuditConfig; references default to the
                               # trial's training images); omit to skip
    [sweep]                    # how the sweep runs (SWEEP_DEFAULTS)

Every trial is an ordinary run folder in --runs-dir named from its parameters (`trial_name`), plus the sweep's
record in RUNS/sweeps/NAME/ (`core.sweeprecord`). Train+generate run in one fresh Ray worker process
(TensorFlow side) and score+audit in another (torch side): `max_calls=1`, so TensorFlow and torch never share a
process. A crashed worker is retried (`max_retries`) and the trial resumes from its last checkpoint; a rerun
skips finished trials; Ctrl-C stops the trials and leaves each run folder and the record with a true status.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import signal
import statistics
import sys
import time
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.config import StrictConfig, add_options, check, from_args, option
from core.errors import UserError
from core.runfolder import Run, list_runs
from core.sweeprecord import SweepRecord
from core.trial import DEFAULT_COMPONENTS, TrialPlan

TABLES = ("name", "base", "grid", "random", "generate", "score", "audit", "sweep")
SWEEP_DEFAULTS: dict[str, Any] = {
    "parallel": None,  # trials training at once; default: the cluster's GPUs / gpus_per_trial, or 1 without GPUs
    "gpus_per_trial": 1.0,  # GPUs each trial's worker asks Ray for (ignored on a cluster without GPUs)
    "cpus_per_trial": 1.0,  # CPUs each worker asks Ray for
    "max_retries": 2,  # retries of a stage whose worker died (crash, OOM kill, lost node); 0 = none
    "retry_exceptions": False,  # also retry a stage that raised (a bad-input UserError is never retried)
    "components": DEFAULT_COMPONENTS,  # factory(weight_spec, resolution) of the networks; for tests/custom models
}
PATH_KEYS = {"train": ("images", "prompts"), "generate": ("prompts", "init_image"), "score": ("references",),
             "audit": ("references", "held_out", "misuse")}
OBJECT_STORE_MB = 200  # trials exchange only small dicts; keep Ray's shared memory small


# --------------------------------------------------------------------------------------------------- the spec
@dataclass
class Trial:
    name: str
    params: dict[str, Any]  # the varied values, in spec order
    plan: TrialPlan
    fingerprint: str  # hash of everything the trial does: a finished trial with the same one is skipped


@dataclass
class SweepSpec:
    name: str
    path: Path
    text: str
    base: dict[str, Any]
    grid: dict[str, list]
    random: dict[str, Any]
    generate: dict[str, Any] | None
    score: dict[str, Any] | None
    audit: dict[str, Any] | None
    sweep: dict[str, Any] = field(default_factory=dict)
    trials: list[Trial] = field(default_factory=list)

    @property
    def varied(self) -> list[str]:
        return list(self.grid) + [k for k in self.random if k not in ("n", "seed")]


def _err(spec: Path, where: str, msg: str) -> UserError:
    return UserError(f"{spec}: {where}{': ' if where else ''}{msg}")


def _norm_keys(table: dict[str, Any]) -> dict[str, Any]:
    return {k.replace("-", "_"): v for k, v in table.items()}


def _abs_path(value: Any) -> Any:
    return str(Path(value).expanduser().resolve()) if isinstance(value, str) and value else value


def _resolve_paths(d: dict[str, Any], kind: str) -> dict[str, Any]:
    out = dict(d)
    for k in PATH_KEYS[kind]:
        if out.get(k):
            out[k] = _abs_path(out[k])
    if kind == "train" and out.get("weights") not in (None, "kerascv", "random"):
        out["weights"] = _abs_path(out["weights"])
    return out


def _sig3(x: float) -> float:
    return float(f"{x:.3g}")


def _draw(rng: random.Random, key: str, rule: Any) -> Any:
    if isinstance(rule, list):
        return rule[rng.randrange(len(rule))]
    lo, hi, log = rule["min"], rule["max"], rule.get("log", False)
    if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool):
        if log:
            return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        return rng.randint(lo, hi)
    if log:
        return _sig3(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return _sig3(rng.uniform(lo, hi))


def _check_random(spec_path: Path, table: dict[str, Any], train_keys: set[str]) -> None:
    n = table.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _err(spec_path, "[random] n", f"{n!r}: must be an integer >= 1 (the number of draws)")
    if not isinstance(table.get("seed", 0), int):
        raise _err(spec_path, "[random] seed", f"{table.get('seed')!r}: must be an integer")
    params = {k: v for k, v in table.items() if k not in ("n", "seed")}
    if not params:
        raise _err(spec_path, "[random]", "no parameter to draw; add e.g. lr = { min = 1e-4, max = 1e-2, log = true }")
    for k, rule in params.items():
        where = f"[random] {k}"
        if k not in train_keys:
            raise _err(spec_path, where, f"not a train option; known: {', '.join(sorted(train_keys))}")
        if isinstance(rule, list):
            if not rule:
                raise _err(spec_path, where, "empty list of choices")
            continue
        if not isinstance(rule, dict):
            raise _err(spec_path, where, f"{rule!r}: use a list of choices or a table {{ min = .., max = .. }}")
        extra = sorted(set(rule) - {"min", "max", "log"})
        if extra or "min" not in rule or "max" not in rule:
            raise _err(spec_path, where, "a range is a table with min, max and optional log = true")
        lo, hi = rule["min"], rule["max"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) or not lo < hi:
            raise _err(spec_path, where, f"min={lo!r}, max={hi!r}: need numbers with min < max")
        if rule.get("log") and lo <= 0:
            raise _err(spec_path, where, f"min={lo!r}: a log range needs min > 0")


def trial_name(sweep: str, params: dict[str, Any], train: dict[str, Any]) -> str:
    """`SWEEP-key-value_key-value-HASH`: readable varied values plus a short hash of the whole training config
    (so a changed [base] makes new runs rather than resuming ones trained differently)."""
    def slug(v: Any) -> str:
        s = re.sub(r"[^A-Za-z0-9.]+", "-", str(v)).strip("-.")
        return s or "x"

    h = hashlib.sha256(json.dumps(train, sort_keys=True).encode()).hexdigest()[:6]
    parts = "_".join(f"{slug(k)}-{slug(v)}" for k, v in params.items())
    name = f"{slug(sweep)}-{parts}" if parts else slug(sweep)
    return f"{name[:120]}-{h}"


def load_spec(path: str | os.PathLike, runs_dir: str | os.PathLike) -> SweepSpec:
    """Read and validate the whole spec; every error is one line naming the key. Builds the trial list."""
    from core.generate import GenerateConfig
    from core.score import ScoreConfig
    from core.train import TrainConfig, prepare

    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{spec_path}: spec file not found") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{spec_path}: not valid TOML ({e})") from None
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise _err(spec_path, unknown[0], f"unknown table or key; known: {', '.join(TABLES)}")
    for t in TABLES[1:]:
        if t in raw and not isinstance(raw[t], dict):
            raise _err(spec_path, f"[{t}]", "must be a table")
    if "base" not in raw:
        raise _err(spec_path, "[base]", "missing; it holds `train`'s options (images, token, init, ...)")
    name = raw.get("name", spec_path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise _err(spec_path, "name", f"{name!r}: use letters, digits, '.', '_' and '-' only")

    train_keys = {f.name for f in fields(TrainConfig)}
    base = _norm_keys(raw["base"])
    grid = _norm_keys(raw.get("grid", {}))
    rand = _norm_keys(raw.get("random", {}))
    for table, d in (("base", base), ("grid", grid)):
        for k in d:
            if k not in train_keys:
                raise _err(spec_path, f"[{table}] {k}", f"not a train option; known: {', '.join(sorted(train_keys))}")
    for k, v in grid.items():
        if not isinstance(v, list):
            raise _err(spec_path, f"[grid] {k}", f"{v!r}: must be a list of values, e.g. {k} = [..., ...]")
        if not v:
            raise _err(spec_path, f"[grid] {k}", "empty list; give at least one value or remove the key")
    if rand:
        _check_random(spec_path, rand, train_keys)
    rand_params = [k for k in rand if k not in ("n", "seed")]
    for k in grid:
        if k in base:
            raise _err(spec_path, f"[grid] {k}", "also set in [base]; keep it in one table")
        if k in rand_params:
            raise _err(spec_path, f"[grid] {k}", "also drawn in [random]; keep it in one table")
    for k in rand_params:
        if k in base:
            raise _err(spec_path, f"[random] {k}", "also set in [base]; keep it in one table")

    def strict(table: str, cls, data: dict[str, Any]) -> dict[str, Any]:
        names = {f.name for f in fields(cls)}
        data = _norm_keys(data)
        bad = sorted(set(data) - names)
        if bad:
            raise _err(spec_path, f"[{table}] {bad[0]}", f"unknown key; known: {', '.join(sorted(names))}")
        return data

    generate = score = audit = None
    if "generate" in raw:
        generate = _resolve_paths(strict("generate", GenerateConfig, raw["generate"]), "generate")
        try:
            GenerateConfig.from_dict(generate)
        except UserError as e:
            raise _err(spec_path, "[generate]", str(e)) from None
    if "score" in raw:
        if generate is None:
            raise _err(spec_path, "[score]", "needs [generate] (scoring rates a trial's generated images)")
        score = strict("score", ScoreConfig, raw["score"])
        if not score.get("references"):
            raise _err(spec_path, "[score] references", "missing; a folder of reference images")
        score = _resolve_paths(score, "score")
        try:
            ScoreConfig(**score)
            from core.images import validate_images

            validate_images(Path(score["references"]))
        except UserError as e:
            raise _err(spec_path, "[score]", str(e)) from None
    if "audit" in raw:
        if generate is None:
            raise _err(spec_path, "[audit]", "needs [generate] (the audit reads a trial's generated images)")
        try:
            from core.audit import AuditConfig
        except ImportError:
            raise _err(spec_path, "[audit]", "the risk audit (core.audit) is not in this version; remove the "
                                             "table") from None
        audit = _resolve_paths(strict("audit", AuditConfig, raw["audit"]), "audit")
        try:  # references default to each trial's training images (checked with them below)
            AuditConfig(**{"references": base.get("images") or ".", **audit})
            if audit.get("held_out"):
                from core.images import validate_images

                validate_images(Path(audit["held_out"]))
        except UserError as e:
            raise _err(spec_path, "[audit]", str(e)) from None
    sweep = _norm_keys(raw.get("sweep", {}))
    bad = sorted(set(sweep) - set(SWEEP_DEFAULTS))
    if bad:
        raise _err(spec_path, f"[sweep] {bad[0]}", f"unknown key; known: {', '.join(SWEEP_DEFAULTS)}")
    sweep = {**SWEEP_DEFAULTS, **sweep}
    checks = {
        "parallel": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        "gpus_per_trial": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
        "cpus_per_trial": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
        "max_retries": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "retry_exceptions": lambda v: isinstance(v, bool),
        "components": lambda v: isinstance(v, str) and ":" in v,
    }
    for k, ok in checks.items():
        if not ok(sweep[k]):
            raise _err(spec_path, f"[sweep] {k}", f"{sweep[k]!r}: see SWEEP_DEFAULTS (default {SWEEP_DEFAULTS[k]!r})")

    spec = SweepSpec(name, spec_path, text, base, grid, rand, generate, score, audit, sweep)
    spec.trials = expand(spec, Path(runs_dir))
    # validate every trial's training config, then the inputs each distinct one reads (images, token, prompts)
    seen: set[str] = set()
    for t in spec.trials:
        try:
            cfg = TrainConfig.from_dict(t.plan.train)
        except UserError as e:
            key = str(e).split("=", 1)[0]
            table = "grid" if key in grid else "random" if key in rand else "base"
            raise _err(spec_path, f"[{table}]", str(e)) from None
        inputs = json.dumps({k: t.plan.train.get(k) for k in ("images", "token", "init", "vectors", "property",
                                                                "prompts", "min_image_size")}, sort_keys=True)
        if inputs not in seen:
            seen.add(inputs)
            try:
                prepare(cfg)
            except UserError as e:
                raise _err(spec_path, f"trial {t.name}", str(e)) from None
    return spec


def expand(spec: SweepSpec, runs_dir: Path) -> list[Trial]:
    """The trials: every grid combination x `n` random draws (seeded), duplicates removed, in a fixed order."""
    from core.train import TrainConfig

    combos = [dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())] or [{}]
    draws: list[dict[str, Any]] = [{}]
    if spec.random:
        rng = random.Random(spec.random.get("seed", 0))
        params = {k: v for k, v in spec.random.items() if k not in ("n", "seed")}
        draws = [{k: _draw(rng, k, rule) for k, rule in params.items()} for _ in range(spec.random["n"])]
    defaults = TrainConfig().to_dict()
    out, names = [], set()
    for combo in combos:
        for draw in draws:
            params = {**combo, **draw}
            train = _resolve_paths({**defaults, **spec.base, **params}, "train")
            name = trial_name(spec.name, params, train)
            if name in names:
                continue
            names.add(name)
            audit = None if spec.audit is None else {"references": train["images"], **spec.audit}
            plan = TrialPlan(name=name, runs_dir=str(runs_dir.resolve()), train=train, generate=spec.generate,
                             score=spec.score, audit=audit, components=spec.sweep["components"])
            fp = hashlib.sha256(json.dumps([train, spec.generate, spec.score, audit, plan.components],
                                           sort_keys=True, default=str).encode()).hexdigest()[:16]
            out.append(Trial(name, params, plan, fp))
    return out


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
    prev = {t["name"]: t for t in (record.trials() if record.exists else [])}
    lines = [f"sweep {spec.name}: {len(spec.trials)} trial(s), run folders in {runs_dir}"]
    total, unknown = 0.0, []
    cache: dict[str, dict[str, Any]] = {}
    for t in spec.trials:
        key = json.dumps({k: t.plan.train.get(k) for k in ("resolution", "batch_size", "mixed_precision",
                                                             "jit_compile")}, sort_keys=True)
        m = cache.setdefault(key, measured_times(runs_dir, t.plan.train))
        old = prev.get(t.name, {})
        done = old.get("status") == "finished" and old.get("fingerprint") == t.fingerprint
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
                     f"{'finished (skipped)' if done else old.get('status', 'new')}  {est}".rstrip())
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
        root = str(Path(__file__).resolve().parent.parent)  # workers of the local instance import this checkout
        paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, log_to_driver=True, configure_logging=False)
    return ray


def default_parallel(spec: SweepSpec, cluster_gpus: float) -> int:
    if spec.sweep["parallel"]:
        return int(spec.sweep["parallel"])
    if cluster_gpus and spec.sweep["gpus_per_trial"]:
        return max(1, int(cluster_gpus // spec.sweep["gpus_per_trial"]))
    return 1  # CPU only: a 512 px build holds many GB; one trial trains at a time


class Driver:
    """Runs the trials' stages as Ray tasks, keeps the sweep record, and stops cleanly on Ctrl-C."""

    def __init__(self, ray, spec: SweepSpec, runs_dir: Path, record: SweepRecord, parallel: int, gpus: float):
        self.ray, self.spec, self.record, self.parallel = ray, spec, record, parallel
        s = spec.sweep
        opts = dict(num_cpus=s["cpus_per_trial"], num_gpus=(s["gpus_per_trial"] if gpus else 0), max_calls=1,
                    max_retries=s["max_retries"], retry_exceptions=s["retry_exceptions"])
        self.train_task = ray.remote(**opts)(_run_train)
        self.score_task = ray.remote(**opts)(_run_score)
        prev = {t["name"]: t for t in (record.trials() if record.exists else [])}
        self.rows: dict[str, dict[str, Any]] = {}
        for t in spec.trials:
            old = prev.get(t.name, {})
            row = {"name": t.name, "params": t.params, "fingerprint": t.fingerprint, "status": "pending",
                   "stage": "", "attempts": int(old.get("attempts", 0)), "resumed_from": old.get("resumed_from"),
                   "message": ""}
            if (old.get("status") == "finished" and old.get("fingerprint") == t.fingerprint
                    and t.plan.run.exists and t.plan.run.record.status == "finished"):
                row.update(status="finished", stage="done", message=old.get("message", ""))
            self.rows[t.name] = row
        self.created = (record.read().get("created") if record.exists else None) or time.time()
        self.stopped: list[str] = []

    def save(self) -> None:
        self.record.write({"name": self.spec.name, "spec": str(self.spec.path.resolve()), "created": self.created,
                           "engine": {"ray": self.ray.__version__, "parallel": self.parallel},
                           "varied": self.spec.varied, "trials": list(self.rows.values())})

    def run(self) -> dict[str, int]:
        by_name = {t.name: t for t in self.spec.trials}
        queue = [t for t in self.spec.trials if self.rows[t.name]["status"] != "finished"]
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
                    self.rows[t.name].update(status="running", stage="train", attempts=self.rows[t.name]["attempts"] + 1)
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
                        row["resumed_from"] = res["resumed_from"]
                    if res["status"] == "finished" and stage == "train" and (trial.plan.score or trial.plan.audit):
                        inflight[self.score_task.options(name=f"score {name}").remote(trial.plan)] = (name, "score")
                        row.update(stage="score")
                        continue
                    row.update(status=res["status"], stage="done" if res["status"] == "finished" else stage,
                               message=res.get("message", ""))
                    print(f"{res['status']:<9} {name}" + (f": {row['message']}" if row["message"] else ""))
                self.save()
        except KeyboardInterrupt:
            self.stop(inflight)
            raise
        counts: dict[str, int] = {}
        for r in self.rows.values():
            counts[r["status"]] = counts.get(r["status"], 0) + 1
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
            self.rows[name].update(status="interrupted", stage=stage, message="sweep interrupted (Ctrl-C)")
            self.stopped.append(name)
        for row in self.rows.values():
            if row["status"] == "pending":
                row["message"] = "not started (sweep interrupted)"
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
                            run.update_meta(status="interrupted",
                                            message="sweep interrupted; rerun the sweep to resume")
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
        print(dry_run(spec, runs_dir, spec.sweep["parallel"] or 1))
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
