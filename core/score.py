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

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from core.clip_score import describe, encode_references
from core.config import StrictConfig, check, from_args, option, run_stage_arguments
from core.errors import UserError
from core.imagejob import ImageJob
from core.images import load_image, run_image_rows, validate_images
from core.prompts import IDENTITY_LABELS_FILE, LEAKAGE_FILE, strip_token
from core.protocol import PROTOCOLS, check_protocol
from core.runfolder import (
    PIPELINE_CHECK_LABEL,
    SCORES_SCHEMA,  # noqa: F401 - importable here as before (tests/fakerun.py)
    Run,
    ScoresRecord,
    pipeline_check_reasons,
    sha256_file,
)
from core.stats import DEFAULT_N_BOOT, bootstrap_ci

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
    token_clip: str = option("", "MODEL:TAG of CLIP ViT-L/14 for token similarity (the learned token through the "
                                 "run's own text encoder and this model's text projection), e.g. ViT-L-14:openai, "
                                 "a local file, or ViT-L-14:random; '' skips it", metavar="MODEL:TAG")
    subject: str = option("", "what the token stands for, e.g. 'Tom, the cat from Tom and Jerry' (default: card.yaml "
                              "`subject`); needed for zero-shot identity")
    identity_labels: Path = option(IDENTITY_LABELS_FILE, "distractor labels for zero-shot identity, one a line",
                                   metavar="FILE")
    leakage: Path = option(LEAKAGE_FILE, "two-subject prompts under '# subject: SECOND' lines; images of these "
                                         "templates are scored for leakage", metavar="FILE")
    protocol: str = option("", "also give CustomConcept101's numbers (CLIP ViT-B/32 CLIP-T with w=2.5, mean pairwise "
                               "CLIP-I, DINO with --dino)", choices=PROTOCOLS)
    dino: str | None = option(None, "DINO ViT-S/16 weights file (dino_deitsmall16_pretrain.pth) for --protocol",
                              metavar="FILE")

    def __post_init__(self) -> None:
        self.references = Path(self.references)
        self.validate()  # also when built directly (tests, the demo), not only through from_dict

    def validate(self) -> None:
        check(int(self.batch_size) >= 1, "batch_size", self.batch_size, "must be at least 1")
        check(int(self.n_boot) >= 1, "n_boot", self.n_boot, "must be at least 1")
        check(self.device in ("auto", "cpu", "cuda"), "device", self.device, "use auto, cpu or cuda")
        self.identity_labels, self.leakage = Path(self.identity_labels), Path(self.leakage)
        from core.clip_score import parse_clip_spec

        check_protocol(self.protocol, parse_clip_spec(self.clip)[0], self.dino)
        if self.token_clip:
            parse_clip_spec(self.token_clip)


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
def score_run(run: Run, config: ScoreConfig, scorer=None, progress: bool = True, log=print, components=None,
              load_token_clip=None) -> dict[str, Any]:
    """Score every image of `run` not scored yet with the same CLIP model and references; write scores.csv and
    scores.json (with the checkpoint advice drawn from its summaries, and issue 21's measures: docs/identity.md);
    return the scores.json dict. `scorer` (a core.clip_score.ClipScorer) is built from `config.clip` when not given;
    `components` (the run's networks, for token similarity) and `load_token_clip` (a `load_clip` stand-in) let
    callers share what they built. Runs as `run.stage("score")`: the writer lock held, an unexpected failure
    logged in the run."""
    from core import identity_stage

    with run.stage("score", hint=f"scores so far are kept; rerun `python -m core score {run.path}`") as record:
        # 1. check the inputs (before CLIP loads: bad input fails fast)
        images = run_image_rows(run)
        ref_paths = validate_images(config.references)
        refs = [{"file": p.name, "sha256": sha256_file(p)} for p in ref_paths]
        # 2. the scorer, the zero-shot texts, and what an earlier scoring with the same inputs left
        scorer = scorer if scorer is not None else _load_scorer(config)
        prov = dict(scorer.provenance)
        subject = identity_stage.resolve_subject(run, config.subject)[0]
        zs = identity_stage.zero_shot(scorer, record.token.initializer, subject, config.identity_labels,
                                      config.leakage)
        same = _same_inputs(run, prov, refs, zs.settings(), len(images), log)
        job = ImageJob.plan(run, images, run.read_scores(), same_inputs=same,
                            done_with=f"scored with {describe(prov)}", doing="scoring", log=log)
        # 3. score the new images in batches (scores.json first, marked incomplete)
        base = _header(run, record, config, scorer, prov, refs, zs.settings())
        ref_images = [load_image(p) for p in ref_paths]
        ref_emb = encode_references(scorer, ref_images, batch_size=config.batch_size)
        job.run_batches(_clip_scorer(scorer, ref_emb, record.token.placeholder, prov, job.todo, zs), run.write_scores,
                        lambda: run.write_record(base), batch_size=config.batch_size, desc="CLIP scoring",
                        progress=progress)
        # 4. summaries, baselines and the checkpoint advice
        final = _summaries(run, base, ref_emb, config.n_boot, n_now=len(job.todo), n_kept=len(job.kept))
        # 5. issue 21: token similarity per checkpoint, zero-shot identity, leakage, the memorisation screen, the
        #    protocol numbers and the provenance of each (core.identity_stage); scores.json, complete
        final = dataclasses.replace(final, **identity_stage.measures(
            run, record, config, scorer, run.read_scores(), images, ref_images, zs, components, load_token_clip))
        run.write_record(final)
        return final.to_json()


