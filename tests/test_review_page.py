"""The dashboard's review mode under AppTest (issue 20): the read-only default offers nothing that writes; in review
mode a flag given on the Prompt grids page lands in RUN/review/ and shows under the image; the Review page adds up
flags with Wilson CIs and agreement, adds, updates and retracts findings and flags; deep links restore the view."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.review.records import Target
from core.review.store import ReviewStore
from core.runfolder import PIPELINE_CHECK_LABEL, Run
from tests.test_dashboard import APP, ROOT, assert_clean, make_dashboard_runs, open_page, texts

REVIEW = "views/review.py"
GRIDS = "views/prompt_grids.py"
IMG = "images/step-000020/p00-s0.png"
HOSTILE = "<script>alert(1)</script> ![t](http://127.0.0.1:9/track.png) **bold**"


@pytest.fixture
def runs(tmp_path) -> Path:
    runs = make_dashboard_runs(tmp_path / "runs")
    store = ReviewStore(Run(runs / "fake-object"))
    for who, flag in (("ann", "off-model"), ("bob", "off-model")):
        store.add_flag(who, Target.image(IMG), flag, HOSTILE if who == "ann" else "")
    store.add_flag("ann", Target.image("images/step-000020/p01-s1.png"), "on-model")
    store.add_flag("bob", Target.image("images/step-000020/p01-s1.png"), "copy-suspected")
    store.add_finding("ann", "Off-model at step 20", "two reviewers agree", "medium", evidence=[IMG])
    return runs


def reviewing(at, name: str | None = "carol"):
    at.session_state["review_mode"] = True
    if name:
        at.session_state["reviewer_name"] = name
    return at


def captions(at) -> str:
    """Every caption as the reader sees it (the page escapes Markdown with backslashes)."""
    return "\n".join(texts(at.caption)).replace("\\", "")


def write_controls(at) -> list[str]:
    """Every control that could write: forms' submit buttons, flag pickers, note boxes, retract buttons."""
    found = [f"segmented {w.key}" for w in at.button_group] + [f"text_area {w.key}" for w in at.text_area]
    found += [f"button {b.label}" for b in at.button if b.label in ("Save flag", "Add finding", "Save update",
                                                                     "Retract", "Retract this finding")]
    return found + [f"sidebar input {t.label}" for t in at.sidebar.text_input]


def test_read_only_default_offers_nothing_that_writes(runs):
    at = open_page(runs, GRIDS)
    assert_clean(at, GRIDS)
    assert not write_controls(at), write_controls(at)
    assert "flags: off-model (ann) · off-model (bob)" in captions(at)  # flags are shown
    at.switch_page(REVIEW).run()
    assert_clean(at, REVIEW)
    assert not write_controls(at), write_controls(at)
    assert any("Read-only" in i for i in texts(at.info))
    assert any("read-only" in c for c in texts(at.sidebar.caption))


def test_review_page_adds_up_flags_with_wilson_cis_and_agreement(runs):
    at = reviewing(open_page(runs, REVIEW))
    at.run()
    assert_clean(at, REVIEW)
    assert [m.value for m in at.metric] == ["2", "4", "2", "1"]
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    import json

    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    assert all(t.startswith("PIPELINE CHECK") and "Wilson 95% CI" in t for t in titles)
    assert any(PIPELINE_CHECK_LABEL in w for w in texts(at.warning))
    rates = at.dataframe[0].value
    off = rates[(rates["step"] == 20) & (rates["flag"] == "off-model")].iloc[0]
    assert (off["images flagged"], off["images reviewed"]) == (1, 2)  # the tie on p01 goes to copy-suspected
    kappa = at.dataframe[2].value
    assert list(kappa["method"]) == ["Cohen's kappa"] and kappa["n images"].iloc[0] == 2
    findings = at.dataframe[3].value
    assert list(findings["title"]) == ["Off-model at step 20"] and list(findings["status"]) == ["open"]
    flags = at.dataframe[4].value
    assert HOSTILE in list(flags["note"])  # shown as a table cell (text), never rendered as Markdown
    assert not any("<script>" in m for m in texts(at.markdown))


@pytest.mark.slow
def test_flag_an_image_on_the_prompt_grids_page_in_review_mode(runs):
    at = reviewing(open_page(runs, GRIDS))
    at.run()
    assert_clean(at, GRIDS)
    pickers = [w for w in at.button_group if IMG in w.key]
    assert pickers and all(set(w.options) >= {"off-model", "harmful"} for w in pickers)
    key = pickers[0].key.removeprefix("flag_pick_")
    pickers[0].set_value("harmful")
    at.text_area(key=f"flag_note_{key}").input("hands look wrong")
    next(b for b in at.button if b.label == "Save flag" and b.proto.form_id == f"flag_form_{key}").click().run()
    assert not at.exception
    (line,) = [a for a in ReviewStore(Run(runs / "fake-object")).state().active if a.reviewer == "carol"]
    assert (line.flag, line.note, line.target.path) == ("harmful", "hands look wrong", IMG)
    assert "harmful (carol)" in captions(at)


def test_flag_controls_ask_for_the_reviewer_name_first(runs):
    at = reviewing(open_page(runs, GRIDS), name=None)
    at.run()
    assert at.sidebar.text_input(key="reviewer_name")
    assert any("Enter your name in the sidebar" in i for i in texts(at.info))
    assert not at.button_group
    at.sidebar.text_input(key="reviewer_name").input("bad\u202ename").run()
    assert any("cannot be used" in e for e in texts(at.sidebar.error))


