"""Issue 21 on the dashboard (AppTest, fixture runs): the CLIP scores page plots token similarity and identity per
checkpoint, Character vs style shows both runs' side by side, the Risks page shows leakage and the memorisation
screen with the highest-gap images beside their nearest training image; titles carry the pipeline-check label and
hovers the measure's provenance."""

import json
from pathlib import Path

from tests.fakerun import make_fake_run
from tests.test_dashboard import open_page, texts


def charts(at) -> dict:
    """{chart key: plotly figure dict} of the page."""
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def values(v) -> list:
    """A trace's x or y as a list (plotly sends numpy arrays as base64 'bdata')."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def test_clip_scores_page_plots_token_similarity_and_identity(fake_runs):
    at = open_page(fake_runs, "views/clip_scores.py")
    assert not at.exception, at.exception
    figs = charts(at)
    token, ident = figs["identity_token_similarity"], figs["identity_rate"]
    assert token["layout"]["title"]["text"].startswith("PIPELINE CHECK")
    names = [t.get("name") for t in token["data"]]
    assert {"reference images (mean)", "subject description", "initializer word"} <= set(names)
    assert values([t for t in token["data"] if t.get("name") == "initializer word"][0]["x"]) == [0, 10, 20]
    hover = [t for t in token["data"] if t.get("name") == "subject description"][0]["hovertemplate"]
    assert "encoder: ViT-L-14 random weights" in hover and "versions:" in hover  # provenance on hover
    assert values(ident["data"][0]["x"]) == [0, 20] and "encoder: ViT-B-32" in ident["data"][0]["hovertemplate"]


def test_character_vs_style_shows_both_runs_identity(fake_runs):
    at = open_page(fake_runs, "views/character_vs_style.py")
    assert not at.exception, at.exception
    figs = charts(at)
    for name in ("fake-object", "fake-style"):
        assert name in figs[f"cvs_token_{name}"]["layout"]["title"]["text"]
        assert f"cvs_identity_{name}" in figs
    assert any("CustomConcept101" in c for c in texts(at.caption))


def test_risks_page_shows_leakage_and_the_memorisation_screen(tmp_path):
    from tests.test_risks_page import make_audited_runs

    runs = make_audited_runs(tmp_path / "runs", tmp_path / "refs")
    at = open_page(runs, "views/risks.py")
    assert not at.exception, at.exception
    figs = charts(at)
    assert figs["risks_leakage"]["layout"]["title"]["text"].startswith("PIPELINE CHECK")
    gap = figs["risks_cond_gap"]
    assert [t["name"] for t in gap["data"]] == ["step 0", "step 20"]
    assert "screen, not a verdict" in " ".join(texts(at.caption))
    captions = [c for i in at.get("image")[2:] for c in i.captions]  # after the audit's two closest pairs
    assert len(captions) == 6 and all(c.startswith("PIPELINE CHECK") for c in captions)
    gaps = [float(c.split("cond_gap ")[1].split(" ")[0]) for c in captions[0::2]]
    assert gaps == sorted(gaps, reverse=True)  # the highest first
    assert all("nearest training image: tom_" in c for c in captions[1::2])


def scored_before_the_measures(runs: Path):
    """A fixture run whose scores.json was written before issue 21 (none of its keys)."""
    run = make_fake_run(runs, "old-object", "object")
    meta = json.loads(run.scores_meta_path.read_text())
    for key in ("token_similarity", "token_similarity_provenance", "identity", "identity_labels", "leakage",
                "memorisation", "protocol", "provenance"):
        meta.pop(key)
    run.write_scores_meta(meta)
    return run


def test_older_runs_without_the_fields_are_not_an_error(tmp_path):
    run = scored_before_the_measures(tmp_path / "runs")
    assert run.scores_record().token_similarity == () and run.scores_record().protocol is None
    for page in ("views/clip_scores.py", "views/risks.py"):
        at = open_page(tmp_path / "runs", page)
        assert not at.exception and not at.error, (page, texts(at.error))


def test_card_has_a_section_per_measure_with_provenance_and_the_published_baseline(fake_runs):
    import core.card as C
    from core.runfolder import Run

    md = C.render(C.build_card(Run(fake_runs / "fake-object")), "md").decode("utf-8")
    for title in ("Is It the Subject? Identity, Leakage and Memorisation", "Token Similarity in CLIP's Text Space",
                  "Zero-Shot Identity", "Concept Leakage", "Memorisation Screen", "CustomConcept101 Protocol"):
        assert f"### {title}" in md or f"## {title}" in md, title
    assert "screen, not a verdict" in md and "0.6126" in md and "0.7524" in md and "0.5111" in md
    assert "What differs:" in md and "CustomConcept101 (Kumari et al." in md
    assert md.count("**Encoder:**") >= 5 and "Prompt variant" in md
    assert "these protocol numbers check the pipeline" in md  # random weights


def test_card_of_a_run_scored_before_the_measures(tmp_path):
    import core.card as C

    run = scored_before_the_measures(tmp_path / "runs")
    md = C.render(C.build_card(run), "md").decode("utf-8")
    assert "Token similarity: not recorded" in md and "Protocol-compatible numbers: not computed" in md


def test_json_card_carries_the_measures_without_local_paths(fake_runs):
    import core.card as C
    from core.runfolder import Run

    run = Run(fake_runs / "fake-object")
    doc = json.loads(C.render(C.build_card(run), "json"))
    part = doc["scores_meta"]
    rec = run.scores_record()
    assert [r["step"] for r in part["token_similarity"]] == [r["step"] for r in rec.token_similarity] == [0, 10, 20]
    assert part["identity"] == json.loads(json.dumps([dict(r) for r in rec.identity]))
    assert part["leakage"] and part["memorisation"] and part["protocol"]["published_textual_inversion"]
    assert {"identity", "leakage", "token_similarity", "protocol"} <= set(part["provenance"])
    assert part["identity_labels"]["subject"] == rec.identity_labels["subject"]


def test_public_identity_json_names_the_dino_file_without_its_folder(fake_runs):
    import dataclasses

    from core.runfolder import Run

    rec = Run(fake_runs / "fake-object").scores_record()
    rec = dataclasses.replace(rec, protocol={**rec.protocol, "dino": {"file": "/home/me/w/dino.pth", "sha256": "ab"}})
    assert rec.identity_json(public=True)["protocol"]["dino"]["file"] == "dino.pth"
    assert rec.identity_json()["protocol"]["dino"]["file"] == "/home/me/w/dino.pth"
    assert rec.protocol["dino"]["file"] == "/home/me/w/dino.pth"  # the record itself is not changed