def _load_scorer(config: ScoreConfig):
    from core.clip_score import load_clip

    return load_clip(config.clip, seed=config.clip_seed, device=config.device)


def _same_inputs(run: Run, prov: Mapping[str, Any], refs: list[dict[str, str]], zero_shot: Mapping[str, Any],
                 n_images: int, log) -> bool:
    """Whether scores.csv's rows were made with this CLIP model, these references and these zero-shot settings
    (identity labels, subject, leakage prompts); else all are rescored."""
    from core.clip_score import provenance_key

    prev = run.scores_record()
    if not run.read_scores():
        return True
    prev_refs = prev.references.get("files") if prev is not None else None
    if prev is None or provenance_key(prev.clip) != provenance_key(prov):
        log(f"CLIP model changed (was {describe(prev.clip if prev else None)}, now {describe(prov)}): "
            f"rescoring all {n_images} images")
    elif prev_refs is None:
        log(f"no record of the previous scoring's reference images: rescoring all {n_images} images")
    elif prev_refs != refs:
        log(f"reference images changed since the last scoring: rescoring all {n_images} images")
    elif prev.zero_shot_settings != zero_shot:
        log(f"identity labels, subject or leakage prompts changed: rescoring all {n_images} images")
    else:
        return True
    return False


def _header(run: Run, record, config: ScoreConfig, scorer, prov: Mapping[str, Any], refs: list[dict[str, str]],
            zero_shot: Mapping[str, Any]) -> ScoresRecord:
    """scores.json before the first image: the CLIP model and its provenance, the config, what is scored, and the
    settings the per-image zero-shot columns are computed with."""
    reasons = pipeline_check_reasons(record, prov)
    return ScoresRecord(
        clip=prov, clip_label=describe(prov),
        config={**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                "clip": f"{prov['model']}:{prov['pretrained']}", "device": scorer.device},
        references={"dir": str(Path(config.references).resolve()), "files": refs},
        run={"name": run.name, "weights": record.weights.as_dict(), "token": asdict(record.token)},
        is_pipeline_check=bool(reasons), pipeline_check_reasons=tuple(reasons),
        label=PIPELINE_CHECK_LABEL if reasons else "", complete=False, updated=time.time(),
        identity_labels={"settings": dict(zero_shot)})


