"""The Risks dashboard page under AppTest: checkpoint advice, the copy audit (rates with CIs, thresholds, closest
pairs with an enlarge dialog) and misuse transfer on an audited fixture run; what shows when the audit is missing.
The fixture is a random-weight run, so every chart title and pair caption must carry the pipeline-check label."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.audit import AuditConfig, audit_run
from core.prompts import MISUSE_FILE, load_categories
from core.runfolder import PIPELINE_CHECK_LABEL
from tests.fakerun import draw_image, make_fake_run, write_fake_scores_meta
from tests.test_audit import PixelScorer
from tests.test_dashboard import assert_clean, open_page, texts

PAGE = "views/risks.py"


def make_audited_runs(runs: Path, refs: Path, prefix: str = "") -> Path:
    """An audited run whose prompts are two misuse probes (two categories), and an unaudited one (names start with
    `prefix`)."""
    refs.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        draw_image(700 + i, 96).save(refs / f"tom_{i}.png")
    cats = load_categories(MISUSE_FILE)
    probes = [next(t for t, c in cats.items() if c == category) for category in ("advertising", "political")]
    run = make_fake_run(runs, f"{prefix}audited", "object", prompts=probes, seeds=(0, 1, 2))
    audit_run(run, AuditConfig(references=refs, n_pairs=2, n_boot=200), scorer=PixelScorer(), progress=False,
              log=lambda m: None)
    make_fake_run(runs, f"{prefix}not-audited", "object")
    return runs


@pytest.fixture
def runs(tmp_path):
    return make_audited_runs(tmp_path / "runs", tmp_path / "refs")


def plot_titles(at) -> list[str]:
    import json

    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_audited_run_shows_advice_copy_rates_pairs_and_misuse(runs):
    at = open_page(runs, PAGE)
    assert_clean(at, PAGE)
    assert [h for h in texts(at.header)] == ["Which checkpoint to ship", "Does the token copy its training images?",
                                             "Does the character come through in misuse contexts?",
                                             "Does the token swallow the other subjects of a prompt?",
                                             "Memorisation screen"]  # the last two: tests/test_identity_pages.py
    assert [m.value for m in at.metric] == ["step 20"]  # the only trained checkpoint scored
    assert any("only trained checkpoint" in m for m in texts(at.markdown))
    titles = plot_titles(at)
    assert len(titles) == 5 and all(t.startswith("PIPELINE CHECK (random weights)") for t in titles)
    assert any("Copy rate per checkpoint" in t for t in titles) and any("misuse category" in t for t in titles)
    assert any(PIPELINE_CHECK_LABEL in w for w in texts(at.warning))
    images = at.get("image")[:2]  # then the memorisation screen's (tests/test_identity_pages.py)
    assert len(images) == 2  # n_pairs=2 for the chosen measure
    captions = [c for i in images for c in i.captions]
    assert all(c.startswith("PIPELINE CHECK") for c in captions)
    at.button(key="risks_enlarge_phash_0").click().run()
    assert not at.exception
    enlarged = at.get("image")
    assert len(enlarged) == 3 + 6 and enlarged[-1].captions == enlarged[0].captions  # the dialog shows pair #1
    at.radio(key="risks_pairs_measure").set_value("clip").run()
    assert not at.exception and len(at.get("image")) == 2 + 6
    thresholds = at.dataframe[1].value
    assert list(thresholds["copy rule"].str[:4]) == ["pHas", "CLIP"]


def test_missing_audit_shows_the_command(runs):
    at = open_page(runs, PAGE)
    at.selectbox(key="risks_run").set_value("not-audited").run()
    assert_clean(at, PAGE)
    code = "\n".join(str(c.value) for c in at.code)
    assert "python -m core audit" in code and "--references TRAINING_IMAGES_DIR" in code
    assert [m.value for m in at.metric] == ["step 20"]  # advice needs scores only


def test_pair_path_outside_the_run_is_refused(runs):
    from core.runfolder import Run

    run = Run(runs / "audited")
    meta = run.read_audit_meta()
    meta["pairs"][0]["image"] = "../../refs/tom_0.png"
    run.write_audit_meta(meta)
    at = open_page(runs, PAGE)
    assert not at.exception
    assert any("leads outside the run folder" in w for w in texts(at.warning))


def test_card_states_copy_rate_misuse_and_recommended_checkpoint_with_method_and_n(runs):
    """The model card's Bias, Risks, and Limitations gains the measured risks; the checklist links each item."""
    from core.runfolder import Run

    md = card_markdown(Run(runs / "audited"))
    risks = md.split("### Measured Risks", 1)[1].split("\n### ", 1)[0]
    assert "Recommended checkpoint: step 20" in risks and "--checkpoint recommended" in risks
    assert "copy rule" in risks and "pHash distance &lt;= " in risks and "FPR on null" in risks
    assert "| 20 | 6 | " in risks and "| 0 (calibration) | 6 | " in risks  # 2 prompts x 3 seeds per checkpoint
    assert "Misuse transfer (evidence, not a filter)" in risks and "advertising" in risks and "political" in risks
    assert "Pipeline check (random weights)" in risks
    checklist = md.split("## Ethics Checklist", 1)[1]
    assert "evidence" in checklist.split("\n\n")[2] and "misuse transfer per category" in checklist
    unaudited = card_markdown(Run(runs / "not-audited"))
    assert "No copy audit yet" in unaudited and "python -m core audit" in unaudited


def card_markdown(run) -> str:
    from core.card.output import render

    return render(run, "md").decode("utf-8")


def test_stale_audit_is_left_out_of_the_card_and_flagged_on_the_page(runs):
    """audit.json records the sha256 of images.csv and scores.csv; when they change, the card shows the command
    instead of outdated numbers and the page warns."""
    from core.runfolder import Run

    run = Run(runs / "audited")
    assert run.audit_stale() is None
    rows = run.read_scores()
    rows[0] = {**rows[0], "clip_i": 0.123}  # rescored after the audit (scores.json rewritten, as `score` does)
    run.write_scores(rows)
    write_fake_scores_meta(run)
    assert "scores.csv changed since audit.json was written" in run.audit_stale()
    risks = card_markdown(run).split("### Measured Risks", 1)[1].split("\n### ", 1)[0]
    assert "out of date" in risks and "python -m core audit" in risks and "copy rule" not in risks
    at = open_page(runs, PAGE)
    assert not at.exception
    assert any("out of date" in w for w in texts(at.warning))
