"""Scoring a run (`score`): CLIP-I (reconstruction) and CLIP-T (editability) of every generated image, the
baselines (initializer at checkpoint 0, reference-vs-reference ceiling) and per-checkpoint / per-prompt summaries
with bootstrap 95% confidence intervals.

    CLIP-I(image) = mean over reference images r of cos(E_img(image), E_img(r))
    CLIP-T(image) = cos(E_img(image), E_txt(prompt with the placeholder removed))

Raw cosines (no x100 or x2.5 scaling), as in the textual-inversion paper's evaluation (Gal et al. 2022, sec. 4.2).

This module imports no torch at import time (the CLIP model is loaded by `core.clip_score` inside `score_run`), so
the dashboard and the model card can use `scores_frame`, `summarize_by_step` and `summarize_by_prompt` freely.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from core.config import StrictConfig, add_options, add_progress_flag, add_run_argument, check, from_args, option
from core.errors import UserError
from core.prompts import strip_token
from core.runfolder import PIPELINE_CHECK_LABEL, Run, sha256_file
from core.stats import DEFAULT_N_BOOT, bootstrap_ci

SCORES_SCHEMA = 1
METRICS = ("clip_i", "clip_t")
SUMMARY_COLUMNS = ["n"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "lo", "hi")]


@dataclass
class ScoreConfig(StrictConfig):
    """Everything `score` needs besides the run; saved in scores.json."""

    references: Path = option(required=True, help="folder of reference images of the character or style, "
                                                  "validated like training images", metavar="DIR")
    clip: str = option("ViT-B-32:openai", "MODEL:TAG; TAG is an open_clip pretrained tag, a local weights file "
                                          "(ViT-B-32:/path/open_clip_model.safetensors) or 'random' (pipeline check)")
    clip_seed: int = option(0, "torch seed applied right before building a MODEL:random CLIP model")
    batch_size: int = option(16, "images per CLIP forward pass")
    device: str = option("auto", "auto (cuda when available), cpu or cuda", choices=("auto", "cpu", "cuda"))
    n_boot: int = option(DEFAULT_N_BOOT, "bootstrap resamples for every confidence interval")

    def __post_init__(self) -> None:
        self.references = Path(self.references)
        self.validate()  # also when built directly (tests, the demo), not only through from_dict

    def validate(self) -> None:
        check(int(self.batch_size) >= 1, "batch_size", self.batch_size, "must be at least 1")
        check(int(self.n_boot) >= 1, "n_boot", self.n_boot, "must be at least 1")
        check(self.device in ("auto", "cpu", "cuda"), "device", self.device, "use auto, cpu or cuda")


# ------------------------------------------------------------------------------------ torch-free summaries
def scores_frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Score rows (as read from scores.csv, or a DataFrame) with typed columns; `template` falls back to `prompt`."""
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=["path", "step", "prompt", "template", "seed", "clip_i", "clip_t"])
    for col in ("path", "step", "prompt", "seed", "clip_i", "clip_t"):
        if col not in df.columns:
            raise UserError(f"score rows lack the column {col!r}; rescore the run with `python -m core score`")
    df["step"] = pd.to_numeric(df["step"]).astype(int)
    df["seed"] = pd.to_numeric(df["seed"]).astype(int)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m]).astype(float)
    if "template" not in df.columns:
        df["template"] = ""
    tmpl = df["template"].fillna("").astype(str)
    df["template"] = tmpl.where(tmpl != "", df["prompt"].astype(str))
    return df


def _summarize(df: pd.DataFrame, keys: list[str], n_boot: int) -> pd.DataFrame:
    out = []
    for key, g in df.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key))
        row["n"] = len(g)
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_lo"], row[f"{m}_hi"] = bootstrap_ci(g[m].to_numpy(), n_boot=n_boot)
        out.append(row)
    return pd.DataFrame(out, columns=keys + SUMMARY_COLUMNS)


def summarize_by_step(rows, n_boot: int = DEFAULT_N_BOOT) -> pd.DataFrame:
    """One row per checkpoint: step, n, clip_i_mean/lo/hi, clip_t_mean/lo/hi (bootstrap 95% CI over images)."""
    df = scores_frame(rows)
    out = _summarize(df, ["step"], n_boot)
    if not out.empty:
        out["step"] = out["step"].astype(int)
    return out


def summarize_by_prompt(rows, n_boot: int = DEFAULT_N_BOOT) -> pd.DataFrame:
    """One row per prompt template and checkpoint: template, step, n, clip_i_mean/lo/hi, clip_t_mean/lo/hi
    (CI over the seeds). `template` is the prompt template with {} (or the prompt, for rows without one)."""
    df = scores_frame(rows)
    out = _summarize(df, ["template", "step"], n_boot)
    if not out.empty:
        out["step"] = out["step"].astype(int)
    return out