def _clip_scorer(scorer, ref_emb: np.ndarray, token: str, prov: Mapping[str, Any], todo: list[dict[str, str]],
                 zs):
    """`process` for the image job: CLIP-I (mean cosine to the references), CLIP-T and the zero-shot columns
    (`zs.per_image`: top identity label, leakage survival) of each picture (the texts of every image to do are
    encoded once, at the first batch)."""
    from core.clip_score import weights_label

    label, text_emb = weights_label(prov), {}

    def process(batch: list[dict[str, str]], pictures: list) -> list[dict[str, Any]]:
        if not text_emb:
            uniq = sorted({clip_text(r, token) for r in todo})
            text_emb.update(zip(uniq, scorer.encode_texts(uniq)))
        texts = [clip_text(r, token) for r in batch]
        emb = scorer.encode_images(pictures, batch_size=len(pictures))
        clip_i = (emb @ ref_emb.T).mean(axis=1)  # mean cosine to each reference image
        return [{"path": r["path"], "step": int(r["step"]), "prompt": r.get("prompt", ""),
                 "template": r.get("template", ""), "seed": int(r["seed"]), "clip_i": float(ci),
                 "clip_t": float(e @ text_emb[text]), "clip_model": prov["model"], "clip_weights": label,
                 **zs.per_image(r.get("template", ""), e)}
                for r, e, ci, text in zip(batch, emb, clip_i, texts)]

    return process


def _summaries(run: Run, base: ScoresRecord, ref_emb: np.ndarray, n_boot: int, *, n_now: int,
               n_kept: int) -> ScoresRecord:
    """scores.json complete: per-checkpoint and per-prompt summaries with bootstrap CIs, the baselines, the
    checkpoint advice drawn from them, and the sha256 of the files they were computed from."""
    rows = run.read_scores()  # as written (strings), the same rows every reader of scores.csv sees
    by_step = summarize_by_step(rows, n_boot=n_boot)
    by_prompt = summarize_by_prompt(rows, n_boot=n_boot)
    init = by_step[by_step["step"] == 0]
    initializer = ({"available": True, **_jsonable(init)[0],
                    "note": "images at checkpoint 0 use the initializer word's embedding (before training)"}
                   if len(init) else {"available": False,
                                      "note": "no images at checkpoint 0; generate at step 0 for this baseline"})
    ceiling = reference_ceiling(ref_emb, n_boot=n_boot)
    return dataclasses.replace(
        base, reference_ceiling_clip_i=ceiling["mean"],  # the number the dashboard and the card show
        reference_ceiling=ceiling, initializer=initializer,
        by_step=tuple(_jsonable(by_step)), by_prompt=tuple(_jsonable(by_prompt)),
        n_images=len(rows), n_scored_now=n_now, n_kept=n_kept,
        inputs=run.scores_inputs(),  # what the summaries were computed from (Run.scores_stale compares)
        advice=_advice(rows, by_step, n_boot),  # the checkpoint advice, drawn once here from these summaries
        complete=True, updated=time.time())


def _advice(rows, by_step: pd.DataFrame, n_boot: int) -> dict[str, Any]:
    """core.advice.advise on the summaries just computed: persisted in scores.json, so the dashboard, the card and
    `export --checkpoint recommended` read one recommendation instead of recomputing it."""
    from core.advice import advise

    advice = advise(rows, n_boot=n_boot, by_step=by_step)
    advice.pop("by_step", None)  # the summaries themselves are in scores.json once (advise_run puts them back)
    return json.loads(json.dumps(advice, default=_json_scalar))


def _json_scalar(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_scores(run: Run) -> pd.DataFrame:
    """A run's scores.csv as a typed DataFrame (empty when the run is not scored)."""
    return scores_frame(run.read_scores())


# ------------------------------------------------------------------------------------------------------ CLI
add_arguments = run_stage_arguments(ScoreConfig)


def run(args) -> int:
    run_ = Run(args.run)
    score_run(run_, from_args(ScoreConfig, args), progress=not args.no_progress)
    rec = run_.scores_record()
    lines = [rec.pipeline_line(), f"{run_.scores_path}: {rec.n_images} image(s) ({rec.n_scored_now} scored now) with "
                                  f"{rec.clip_label}"]
    print("\n".join(line for line in lines if line))
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
        print(rec.by_step_frame().to_string(index=False))
    c = rec.reference_ceiling
    if c["mean"] is not None:
        print(f"reference ceiling CLIP-I: {c['mean']:.4f} [{c['lo']:.4f}, {c['hi']:.4f}] "
              f"({c['n_images']} reference images)")
    from core.identity_stage import summary_lines

    print("\n".join(summary_lines(rec)))
    return 0
