"""The sweep spec: a TOML file read and validated once (`load_spec`), expanded into trials (`expand`).

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
    [sweep]                    # how the sweep runs (SweepSettings: parallel, gpus/cpus per trial, retries)

The driver that runs the trials on Ray is `core.sweep`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.config import StrictConfig, check, option
from core.errors import UserError
from core.trial import DEFAULT_COMPONENTS, TrialPlan

TABLES = ("name", "base", "grid", "random", "generate", "score", "audit", "sweep")
PATH_KEYS = {"train": ("images", "prompts"), "generate": ("prompts", "init_image"), "score": ("references",),
             "audit": ("references", "held_out", "misuse")}


@dataclass
class SweepSettings(StrictConfig):
    """The [sweep] table: how the sweep runs (not what a trial does, so not part of a trial's fingerprint)."""

    parallel: int | None = option(None, "trials training at once; default: the cluster's GPUs / gpus_per_trial, "
                                        "or 1 without GPUs")
    gpus_per_trial: float = option(1.0, "GPUs each trial's worker asks Ray for (ignored on a cluster without GPUs)")
    cpus_per_trial: float = option(1.0, "CPUs each worker asks Ray for")
    max_retries: int = option(2, "retries of a stage whose worker died (crash, OOM kill, lost node); 0 = none")
    retry_exceptions: bool = option(False, "also retry a stage that raised (a bad-input UserError is never "
                                           "retried)")
    components: str = option(DEFAULT_COMPONENTS, "factory(weight_spec, resolution) of the networks, MODULE:NAME; "
                                                 "for tests and custom models")

    def validate(self) -> None:
        check(self.parallel is None or self.parallel >= 1, "parallel", self.parallel, "must be at least 1")
        check(self.gpus_per_trial >= 0, "gpus_per_trial", self.gpus_per_trial, "must be 0 or more")
        check(self.cpus_per_trial > 0, "cpus_per_trial", self.cpus_per_trial, "must be more than 0")
        check(self.max_retries >= 0, "max_retries", self.max_retries, "must be 0 or more")
        check(":" in self.components, "components", self.components, "use MODULE:FUNCTION")


SWEEP_DEFAULTS: dict[str, Any] = SweepSettings().to_dict()  # the [sweep] table's defaults, as before


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
    sweep: SweepSettings = field(default_factory=SweepSettings)
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
    """Read and validate the whole spec; every error is one line naming the key. Builds the trial list.

    1. read the TOML and check its tables (`_read_tables`);
    2. the training tables: [base], [grid], [random] (`_training_tables`);
    3. the stages after training: [generate], [score], [audit] (`_stage_tables`);
    4. how the sweep runs: [sweep] (`SweepSettings`);
    5. expand the trials and validate each distinct training config and its inputs (`_check_trials`)."""
    spec_path = Path(path)
    raw, name, text = _read_tables(spec_path)
    base, grid, rand = _training_tables(spec_path, raw)
    generate, score, audit = _stage_tables(spec_path, raw, base)
    settings = _settings(spec_path, raw.get("sweep", {}))
    spec = SweepSpec(name, spec_path, text, base, grid, rand, generate, score, audit, settings)
    spec.trials = expand(spec, Path(runs_dir))
    _check_trials(spec)
    return spec


def _read_tables(spec_path: Path) -> tuple[dict[str, Any], str, str]:
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
    return raw, name, text


def _training_tables(spec_path: Path, raw: dict[str, Any]) -> tuple[dict, dict, dict]:
    """[base], [grid] and [random]: train options only, each set in one table."""
    from core.train import TrainConfig

    train_keys = {f.name for f in fields(TrainConfig)}
    base, grid, rand = (_norm_keys(raw.get(t, {})) for t in ("base", "grid", "random"))
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
    return base, grid, rand


def _strict(spec_path: Path, table: str, cls, data: dict[str, Any]) -> dict[str, Any]:
    """A stage table's keys, which must be fields of the stage's config dataclass."""
    names = {f.name for f in fields(cls)}
    data = _norm_keys(data)
    bad = sorted(set(data) - names)
    if bad:
        raise _err(spec_path, f"[{table}] {bad[0]}", f"unknown key; known: {', '.join(sorted(names))}")
    return data


def _stage_tables(spec_path: Path, raw: dict[str, Any], base: dict[str, Any]) -> tuple:
    """[generate], [score] and [audit], each validated by its stage's config (paths made absolute)."""
    from core.generate import GenerateConfig
    from core.images import validate_images
    from core.score import ScoreConfig

    generate = score = audit = None
    if "generate" in raw:
        generate = _resolve_paths(_strict(spec_path, "generate", GenerateConfig, raw["generate"]), "generate")
        try:
            GenerateConfig.from_dict(generate)
        except UserError as e:
            raise _err(spec_path, "[generate]", str(e)) from None
    for table in ("score", "audit"):
        if table in raw and generate is None:
            raise _err(spec_path, f"[{table}]", f"needs [generate] ({table} reads a trial's generated images)")
    if "score" in raw:
        score = _strict(spec_path, "score", ScoreConfig, raw["score"])
        if not score.get("references"):
            raise _err(spec_path, "[score] references", "missing; a folder of reference images")
        score = _resolve_paths(score, "score")
        try:
            ScoreConfig(**score)
            validate_images(Path(score["references"]))
        except UserError as e:
            raise _err(spec_path, "[score]", str(e)) from None
    if "audit" in raw:
        from core.audit import AuditConfig

        audit = _resolve_paths(_strict(spec_path, "audit", AuditConfig, raw["audit"]), "audit")
        try:  # references default to each trial's training images (checked with them in _check_trials)
            AuditConfig(**{"references": base.get("images") or ".", **audit})
            if audit.get("held_out"):
                validate_images(Path(audit["held_out"]))
        except UserError as e:
            raise _err(spec_path, "[audit]", str(e)) from None
    return generate, score, audit


def _settings(spec_path: Path, table: Any) -> SweepSettings:
    """The [sweep] table as `SweepSettings`; a bad key or value is one line naming it."""
    table = _norm_keys(table)
    names = [f.name for f in fields(SweepSettings)]
    bad = sorted(set(table) - set(names))
    if bad:
        raise _err(spec_path, f"[sweep] {bad[0]}", f"unknown key; known: {', '.join(names)}")
    try:
        return SweepSettings.from_dict(table)
    except UserError as e:  # "key=value: rule" -> "[sweep] key: value: rule"
        key, _, rest = str(e).partition("=")
        raise _err(spec_path, f"[sweep] {key}", f"{rest} (default {SWEEP_DEFAULTS.get(key)!r})") from None


def _check_trials(spec: SweepSpec) -> None:
    """Every trial's training config, then the inputs each distinct one reads (images, token, prompts)."""
    from core.train import TrainConfig, prepare

    seen: set[str] = set()
    for t in spec.trials:
        try:
            cfg = TrainConfig.from_dict(t.plan.train)
        except UserError as e:
            key = str(e).split("=", 1)[0]
            table = "grid" if key in spec.grid else "random" if key in spec.random else "base"
            raise _err(spec.path, f"[{table}]", str(e)) from None
        inputs = json.dumps({k: t.plan.train.get(k) for k in ("images", "token", "init", "vectors", "property",
                                                                "prompts", "min_image_size")}, sort_keys=True)
        if inputs not in seen:
            seen.add(inputs)
            try:
                prepare(cfg)
            except UserError as e:
                raise _err(spec.path, f"trial {t.name}", str(e)) from None

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
                             score=spec.score, audit=audit, components=spec.sweep.components)
            fp = hashlib.sha256(json.dumps([train, spec.generate, spec.score, audit, plan.components],
                                           sort_keys=True, default=str).encode()).hexdigest()[:16]
            out.append(Trial(name, params, plan, fp))
    return out


