"""The Sweeps dashboard page under AppTest: one table of a sweep's trials with the CLIs that scores.json holds,
the CLIP-I/CLIP-T plane, parameter effects, links to each trial's pages, and the view kept in the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.runfolder import PIPELINE_CHECK_LABEL, Run
from core.sweeprecord import SweepRecord
from tests.fakerun import make_fake_run

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
PARAMS = [{"steps": 10, "lr": 0.002}, {"steps": 10, "lr": 0.005}, {"steps": 20, "lr": 0.002},
          {"steps": 20, "lr": 0.005}]


def make_sweep(runs: Path) -> list[str]:
    """A sweep record over fake runs: three scored trials (fabricated scores, summaries written the way `score`
    writes them) and one never started."""
    from core.score import summarize_by_prompt, summarize_by_step

    names = [f"sw-steps-{p['steps']}_lr-{p['lr']}-abc123" for p in PARAMS]
    for name, p in zip(names[:3], PARAMS):
        run = make_fake_run(runs, name, "object", steps=p["steps"])
        meta = run.read_scores_meta()
        meta["summaries"] = {"by_step": summarize_by_step(run.read_scores(), n_boot=50).to_dict(orient="records"),
                             "by_prompt": summarize_by_prompt(run.read_scores(), n_boot=50).to_dict(orient="records")}
        meta["pipeline_check"] = True
        run.write_scores_meta(meta)
    status = ["finished", "finished", "failed", "pending"]
    SweepRecord(runs, "sw").write({"name": "sw", "spec": "/x/sw.toml", "created": 0, "engine": {"ray": "2.60.0"},
                                   "varied": ["steps", "lr"],
                                   "trials": [{"name": n, "params": p, "fingerprint": "f", "status": s, "stage": "",
                                               "attempts": 1, "resumed_from": None, "message": ""}
                                              for n, p, s in zip(names, PARAMS, status)]})
    return names


@pytest.fixture
def sweep_runs(tmp_path):
    runs = tmp_path / "runs"
    return runs, make_sweep(runs)


def open_sweeps(runs: Path, query: dict | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["runs_dir"] = str(runs)
    at.run()
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.switch_page("views/sweeps.py").run()
    return at


def qp(at, key: str) -> list[str]:
    v = at.query_params[key]
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


def test_sweeps_page_table_plane_effects_links(sweep_runs):
    runs, names = sweep_runs
    at = open_sweeps(runs)
    assert not at.exception, [e.value for e in at.exception]
    assert "Sweeps" in [t.value for t in at.title]
    table = at.dataframe[0].value
    assert len(table) == 4 and {"steps", "lr", "status", "CLIP-I [95% CI]", "CLIP-T [95% CI]",
                                "recommended checkpoint"} <= set(table.columns)
    assert table["trial"].str.startswith("⚠ ").all()  # random weights: pipeline checks
    assert any(PIPELINE_CHECK_LABEL in w.value for w in at.warning)
    # the final CLIP-I / CLIP-T come from scores.json's by_step summary (last checkpoint), not recomputed
    meta = Run(runs / names[0]).read_scores_meta()
    last = max(meta["summaries"]["by_step"], key=lambda r: r["step"])
    row = table[table["trial"] == "⚠ " + names[0]].iloc[0]
    assert row["CLIP-I [95% CI]"] == f"{last['clip_i_mean']:.4f} [{last['clip_i_lo']:.4f}, {last['clip_i_hi']:.4f}]"
    assert table.iloc[3]["CLIP-I [95% CI]"] == "not scored" and table.iloc[3]["status"] == "pending"
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # the plane + one effect plot per varied parameter
    links = at.get("page_link")
    assert len(links) == 3 * 3  # three started trials x (token explorer, grids, CLIP scores)
    # the view is in the URL
    assert qp(at, "sweep") == ["sw"] and qp(at, "color") == ["steps"]


@pytest.mark.slow
def test_sweeps_page_filters_and_colour_live_in_the_url(sweep_runs):
    runs, names = sweep_runs
    at = open_sweeps(runs)
    at.multiselect(key="sweep_f_lr").set_value(["0.005"]).run()
    at.selectbox(key="sweep_color").set_value("lr").run()
    assert not at.exception
    assert list(at.dataframe[0].value["lr"]) == [0.005, 0.005]
    assert qp(at, "f_lr") == ["0.005"] and qp(at, "color") == ["lr"]
    # a shared URL opens the same view
    shared = open_sweeps(runs, {"sweep": "sw", "f_lr": "0.005", "color": "lr", "status": "finished",
                                "metric": "clip_t"})
    assert not shared.exception
    assert list(shared.dataframe[0].value["trial"]) == ["⚠ " + names[1]]
    assert shared.selectbox(key="sweep_color").value == "lr"
    assert shared.selectbox(key="sweep_metric").value == "clip_t"


def test_link_opens_the_trials_run(sweep_runs):
    from streamlit.testing.v1 import AppTest

    runs, names = sweep_runs
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["runs_dir"] = str(runs)
    at.run()
    at.query_params["run"] = names[2]
    at.switch_page("views/clip_scores.py").run()
    assert not at.exception
    assert at.selectbox(key="clip_run").value == names[2]


def test_sweeps_page_without_sweeps(tmp_path):
    make_fake_run(tmp_path / "runs", "lonely", "object")
    at = open_sweeps(tmp_path / "runs")
    assert not at.exception
    assert any("No sweeps" in i.value for i in at.info)
    assert any("python -m core sweep" in c.value for c in at.code)
