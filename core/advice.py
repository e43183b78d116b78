"""Checkpoint advice: the CLIP-I / CLIP-T trade-off front of a run's checkpoints and the one to ship, by a stated rule.

Input: a run's score rows (scores.csv) and, for a run, the per-checkpoint summaries `score` wrote to scores.json
(means and 95% CIs with its `--n-boot`): `advise_run` reads those, never recomputes them, so the card, the Risks
page and `export --checkpoint recommended` name the same step with the same intervals as the card's score table.
Only the paired CLIP-T test against step 0 (not in scores.json) is computed here, from scores.csv with score's
n_boot and a fixed seed (core.stats). Torch-free: the dashboard, the model card and `export` use it.

RULE: among trained checkpoints (step > 0), recommend the EARLIEST one whose mean CLIP-I is within the 95% CI of
the best checkpoint's (mean >= the best's lower bound) and whose CLIP-T is not significantly below the
initializer's (the paired bootstrap 95% CI of CLIP-T(step) - CLIP-T(step 0), over images of the same prompt and
seed, reaches 0). If CLIP-T is significantly below the initializer at every such checkpoint, the earliest one of
them is recommended and the reason says so. Without checkpoint-0 images the CLIP-T condition cannot be tested and
is dropped (said so). Ties in CLIP-I go to the earlier checkpoint. `applied` names the branch that chose the step,
so no reader is told "the rule" when a fallback chose it.

Checkpoints are compared on the same images: when the checkpoints were scored on different prompt x seed sets (the
demo adds misuse probes at checkpoint 0 and the final one only), the comparison is restricted to the (template,
seed) pairs every scored checkpoint shares, and those summaries are recomputed from scores.csv with score's
n_boot (`prompt_sets` says so); with fewer than two shared pairs the mismatch is stated instead (issue 22, 9).
The reasons describe measurements, never behaviour: under random weights they mean nothing, and the card says so.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd

from core.stats import DEFAULT_N_BOOT, bootstrap_diff_ci

RULE = ("the earliest trained checkpoint whose mean CLIP-I is within the 95% CI of the best checkpoint's and whose "
        "CLIP-T is not significantly below the initializer's (step 0; paired bootstrap 95% CI of the difference "
        "reaches 0); fallbacks: if CLIP-T is significantly below at every such checkpoint, the earliest of them; "
        "without step-0 images, the CLIP-T condition is dropped; with one trained checkpoint, that one. Checkpoints "
        "are compared on the prompt x seed pairs they all share")
APPLIED_RULE = "the rule"
APPLIED_CLIP_T_FALLBACK = "fallback: CLIP-T significantly below the initializer's at every near-best checkpoint"
APPLIED_NO_STEP0 = "fallback: no step-0 images, so the CLIP-T condition was dropped"
APPLIED_ONLY_ONE = "only one trained checkpoint scored"
MIN_SHARED_PAIRS = 2  # fewer shared (template, seed) pairs than this: no restricted comparison, the mismatch is stated


def pareto_front(by_step: pd.DataFrame) -> list[int]:
    """Steps not dominated in (CLIP-I mean, CLIP-T mean): no other checkpoint is at least as good in both and
    better in one. Equal points are all on the front."""
    pts = by_step[["step", "clip_i_mean", "clip_t_mean"]].to_numpy()
    front = []
    for s, ci, ct in pts:
        dominated = any((ci2 >= ci and ct2 >= ct) and (ci2 > ci or ct2 > ct) for _, ci2, ct2 in pts)
        if not dominated:
            front.append(int(s))
    return sorted(front)


def _clip_t_vs_initializer(df: pd.DataFrame, step: int, n_boot: int) -> tuple[float, float, float, int, bool]:
    """(diff, lo, hi, n, paired): CLIP-T at `step` minus at step 0, paired on (template, seed) where both exist."""
    a = df[df["step"] == step].set_index(["template", "seed"])["clip_t"]
    b = df[df["step"] == 0].set_index(["template", "seed"])["clip_t"]
    a = a[~a.index.duplicated(keep="last")]
    b = b[~b.index.duplicated(keep="last")]
    shared = a.index.intersection(b.index)
    if len(shared):
        d, lo, hi = bootstrap_diff_ci(a.loc[shared].to_numpy(), b.loc[shared].to_numpy(), n_boot=n_boot, paired=True)
        return d, lo, hi, len(shared), True
    d, lo, hi = bootstrap_diff_ci(a.to_numpy(), b.to_numpy(), n_boot=n_boot)
    return d, lo, hi, len(a) + len(b), False


def advise(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, n_boot: int = DEFAULT_N_BOOT,
           by_step: pd.DataFrame | None = None) -> dict[str, Any]:
    """The front, the best CLIP-I checkpoint, every checkpoint's test results and the recommended step with a
    one-sentence reason. `recommended` is None when no trained checkpoint is scored. `by_step`: the per-checkpoint
    summaries (step, n, clip_i_mean/lo/hi, clip_t_mean) as `score` wrote them; computed from `rows` when None."""
    from core.score import scores_frame, summarize_by_step

    df = scores_frame(rows)
    out: dict[str, Any] = {"rule": RULE, "front": [], "best": None, "recommended": None, "steps": [], "reason": "",
                           "n_boot": n_boot, "applied": None, "prompt_sets": None}
    if df.empty:
        out["reason"] = "The run has no scores; score it first (python -m core score)."
        return out
    df, out["prompt_sets"] = shared_prompt_sets(df)
    if by_step is None or by_step.empty or out["prompt_sets"]["restricted"]:
        by_step = summarize_by_step(df, n_boot=n_boot)
    by_step = by_step.sort_values("step").reset_index(drop=True)
    out["by_step"] = by_step.to_dict("records")  # the summaries the advice used (the Risks page draws these)
    out["front"] = pareto_front(by_step)
    trained = by_step[by_step["step"] > 0].sort_values("step")
    has_init = bool((by_step["step"] == 0).any())
    if trained.empty:
        out["reason"] = "Only the initializer (step 0) is scored; generate and score trained checkpoints."
        return out
    best = trained.loc[trained["clip_i_mean"].idxmax()]  # idxmax on step-sorted rows: the earliest of equal maxima
    best_step, best_lo = int(best["step"]), float(best["clip_i_lo"])
    out["best"] = best_step
    steps = []
    for _, r in trained.iterrows():
        s = int(r["step"])
        row = {"step": s, "n": int(r["n"]), "clip_i_mean": float(r["clip_i_mean"]),
               "clip_t_mean": float(r["clip_t_mean"]), "on_front": s in out["front"],
               "clip_i_within_best": bool(r["clip_i_mean"] >= best_lo)}
        if has_init:
            d, lo, hi, n, paired = _clip_t_vs_initializer(df, s, n_boot)
            row.update(clip_t_vs_init=d, clip_t_vs_init_lo=lo, clip_t_vs_init_hi=hi, clip_t_vs_init_n=n,
                       paired=paired, clip_t_below_init=bool(hi < 0))
        else:
            row.update(clip_t_vs_init=None, clip_t_vs_init_lo=None, clip_t_vs_init_hi=None, clip_t_vs_init_n=0,
                       paired=False, clip_t_below_init=False)
        steps.append(row)
    out["steps"] = steps
    near_best = [r for r in steps if r["clip_i_within_best"]]
    keeps_text = [r for r in near_best if not r["clip_t_below_init"]]
    ci_txt = f"{best['clip_i_mean']:.3f} [{best_lo:.3f}, {best['clip_i_hi']:.3f}]"
    if len(trained) == 1:
        out["recommended"], out["applied"] = steps[0]["step"], APPLIED_ONLY_ONE
        out["reason"] = f"Step {steps[0]['step']} is the only trained checkpoint scored, so there is no choice to make."
    elif keeps_text:
        pick = keeps_text[0]
        out["recommended"], out["applied"] = pick["step"], APPLIED_RULE if has_init else APPLIED_NO_STEP0
        text_part = ("its CLIP-T is not significantly below the initializer's "
                     f"({pick['clip_t_vs_init']:+.3f} [{pick['clip_t_vs_init_lo']:+.3f}, "
                     f"{pick['clip_t_vs_init_hi']:+.3f}])" if has_init else
                     "CLIP-T could not be compared with the initializer (no step-0 images)")
        out["reason"] = (f"Step {pick['step']} is the earliest checkpoint whose CLIP-I ({pick['clip_i_mean']:.3f}) is "
                         f"within the 95% CI of the best (step {best_step}: {ci_txt}) and {text_part}.")
    else:
        pick = near_best[0]
        out["recommended"], out["applied"] = pick["step"], APPLIED_CLIP_T_FALLBACK
        out["reason"] = (f"Step {pick['step']} is the earliest checkpoint whose CLIP-I ({pick['clip_i_mean']:.3f}) is "
                         f"within the 95% CI of the best (step {best_step}: {ci_txt}); CLIP-T is significantly below "
                         "the initializer's at every such checkpoint, so the fallback takes the earliest of them.")
    return out


def shared_prompt_sets(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(rows to compare, what was done): the rows restricted to the (template, seed) pairs every scored checkpoint
    shares when the checkpoints were scored on different sets and at least MIN_SHARED_PAIRS are shared; else all."""
    pairs = {int(step): set(zip(group["template"], group["seed"])) for step, group in df.groupby("step")}
    shared = set.intersection(*pairs.values()) if pairs else set()
    same = len({frozenset(found) for found in pairs.values()}) <= 1
    restricted = not same and len(shared) >= MIN_SHARED_PAIRS
    info = {"same": same, "restricted": restricted, "shared_pairs": len(shared),
            "images_per_step": {step: int((df["step"] == step).sum()) for step in sorted(pairs)}}
    if not restricted:
        return df, info
    keep = [(template, seed) in shared for template, seed in zip(df["template"], df["seed"])]
    return df[keep].reset_index(drop=True), info