def reference_ceiling(ref_embeddings: np.ndarray, n_boot: int = DEFAULT_N_BOOT) -> dict[str, Any]:
    """The 'real images' ceiling of CLIP-I: mean cosine between distinct reference images.

    Each reference's mean similarity to the others is one value (its leave-one-out CLIP-I); their mean equals the
    mean over all distinct pairs, and the CI resamples reference images (the independent units), not pairs."""
    e = np.asarray(ref_embeddings, dtype=np.float64)
    n = len(e)
    if n < 2:
        return {"mean": None, "lo": None, "hi": None, "n_images": n, "n_pairs": 0,
                "note": "needs at least 2 reference images"}
    sim = e @ e.T
    loo = (sim.sum(axis=1) - np.diag(sim)) / (n - 1)
    mean, lo, hi = bootstrap_ci(loo, n_boot=n_boot)
    return {"mean": mean, "lo": lo, "hi": hi, "n_images": n, "n_pairs": n * (n - 1) // 2}


def clip_text(row: Mapping[str, Any], token: str) -> str:
    """CLIP-T text of an image row: its template with {} removed, or its prompt with the token removed."""
    tmpl = str(row.get("template") or "")
    if "{}" in tmpl:
        return strip_token(tmpl)
    prompt = str(row.get("prompt") or "")
    tok = str(row.get("token") or token)
    return strip_token(prompt.replace(tok, "{}")) if tok and tok in prompt else strip_token(prompt)


def _jsonable(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


# --------------------------------------------------------------------------------------------- scoring
def _image_rows(run: Run) -> list[dict[str, str]]:
    rows = run.read_images()
    if not rows:
        raise UserError(f"{run.path}: no generated images (images.csv is empty or missing); run "
                        "`python -m core generate` first")
    by_path: dict[str, dict[str, str]] = {}
    for r in rows:  # append-only index: a path written twice means the later line describes the file on disk
        by_path.pop(r["path"], None)
        by_path[r["path"]] = r
    rows = list(by_path.values())
    for r in rows:  # every path must stay inside the run (no absolute paths, `..` or symlinks out of it)
        run.resolve_inside(r["path"], what="image")
    missing = [r["path"] for r in rows if not (run.path / r["path"]).is_file()]
    if missing:
        shown = "\n".join(f"  {run.path / p}" for p in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise UserError(f"{run.path}: {len(missing)} image(s) listed in images.csv are missing; regenerate them "
                        f"or restore the files:\n{shown}{more}")
    return rows


def _load(path: Path):
    from core.images import load_rgb

    try:
        return load_rgb(path)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for damaged files
        raise UserError(f"{path}: cannot be read as an image ({type(e).__name__}: {e}); regenerate or delete "
                        "it (scores so far are saved)") from e


def score_run(run: Run, config: ScoreConfig, scorer=None, progress: bool = True,
              log=print) -> dict[str, Any]:
    """Score every image of `run` not scored yet with the same CLIP model and references; write scores.csv and
    scores.json; return the scores.json dict. `scorer` (a core.clip_score.ClipScorer) is built from
    `config.clip` when not given. Holds the run's writer lock; an unexpected failure is logged in the run."""
    run.record  # a clear error if this is not a run folder (before a lock file is made in it)
    with run.writer("score"):
        try:
            return _score_run(run, config, scorer, progress, log)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as e:
            raise run.record_failure("score", e, mark_failed=False,
                                     hint=f"scores so far are kept; rerun `python -m core score {run.path}`") from e


def _score_run(run: Run, config: ScoreConfig, scorer, progress: bool, log) -> dict[str, Any]:
    from core.images import validate_images

    record = run.record  # a clear error if this is not a run folder or run.json is damaged
    images = _image_rows(run)
    ref_paths = validate_images(config.references)  # before loading CLIP: bad input fails fast
    refs = [{"file": p.name, "sha256": sha256_file(p)} for p in ref_paths]

    if scorer is None:
        from core.clip_score import load_clip

        scorer = load_clip(config.clip, seed=config.clip_seed, device=config.device)
    from core.clip_score import describe, provenance_key, weights_label

    prov = dict(scorer.provenance)
    label = weights_label(prov)

    # what a previous run of `score` left: keep its rows only if CLIP model, weights and references are the same
    prev_meta = run.read_scores_meta() or {}
    prev_rows = {r["path"]: r for r in run.read_scores()}
    keep: dict[str, dict[str, Any]] = {}
    if prev_rows:
        same_clip = provenance_key(prev_meta.get("clip")) == provenance_key(prov)
        prev_refs = (prev_meta.get("references") or {}).get("files")
        same_refs = prev_refs == refs
        if same_clip and same_refs:
            keep = {p: r for p, r in prev_rows.items() if p in {i["path"] for i in images}}
        elif not same_clip:
            log(f"CLIP model changed (was {describe(prev_meta.get('clip'))}, now {describe(prov)}): "
                f"rescoring all {len(images)} images")
        elif prev_refs is None:
            log(f"no record of the previous scoring's reference images: rescoring all {len(images)} images")
        else:
            log(f"reference images changed since the last scoring: rescoring all {len(images)} images")
    todo = [r for r in images if r["path"] not in keep]
    if keep:
        log(f"{len(keep)} image(s) already scored with {describe(prov)}; scoring {len(todo)} new")

    pipeline_reasons = []
    if record.is_pipeline_check:
        pipeline_reasons.append(f"Stable Diffusion weights: {record.weights.source}")
    if scorer.is_random:
        pipeline_reasons.append(f"CLIP weights: random (seed {prov.get('seed')})")
    base_meta: dict[str, Any] = {
        "schema_version": SCORES_SCHEMA,
        "clip": prov,
        "clip_label": describe(prov),
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                   "clip": f"{prov['model']}:{prov['pretrained']}", "device": scorer.device},
        "references": {"dir": str(Path(config.references).resolve()), "files": refs},
        "run": {"name": run.name, "weights": record.weights.as_dict(), "token": asdict(record.token)},
        "pipeline_check": bool(pipeline_reasons),
        "pipeline_check_reasons": pipeline_reasons,
        "label": PIPELINE_CHECK_LABEL if pipeline_reasons else "",
        "complete": False,
        "updated": time.time(),
    }

    order = {r["path"]: i for i, r in enumerate(images)}
    done: dict[str, dict[str, Any]] = dict(keep)

    def save_rows() -> None:
        run.write_scores(sorted(done.values(), key=lambda r: order[r["path"]]))

    ref_emb = scorer.encode_images([_load(p) for p in ref_paths], batch_size=config.batch_size)
    if todo:
        # written first, so an interrupted scoring keeps its finished batches on the next run (same CLIP and refs)
        run.write_scores_meta(base_meta)
        save_rows()
        texts = [clip_text(r, record.token.placeholder) for r in todo]
        uniq = sorted(set(texts))
        text_emb = dict(zip(uniq, scorer.encode_texts(uniq)))
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", desc=f"CLIP scoring {run.name}", disable=not progress,
                   file=sys.stderr)
        try:
            for start in range(0, len(todo), config.batch_size):
                batch = todo[start:start + config.batch_size]
                pics = [_load(run.resolve_inside(r["path"], what="image")) for r in batch]
                emb = scorer.encode_images(pics, batch_size=config.batch_size)
                clip_i = (emb @ ref_emb.T).mean(axis=1)  # mean cosine to each reference image
                for r, e, ci, text in zip(batch, emb, clip_i, texts[start:start + len(batch)]):
                    done[r["path"]] = {
                        "path": r["path"], "step": int(r["step"]), "prompt": r.get("prompt", ""),
                        "template": r.get("template", ""), "seed": int(r["seed"]),
                        "clip_i": float(ci), "clip_t": float(e @ text_emb[text]),
                        "clip_model": prov["model"], "clip_weights": label,
                    }
                save_rows()
                bar.update(len(batch))
        finally:
            bar.close()
    else:
        save_rows()

    rows = run.read_scores()
    by_step = summarize_by_step(rows, n_boot=config.n_boot)
    by_prompt = summarize_by_prompt(rows, n_boot=config.n_boot)
    init = by_step[by_step["step"] == 0]
    initializer = ({"available": True, **_jsonable(init)[0],
                    "note": "images at checkpoint 0 use the initializer word's embedding (before training)"}
                   if len(init) else {"available": False,
                                      "note": "no images at checkpoint 0; generate at step 0 for this baseline"})
    ceiling = reference_ceiling(ref_emb, n_boot=config.n_boot)
    meta = {
        **base_meta,
        "baselines": {
            "reference_ceiling_clip_i": ceiling["mean"],  # the number the dashboard and the card show
            "reference_ceiling": ceiling,
            "initializer": initializer,
        },
        "summaries": {"by_step": _jsonable(by_step), "by_prompt": _jsonable(by_prompt)},
        "n_images": len(rows),
        "n_scored_now": len(todo),
        "n_kept": len(keep),
        "inputs": run.scores_inputs(),  # what the summaries were computed from (Run.scores_stale compares)
        "complete": True,
        "updated": time.time(),
    }
    run.write_scores_meta(meta)
    return meta


def load_scores(run: Run) -> pd.DataFrame:
    """A run's scores.csv as a typed DataFrame (empty when the run is not scored)."""
    return scores_frame(run.read_scores())


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser, command: str) -> None:
    add_run_argument(parser, "run folder (made by `train`, with images from `generate`)")
    add_options(parser, ScoreConfig)
    add_progress_flag(parser)


def run(args) -> int:
    config = from_args(ScoreConfig, args)
    run_ = Run(args.run)
    meta = score_run(run_, config, progress=not args.no_progress)
    if meta["pipeline_check"]:
        print(f"{PIPELINE_CHECK_LABEL} ({'; '.join(meta['pipeline_check_reasons'])})")
    print(f"{run_.scores_path}: {meta['n_images']} image(s) ({meta['n_scored_now']} scored now) with "
          f"{meta['clip_label']}")
    table = pd.DataFrame(meta["summaries"]["by_step"])
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
        print(table.to_string(index=False))
    c = meta["baselines"]["reference_ceiling"]
    if c["mean"] is not None:
        print(f"reference ceiling CLIP-I: {c['mean']:.4f} [{c['lo']:.4f}, {c['hi']:.4f}] "
              f"({c['n_images']} reference images)")
    return 0