@pytest.mark.slow
def test_findings_editor_adds_updates_and_retracts(runs):
    run = Run(runs / "fake-object")
    at = reviewing(open_page(runs, REVIEW))
    view = f"http://127.0.0.1:8501/prompt_grids?run=fake-object&image={IMG}"  # a view opened this session
    at.session_state["_recent_views"] = {"http://127.0.0.1:8501/prompt_grids": view}
    at.run()
    at.text_input(key="new_title_fake-object").input("Copies a training image")
    at.text_area(key="new_text_fake-object").input("p01 is a copy")
    next(b for b in at.button if b.label == "Add finding").click().run()
    assert not at.exception
    titles = [f.title for f in ReviewStore(run).state().findings]
    assert titles == ["Off-model at step 20", "Copies a training image"]
    assert ReviewStore(run).state().findings[1].evidence == (view,)  # the view, attached by default
    first = ReviewStore(run).state().findings[0]
    assert at.selectbox(key="review_finding_fake-object").value == first.id  # the first finding is shown
    at.selectbox(key=f"upd_status_{first.id}").set_value("mitigated")
    at.text_area(key=f"upd_mitigation_{first.id}").input("ship step 10")
    next(b for b in at.button if b.label == "Save update" and first.id in b.proto.form_id).click().run()
    updated = ReviewStore(run).state().findings[0]
    assert (updated.status, updated.mitigation, updated.updated_by) == ("mitigated", "ship step 10", ("ann", "carol"))
    next(b for b in at.button if b.label == "Retract this finding" and b.key == f"retract_{first.id}").click().run()
    assert ReviewStore(run).state().findings[0].retracted


@pytest.mark.slow
def test_retract_your_own_flag_on_the_review_page(runs):
    run = Run(runs / "fake-object")
    mine = ReviewStore(run).add_flag("carol", Target.image(IMG), "other", "mine")
    at = reviewing(open_page(runs, REVIEW))
    at.run()
    assert at.selectbox(key="review_retract_fake-object").options == [f"other on {IMG} ({mine.time})"]
    next(b for b in at.button if b.label == "Retract").click().run()
    assert mine.id in ReviewStore(run).state().retracted


def test_review_pack_download_on_the_review_page(runs):
    at = open_page(runs, REVIEW)
    (button,) = at.get("download_button")
    assert button.proto.label.startswith("Download the review pack")


def test_deep_link_restores_run_step_prompt_seed_and_image(runs):
    from streamlit.testing.v1 import AppTest

    prompt = "a horror movie poster with <tom-cat>"
    at = AppTest.from_file(str(ROOT / "dashboard" / GRIDS), default_timeout=180)
    at.session_state["runs_dir"] = str(runs)
    at.query_params.update({"run": "fake-object", "step": "10", "prompt": prompt, "seed": "1"})
    at.run()
    assert not at.exception
    assert at.selectbox(key="grid_run").value == "fake-object"
    assert at.select_slider(key="grid_ckpt_fake-object").value == 10
    assert at.multiselect(key="grid_prompts_fake-object").value == [prompt]
    assert at.multiselect(key="grid_seeds_fake-object").value == [1]
    assert len(at.image) == 2  # one pair
    at.select_slider(key="grid_ckpt_fake-object").set_value(20).run()
    assert at.query_params["step"] in ("20", ["20"]) and at.query_params["run"] in ("fake-object", ["fake-object"])
    # ?image= opens that image's pair full size
    at = AppTest.from_file(str(ROOT / "dashboard" / GRIDS), default_timeout=180)
    at.session_state["runs_dir"] = str(runs)
    at.query_params.update({"run": "fake-object", "image": "images/step-000010/p01-s0.png"})
    at.run()
    assert at.select_slider(key="grid_ckpt_fake-object").value == 10
    assert at.selectbox(key="grid_full_fake-object").value == f"{prompt} · seed 0"
    assert at.query_params["image"] in ("images/step-000010/p01-s0.png", ["images/step-000010/p01-s0.png"])


def test_a_bad_deep_link_is_ignored(runs):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / GRIDS), default_timeout=180)
    at.session_state["runs_dir"] = str(runs)
    at.query_params.update({"run": "../../etc", "step": "banana", "seed": "99", "image": "/etc/passwd"})
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="grid_run").value == "fake-object"  # the first readable run
    assert at.select_slider(key="grid_ckpt_fake-object").value == 20 and not at.multiselect[1].value


def test_app_routes_the_review_page(runs):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["runs_dir"] = str(runs)
    at.run()
    at.switch_page(REVIEW).run()
    assert_clean(at, REVIEW)


def test_a_damaged_review_store_is_named_and_the_other_pages_go_on(runs):
    run = Run(runs / "fake-object")
    with open(run.annotations_path, "a", encoding="utf-8") as f:
        f.write('{"id": "a-0123456789ab", "flag": "nonsense"}\n')
    at = reviewing(open_page(runs, REVIEW))
    at.run()
    assert not at.exception
    errors = [e.replace("\\", "") for e in texts(at.error)]
    assert any("annotations.jsonl: line 5: key 'time' is missing" in e and "repair or delete that line" in e
               for e in errors), errors
    at.switch_page(GRIDS).run()
    assert_clean(at, GRIDS)
    import core.card as C

    style = Run(runs / "fake-style")  # every image scored: its card is ready
    style.review_dir.mkdir()
    style.findings_path.write_text("not json\n", encoding="utf-8")
    assert "The review store cannot be read" in str(C.build_card(style).section("Human Review").blocks)