def advise_run(run, n_boot: int | None = None) -> dict[str, Any]:
    """The advice `score` drew from its summaries and recorded in scores.json (read, not recomputed); for a
    scores.json from before that (or with `n_boot` overriding score's `--n-boot`), `advise` on the per-checkpoint
    summaries `score` wrote. Stale or unfinished scores give no recommendation, with the command that refreshes
    them. `summaries` says where the intervals came from."""
    record = run.scores_record()
    stale = run.scores_stale(record) if record is not None else None
    n = n_boot or (record.n_boot if record is not None and record.n_boot else DEFAULT_N_BOOT)
    by_step = record.by_step_frame() if record is not None and record.by_step else None
    if stale:
        out = {"rule": RULE, "front": [], "best": None, "recommended": None, "steps": [], "by_step": [], "n_boot": n,
               "reason": f"No advice from {run.scores_meta_path.name}: {stale}."}
    elif record is not None and record.advice is not None and n_boot is None:
        out = {**record.advice, "by_step": sorted((dict(r) for r in record.by_step), key=lambda r: r["step"])}
    else:  # scores.json written before score recorded its advice (or another n_boot asked for)
        out = advise(run.read_scores(), n_boot=n, by_step=by_step)
    boots = f"score --n-boot {record.n_boot}" if record is not None and record.n_boot else "resamples not recorded"
    out["summaries"] = (f"{run.scores_meta_path.name} ({boots})" if by_step is not None else
                        f"computed from {run.scores_path.name} with {n} resamples ({run.scores_meta_path.name} "
                        "holds no summaries)")
    sets = out.get("prompt_sets") or {}
    if sets.get("restricted"):
        out["summaries"] = (f"recomputed from {run.scores_path.name} with {n} resamples on the "
                            f"{sets['shared_pairs']} prompt x seed pairs every checkpoint shares (the checkpoints "
                            "were scored on different prompt sets, so the score table's means are not comparable)")
    out["pipeline_check"] = bool(run.record.is_pipeline_check or (record is not None and record.is_pipeline_check))
    return out


def recommended_step(run) -> int:
    """The recommended checkpoint of a run, or UserError saying why there is none (used by `export`)."""
    from core.errors import UserError

    adv = advise_run(run)
    if adv["recommended"] is None:
        raise UserError(f"--checkpoint recommended: {run.path}: {adv['reason']}")
    step = int(adv["recommended"])
    if step not in run.embedding_steps():
        raise UserError(f"--checkpoint recommended: step {step} has scores but no embedding file in "
                        f"{run.embeddings_dir}; restore it or pass --checkpoint with another step")
    return step

