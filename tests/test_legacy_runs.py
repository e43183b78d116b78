"""Compatibility: a runs folder written by an older version (tests/fixtures/legacy-runs-v0.1, made by
tests/fixtures/make_legacy_runs.py at the commit named in its MADE-BY file) opens in today's dashboard (data layer
and every page) and `card` works on it. This folder is never regenerated: it stands for what users have on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_dashboard import PAGES, app_test

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy-runs-v0.1"
RUN_NAMES = ("tom-object", "tom-style")


@pytest.fixture
def legacy(tmp_path):
    """A copy of the legacy folder (tests must not write into the fixture)."""
    dst = tmp_path / "legacy"
    shutil.copytree(LEGACY, dst)
    return dst / "runs"


def test_fixture_is_what_the_old_code_wrote():
    assert (LEGACY / "MADE-BY").read_text().startswith("commit ")
    for name in RUN_NAMES:
        meta = json.loads((LEGACY / "runs" / name / "run.json").read_text())
        assert meta["schema_version"] == 1 and meta["status"] == "finished"
        scores = json.loads((LEGACY / "runs" / name / "scores.json").read_text())
        assert scores["config"]["n_boot"] == 500 and scores["complete"]


def test_dashboard_data_layer_reads_legacy_runs(legacy):
    from dashboard import data

    infos = data.run_infos(str(legacy))
    assert [i.name for i in infos] == list(RUN_NAMES)
    for info, prop in zip(infos, ("object", "style")):
        assert info.error is None, info.error
        assert info.status == "finished" and info.record.property == prop and info.pipeline_check
        assert info.record.token.placeholder == "<tom-cat>" and info.final_step == 4
        path = info.path
        assert list(data.metrics(path)["step"]) == [1, 2, 3, 4]
        assert len(data.images(path)) == 8 and len(data.scores(path)) == 8
        assert set(data.neighbors(path)["step"]) == {0, 2, 4}
        by_step = data.summary(path, "step")
        assert list(by_step["step"]) == [0, 4]
        # the summaries `score --n-boot 500` wrote, not recomputed with the default n_boot
        written = json.loads((Path(path) / "scores.json").read_text())["summaries"]["by_step"]
        assert by_step["clip_i_lo"].tolist() == [r["clip_i_lo"] for r in written]
        assert data.grids(path) == ["checkpoint-000004-txt2img.png"]
    (folder,) = data.saved_comparisons(str(legacy))
    saved = data.saved_comparison(folder)
    assert saved.a.name == "tom-object" and len(saved.table) == 10 and saved.n_boot == 500


@pytest.mark.slow
@pytest.mark.parametrize("page", list(PAGES))
def test_every_dashboard_page_opens_on_legacy_runs(legacy, page):
    at = app_test(legacy).run()
    if page != "views/experiments.py":
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert PAGES[page] in [str(t.value) for t in at.title]
    assert not at.error, [str(e.value) for e in at.error]


def test_card_cli_on_legacy_runs(legacy, tmp_path):
    from core.__main__ import main

    out = tmp_path / "card"
    rc = main(["card", str(legacy / "tom-object"), "--compare", str(legacy / "tom-style"), "--out", str(out),
               "--format", "md,json"])
    assert rc == 0
    md = next(out.glob("*.md")).read_text(encoding="utf-8")
    assert "PIPELINE CHECK" in md and "<tom-cat>" in md
    card = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    assert "PIPELINE CHECK" in json.dumps(card)
