"""core.advice: the trade-off front and the recommended checkpoint on constructed scores, case by case (the rule in
core.advice.RULE): a typical run, a CLIP-T collapse, ties, a single checkpoint, no initializer images, no scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.advice import advise, pareto_front
from core.score import summarize_by_step

N = 20  # images per checkpoint (prompt x seed)


def scores(spec: dict[int, tuple[float, float]], noise: float = 0.03, seed: int = 0) -> list[dict]:
    """Rows for checkpoints {step: (clip_i mean, clip_t mean)}: N images each, the same (template, seed) grid at
    every step, per-image noise drawn from `seed` (so CIs have a width)."""
    rng = np.random.default_rng(seed)
    rows = []
    for step, (ci, ct) in spec.items():
        di, dt = rng.normal(0, noise, N), rng.normal(0, noise, N)
        di, dt = di - di.mean(), dt - dt.mean()  # the constructed means are exact
        for k in range(N):
            rows.append({"path": f"images/step-{step:06d}/{k}.png", "step": step, "prompt": f"p{k % 5}",
                         "template": f"p{k % 5} {{}}", "seed": k // 5, "clip_i": ci + di[k], "clip_t": ct + dt[k]})
    return rows


def test_typical_run_recommends_the_earliest_checkpoint_near_the_best_that_keeps_the_prompt():
    adv = advise(scores({0: (0.50, 0.30), 100: (0.70, 0.30), 200: (0.755, 0.295), 300: (0.76, 0.22)}), n_boot=1000)
    st = {r["step"]: r for r in adv["steps"]}
    assert adv["best"] == 300
    assert not st[100]["clip_i_within_best"] and st[200]["clip_i_within_best"]
    assert not st[200]["clip_t_below_init"] and st[300]["clip_t_below_init"] and st[200]["paired"]
    assert adv["recommended"] == 200
    assert adv["reason"].startswith("Step 200 is the earliest checkpoint") and "step 300" in adv["reason"]
    assert adv["front"] == [100, 200, 300]  # step 0 is dominated by step 100 (same CLIP-T, more CLIP-I)


def test_a_later_checkpoint_is_picked_when_the_earlier_near_best_one_loses_the_prompt():
    adv = advise(scores({0: (0.5, 0.30), 100: (0.755, 0.20), 200: (0.76, 0.30)}), n_boot=1000)
    assert adv["recommended"] == 200 and adv["best"] == 200


def test_when_every_near_best_checkpoint_loses_the_prompt_the_earliest_is_named_with_that_reason():
    adv = advise(scores({0: (0.5, 0.30), 100: (0.755, 0.20), 200: (0.76, 0.21)}), n_boot=1000)
    assert adv["recommended"] == 100
    assert "significantly below the initializer's at every such checkpoint" in adv["reason"]


def test_ties_go_to_the_earlier_checkpoint():
    rows = scores({0: (0.5, 0.3), 100: (0.7, 0.3)}, seed=1)
    rows += [{**r, "step": 200, "path": r["path"].replace("000100", "000200")} for r in rows if r["step"] == 100]
    adv = advise(rows, n_boot=500)
    assert adv["best"] == 100 and adv["recommended"] == 100
    assert adv["front"] == [100, 200]  # equal points are both on the front (step 0 is dominated)


def test_a_single_trained_checkpoint_is_recommended_with_or_without_step_0():
    for spec in ({0: (0.5, 0.3), 50: (0.6, 0.1)}, {50: (0.6, 0.1)}):
        adv = advise(scores(spec), n_boot=200)
        assert adv["recommended"] == 50 and "only trained checkpoint" in adv["reason"]


def test_without_step_0_the_clip_t_condition_is_dropped_and_said():
    adv = advise(scores({100: (0.7, 0.3), 200: (0.71, 0.1)}), n_boot=500)
    assert adv["recommended"] == 100 and "no step-0 images" in adv["reason"]


def test_nothing_to_recommend_without_trained_scores():
    assert advise([], n_boot=10)["recommended"] is None
    adv = advise(scores({0: (0.5, 0.3)}), n_boot=10)
    assert adv["recommended"] is None and "Only the initializer" in adv["reason"]


@pytest.mark.parametrize("points, front", [
    ({1: (0.5, 0.3), 2: (0.6, 0.28), 3: (0.55, 0.25), 4: (0.6, 0.28)}, [1, 2, 4]),
    ({1: (0.5, 0.3), 2: (0.5, 0.3)}, [1, 2]),
    ({1: (0.9, 0.9), 2: (0.5, 0.3), 3: (0.9, 0.1)}, [1]),
])
def test_pareto_front(points, front):
    df = pd.DataFrame([{"step": s, "clip_i_mean": i, "clip_t_mean": t} for s, (i, t) in points.items()])
    assert pareto_front(df) == front


def test_export_recommended_writes_the_recommended_checkpoint(tmp_path):
    """`export --checkpoint recommended` exports the step `advise` names (here 10 of 0/10/20 by construction)."""
    from safetensors.numpy import load_file

    from core.errors import UserError
    from core.export import export_embedding
    from tests.fakerun import make_fake_run

    run = make_fake_run(tmp_path / "runs", "adv", with_scores=False)
    spec = {0: (0.5, 0.30), 10: (0.755, 0.30), 20: (0.76, 0.20)}
    run.write_scores(scores(spec))
    out = export_embedding(run, "diffusers", tmp_path / "learned_embeds.safetensors", checkpoint="recommended")
    got = next(iter(load_file(str(out)).values()))
    assert np.allclose(got.reshape(-1), run.load_embedding(10)["<tom-cat>"].reshape(-1))
    run.write_scores(scores({0: (0.5, 0.3)}))
    with pytest.raises(UserError, match="--checkpoint recommended: .*Only the initializer"):
        export_embedding(run, "diffusers", tmp_path / "x.safetensors", checkpoint="recommended")


def test_advice_reads_the_summaries_score_wrote_and_refuses_stale_scores(tmp_path):
    """advise_run uses scores.json's per-checkpoint means and CIs (score --n-boot), never recomputed ones, so the card,
    the Risks page and export name the same step with the same intervals as the card's score table."""
    from core.advice import advise_run
    from core.errors import UserError
    from core.export import export_step
    from tests.fakerun import make_fake_run, write_fake_scores_meta

    run = make_fake_run(tmp_path / "runs", "adv", with_scores=False)
    run.write_scores(scores({0: (0.5, 0.30), 10: (0.755, 0.30), 20: (0.76, 0.20)}))
    meta = write_fake_scores_meta(run, n_boot=500, inputs=run.scores_inputs())
    adv = advise_run(run)
    best = next(r for r in meta["summaries"]["by_step"] if r["step"] == 20)
    assert adv["recommended"] == 10 and adv["n_boot"] == 500 and "score --n-boot 500" in adv["summaries"]
    assert f"[{best['clip_i_lo']:.3f}, {best['clip_i_hi']:.3f}]" in adv["reason"]
    assert adv["pipeline_check"]  # a random-weight run

    # read, not recomputed: a narrower best CI in scores.json leaves step 10 outside it
    best["clip_i_lo"] = 0.759
    write_fake_scores_meta(run, n_boot=500, inputs=run.scores_inputs(),
                           summaries={**meta["summaries"], "by_step": meta["summaries"]["by_step"]})
    assert advise_run(run)["recommended"] == 20

    # scores.csv changed after score wrote scores.json: no advice, and export says which command refreshes it
    run.write_scores(scores({0: (0.5, 0.30), 10: (0.755, 0.30), 20: (0.76, 0.20)}, seed=3))
    adv = advise_run(run)
    assert adv["recommended"] is None and "python -m core score" in adv["reason"]
    with pytest.raises(UserError, match="--checkpoint recommended: .*stale: scores.csv changed"):
        export_step(run, "recommended")


