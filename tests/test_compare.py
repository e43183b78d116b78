"""core.compare: the comparison's numbers equal the two runs' scores recomputed with pandas; runs that differ
in prompts, seeds, budget or CLIP model are refused; the files round-trip; figures carry the pipeline-check label."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from core.compare import GAIN, PIPELINE_TAG, compare_runs, load_comparison
from core.errors import UserError
from core.runfolder import Run
from tests.fakerun import make_fake_run


def frame(run: Run) -> pd.DataFrame:
    return pd.DataFrame(run.read_scores()).astype({"step": int, "seed": int, "clip_i": float, "clip_t": float})


@pytest.fixture
def pair(fake_runs):
    return Run(fake_runs / "fake-object"), Run(fake_runs / "fake-style")


def test_numbers_match_scores_recomputed_with_pandas(pair):
    a, b = pair
    comp = compare_runs(a, b)
    fa, fb = frame(a), frame(b)
    t = comp.table.set_index(["metric", "checkpoint"])
    for metric in ("clip_i", "clip_t"):
        for label, step in (("before", 0), ("after", 20), ("step 0", 0), ("step 20", 20)):
            m = fa[fa.step == step].merge(fb[fb.step == step], on=["template", "seed"], suffixes=("_a", "_b"))
            row = t.loc[(metric, label)]
            assert row["n"] == len(m) == 4
            assert row["a_mean"] == pytest.approx(m[f"{metric}_a"].mean())
            assert row["b_mean"] == pytest.approx(m[f"{metric}_b"].mean())
            assert row["diff"] == pytest.approx(m[f"{metric}_a"].mean() - m[f"{metric}_b"].mean())
            assert row["diff_lo"] <= row["diff"] <= row["diff_hi"] and row["diff_lo"] < row["diff_hi"]
        # gain: (after - before) per (template, seed), A minus B
        ga = fa.pivot_table(index=["template", "seed"], columns="step", values=metric)
        gb = fb.pivot_table(index=["template", "seed"], columns="step", values=metric)
        row = t.loc[(metric, GAIN)]
        assert row["a_mean"] == pytest.approx((ga[20] - ga[0]).mean())
        assert row["diff"] == pytest.approx((ga[20] - ga[0]).mean() - (gb[20] - gb[0]).mean())
    # the plane: per run and step, the mean over images
    for run, f in ((a, fa), (b, fb)):
        p = comp.plane[comp.plane.run == run.name].set_index("step")
        assert set(p["property"]) == {run.meta["property"]}
        for step, g in f.groupby("step"):
            assert p.loc[step, "clip_i_mean"] == pytest.approx(g.clip_i.mean())
            assert p.loc[step, "clip_t_mean"] == pytest.approx(g.clip_t.mean())
            assert p.loc[step, "clip_i_lo"] <= p.loc[step, "clip_i_mean"] <= p.loc[step, "clip_i_hi"]
    # A - B is not B - A
    rev = compare_runs(b, a).table.set_index(["metric", "checkpoint"])
    assert rev.loc[("clip_i", "after"), "diff"] == pytest.approx(-t.loc[("clip_i", "after"), "diff"])


@pytest.mark.slow
def test_write_and_load_round_trip(pair, tmp_path):
    comp = compare_runs(*pair)
    out = tmp_path / "cmp"
    meta = comp.write(out)
    for name in ("compare.csv", "plane.csv", "compare.json", "plane.html", "plane.png"):
        assert (out / name).stat().st_size > 0, name
    back = load_comparison(out)
    pd.testing.assert_frame_equal(back["table"], comp.table, check_dtype=False)
    pd.testing.assert_frame_equal(back["plane"], comp.plane, check_dtype=False)
    m = back["meta"]
    assert m == json.loads((out / "compare.json").read_text()) and m["png"] == meta["png"]
    assert m["pipeline_check"] is True and m["runs"]["a"]["name"] == "fake-object"
    assert m["runs"]["a"]["property"] == "object" and m["runs"]["b"]["property"] == "style"
    assert m["runs"]["a"]["weights"]["source"] == "random" and m["runs"]["b"]["clip"]["source"] == "random"
    assert m["runs"]["a"]["reference_ceiling_clip_i"] == 0.8
    # kaleido is a requirement; with a Chromium (`make browser` installs one; CI always has it) the plotly figure
    # must be what the PNG shows, without one the labelled fallback drawing
    from core.compare import CHROME_CANDIDATES

    chrome = any(Path(c).exists() for c in CHROME_CANDIDATES)
    assert chrome or not os.environ.get("CI"), "CI runs `make browser`: Chromium must be there"
    assert m["png"]["renderer"] == ("plotly-kaleido" if chrome else "pil-fallback"), m["png"]
    with Image.open(back["png"]) as im:
        assert im.size[0] >= 600
    assert PIPELINE_TAG in (out / "plane.html").read_text()


def test_png_falls_back_to_a_labelled_drawing(pair, tmp_path, monkeypatch):
    import kaleido

    seen = {}

    def no_kaleido(fig, *a, **k):
        seen.update(k)
        raise RuntimeError("Kaleido requires Google Chrome to be installed")

    monkeypatch.setattr(kaleido, "calc_fig_sync", no_kaleido)
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    meta = compare_runs(*pair).write(tmp_path / "cmp")
    assert meta["png"]["renderer"] == "pil-fallback" and "Chrome" in meta["png"]["warning"]
    with Image.open(tmp_path / "cmp" / "plane.png") as im:
        assert im.format == "PNG"
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["png"]["renderer"] == "pil-fallback"
    assert "opts" in seen and "BROWSER_PATH" not in os.environ  # the Chromium path is an argument, not the env


def test_figure_labels_pipeline_check_only_when_random(pair):
    a, b = pair
    fig = compare_runs(a, b).figure()
    assert PIPELINE_TAG in fig.layout.title.text
    assert PIPELINE_TAG in fig.layout.xaxis.title.text and PIPELINE_TAG in fig.layout.yaxis.title.text
    assert all(PIPELINE_TAG in tr.name for tr in fig.data)
    assert len(fig.data) == 2 and list(fig.data[0].x) == list(compare_runs(a, b).plane.query("run == 'fake-object'")
                                                                   .sort_values("step")["clip_t_mean"])
    # real SD weights and real CLIP weights in both runs -> no label
    clip = {"model": "ViT-B-32", "pretrained": "openai", "source": "open_clip-tag", "sha256": "ab" * 32, "seed": None}
    for run in pair:
        run.write_scores_meta({**run.read_scores_meta(), "clip": clip})
    # random Stable Diffusion weights in one run alone are enough for the label
    b.update_meta(weights={"source": "kerascv", "files": {}})
    assert compare_runs(a, b).is_pipeline_check and PIPELINE_TAG in compare_runs(a, b).figure().layout.title.text
    a.update_meta(weights={"source": "kerascv", "files": {}})
    comp = compare_runs(a, b)
    assert not comp.is_pipeline_check
    fig = comp.figure()
    assert PIPELINE_TAG not in fig.layout.title.text and all(PIPELINE_TAG not in tr.name for tr in fig.data)
    # random CLIP alone is enough for the label
    a.write_scores_meta({**a.read_scores_meta(), "clip": {**clip, "source": "random", "pretrained": "random",
                                                          "sha256": None, "seed": 0}})
    b.write_scores_meta({**b.read_scores_meta(), "clip": {**clip, "source": "random", "pretrained": "random",
                                                          "sha256": None, "seed": 0}})
    assert compare_runs(a, b).is_pipeline_check


@pytest.mark.parametrize("change, words", [
    (dict(prompts=["a photo of {}", "a horror movie poster with {}"]), ["prompts", "a photo of {}"]),
    (dict(seeds=(0, 2)), ["seeds", "2"]),
    (dict(steps=30), ["budget", "20 steps", "30 steps"]),
])
def test_refuses_runs_that_differ(tmp_path, change, words):
    runs = tmp_path / "runs"
    a = make_fake_run(runs, "a", "object")
    b = make_fake_run(runs, "b", "style", **change)
    with pytest.raises(UserError) as e:
        compare_runs(a, b)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_refuses_different_clip_models_and_unscored_runs(pair, tmp_path):
    a, b = pair
    b.write_scores_meta({**b.read_scores_meta(), "clip": {"model": "ViT-B-32", "pretrained": "random",
                                                          "source": "random", "seed": 1}})
    with pytest.raises(UserError, match="CLIP models differ"):
        compare_runs(a, b)
    c = make_fake_run(tmp_path / "runs", "unscored", with_scores=False)
    with pytest.raises(UserError, match="not scored yet"):
        compare_runs(a, c)
    with pytest.raises(UserError, match="same run"):
        compare_runs(a, Run(a.path))


@pytest.mark.slow
def test_cli_and_load(fake_runs, tmp_path, capsys):
    from core.__main__ import main

    out = tmp_path / "out"
    assert main(["compare", str(fake_runs / "fake-object"), str(fake_runs / "fake-style"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PIPELINE CHECK" in printed and "gain (after - before)" in printed
    assert len(load_comparison(out)["table"]) == 10
    assert main(["compare", str(fake_runs / "fake-object"), str(tmp_path / "nope"), "--out", str(out)]) == 2
    with pytest.raises(UserError, match="no compare.json"):
        load_comparison(tmp_path / "empty")