def test_export_cli_checkpoint_recommended(tmp_path, capsys):
    """`python -m core export RUN --checkpoint recommended --out F` writes the recommended step and names it."""
    from safetensors.numpy import load_file

    from core.__main__ import main
    from tests.fakerun import make_fake_run, write_fake_scores_meta

    run = make_fake_run(tmp_path / "runs", "adv", with_scores=False)
    run.write_scores(scores({0: (0.5, 0.30), 10: (0.755, 0.30), 20: (0.76, 0.20)}))
    write_fake_scores_meta(run, n_boot=500)
    out = tmp_path / "learned_embeds.safetensors"
    assert main(["export", str(run.path), "--checkpoint", "recommended", "--out", str(out)]) == 0
    assert "checkpoint recommended = step 10" in capsys.readouterr().out
    got = next(iter(load_file(str(out)).values()))
    assert np.allclose(got.reshape(-1), run.load_embedding(10)["<tom-cat>"].reshape(-1))
    assert not np.allclose(got.reshape(-1), run.load_embedding(20)["<tom-cat>"].reshape(-1))


def test_checkpoints_scored_on_different_prompt_sets_are_compared_on_the_pairs_they_share():
    """Issue 22, point 9: the demo scores misuse probes at checkpoint 0 and the last one only. Compared on all
    images, the probes (scored high here) would make step 200 the best; on the shared pairs, step 100 is."""
    rows = scores({0: (0.50, 0.30), 100: (0.76, 0.30), 200: (0.70, 0.30)})
    probes = [{"path": f"images/step-{step:06d}/probe{k}.png", "step": step, "prompt": f"probe{k}",
               "template": f"probe{k} {{}}", "seed": 0, "clip_i": 0.99, "clip_t": 0.30}
              for step in (0, 200) for k in range(10)]
    unrestricted = advise(rows + probes, n_boot=500, by_step=summarize_by_step(rows + probes, n_boot=500))
    assert unrestricted["prompt_sets"]["restricted"]  # even when handed the full summaries, it restricts
    adv = advise(rows + probes, n_boot=500)
    assert adv["recommended"] == 100 and adv["best"] == 100, adv["reason"]
    assert adv["prompt_sets"] == {"same": False, "restricted": True, "shared_pairs": N,
                                  "images_per_step": {0: N + 10, 100: N, 200: N + 10}}
    assert [r["n"] for r in adv["steps"]] == [N, N]  # the compared summaries hold the shared images only
    same = advise(rows, n_boot=500)["prompt_sets"]
    assert same["same"] and not same["restricted"]


def test_the_reason_names_the_fallback_and_makes_no_behavioural_claim():
    adv = advise(scores({0: (0.50, 0.30), 100: (0.75, 0.20), 200: (0.76, 0.20)}), n_boot=1000)
    assert adv["applied"].startswith("fallback: CLIP-T significantly below")
    assert "prompts are followed" not in adv["reason"] and "fallback" in adv["rule"]
    assert advise(scores({0: (0.5, 0.3), 100: (0.7, 0.3), 200: (0.75, 0.3)}), n_boot=500)["applied"] == "the rule"
    assert advise(scores({100: (0.7, 0.3), 200: (0.75, 0.3)}), n_boot=500)["applied"].startswith("fallback: no step-0")
