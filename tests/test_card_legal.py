"""The model card's legal and ethics text against its sources (issue 22): character and style get different
copyright text, random weights claim no base model, no interval below two images, every published image of a
random-weight run carries the PIPELINE CHECK label, the licence text ships with the card and the bundle, misuse-probe
images never reach a published figure, and checkpoints scored on different prompt sets are compared on the pairs
they share. Fixture runs only (tests/fakerun.py): no network, no real architecture."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from core import card as C
from core.card.basemodel import LICENCE_NOT_STATED, base_model_claim
from core.card.examples import BANNER_RGB
from core.card.legal import LICENSE_COPYRIGHT_NOTICE, LICENSE_SHA256
from core.prompts import MISUSE_FILE, load_categories
from core.runfolder import PIPELINE_CHECK_LABEL, Run, WeightsProvenance
from tests.fakerun import make_fake_run, write_fake_scores_meta

KERASCV_WEIGHTS = {"source": "kerascv", "files": {"diffusion_model.h5": "ab" * 32}, "verified": True}


def _md(run: Run) -> str:
    return C.render(C.build_card(run), "md").decode("utf-8")


def _weights(**raw) -> WeightsProvenance:
    return WeightsProvenance(source=raw["source"], files=raw.get("files", {}), verified=raw.get("verified"), raw=raw)


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """A random-weight character card and a KerasCV-weight style card (Markdown), built once."""
    runs = tmp_path_factory.mktemp("legal") / "runs"
    character = make_fake_run(runs, "char", "object")
    style = make_fake_run(runs, "sty", "style")
    style.update_meta(weights=KERASCV_WEIGHTS)
    return {"character": _md(character), "style": _md(style), "runs": runs}


# ----------------------------------------------------------------------------------- point 1: the split
def test_character_and_style_cards_carry_different_copyright_text(cards):
    character, style = cards["character"], cards["style"]
    for wrong in ("are fan art:", "inherited from the base model", "Warner"):
        assert wrong not in character and wrong not in style, wrong
    assert "&quot;fan art&quot; is not a legal category" in character
    assert "17 U.S.C. § 106(1)-(2)" in character and "registered trademarks" in character
    assert "it grants no rights in the character." in character
    assert "A style as such is generally not protected by copyright" in style
    assert "passing-off (UK), unfair-competition or trade-dress claims" in style
    assert "the rights holders and artists of the source works" in style
    assert "it grants no rights in the source works." in style
    # the character's commercial-use line, its trademark note and its affected party never reach a style card
    for character_only in ("Commercial use of images of the character", "registered trademarks",
                           "the rights holder of the character", "Rights holder of the depicted character"):
        assert character_only not in style, character_only
    for text in (character, style):
        assert "does not make an infringing use lawful" in text  # "not affiliated" is no cure
        assert "adult, violent" not in text and "contains adult material" in text  # the SD card, as it reads
        assert "This card is not legal advice." in text


# ---------------------------------------------------------------------------- point 3: base-model claims
def test_random_weights_make_no_base_model_claim(cards, tmp_path):
    character = cards["character"]
    assert "base_model:" not in character.split("\n---\n", 1)[0]
    assert "**Finetuned from model:** none: random weights (pipeline check)" in character
    assert "trained through randomly initialised networks" in character
    assert "not a Derivative of Stable Diffusion" in character
    assert "trained through Stable Diffusion v1.4" not in character and "Trained through" not in character
    # KerasCV's files: SD v1.4 is named, in the metadata and in the text
    style = cards["style"]
    assert "base_model: CompVis/stable-diffusion-v1-4" in style.split("\n---\n", 1)[0]
    assert "This embedding was trained through Stable Diffusion v1.4" in style
    # any other checkpoint: named as run.json records it, licence only when stated
    run = make_fake_run(tmp_path / "runs", "local")
    run.update_meta(weights={"source": "local", "files": {"unet.h5": "cd" * 32}, "verified": False})
    text = _md(run)
    assert "base_model:" not in text.split("\n---\n", 1)[0]
    assert "the checkpoint named in run.json (unet.h5)" in text and C.md_escape(LICENCE_NOT_STATED) in text
    assert "Stable Diffusion v1.4" not in text.split("## Bias, Risks")[0].split("### Third-Party")[0]
    run.card_overrides_path.write_text("base_model_license: Some Fine-Tune Licence 1.0\n", encoding="utf-8")
    assert "base checkpoint's licence: Some Fine-Tune Licence 1.0" in _md(run)


@pytest.mark.parametrize("raw, hub_id, pipeline", [
    ({"source": "random", "seed": 0}, None, True),
    ({"source": "kerascv", "files": {"a.h5": "1"}}, "CompVis/stable-diffusion-v1-4", False),
    ({"source": "local", "files": {"a.h5": "1"}, "verified": True}, "CompVis/stable-diffusion-v1-4", False),
    ({"source": "local", "files": {"a.h5": "1"}, "verified": False}, None, False),
])
def test_base_model_claim_follows_the_weights_provenance(raw, hub_id, pipeline):
    claim = base_model_claim(_weights(**raw))
    assert claim.hub_id == hub_id and claim.pipeline_check is pipeline
    assert claim.licence_known is (hub_id is not None)
    assert ("Stable Diffusion v1.4" in claim.trained_through) is (hub_id is not None)


# ------------------------------------------------------------------------------ point 9: the n < 2 rule
def test_no_interval_is_printed_below_two_images(tmp_path):
    from core.card.formatting import interval
    from core.card.risks import rate_text

    assert interval(0.5, 0.6, 1) == "none (n = 1)" and interval(0.5, 0.6, 2) == "[0.500, 0.600]"
    assert interval(0.5, 0.6) == "[0.500, 0.600]"
    assert rate_text({"k": 1, "n": 1, "rate": 1.0, "lo": 1.0, "hi": 1.0}) == \
        "1/1 = 1.000 (n = 1: too few images for an interval)"
    run = make_fake_run(tmp_path / "runs", "one", prompts=["a drawing of {}"], seeds=(0,))
    card = C.build_card(run)
    rows = card.data["tables"]
    (table,) = [t for t in rows.values() if t["section"] == "Results" and t["columns"][0] == "step"]
    for row in table["rows"]:
        assert row[1] == "1" and row[3] == "none (n = 1)" and row[5] == "none (n = 1)", row
    assert "1.000-1.000" not in C.render(card, "md").decode("utf-8")


# -------------------------------------------------------------------------- point 9: the label on images
def test_every_published_image_of_a_random_weight_run_carries_the_label(tmp_path):
    from PIL import Image

    run = make_fake_run(tmp_path / "runs", "rand")
    out = tmp_path / "out"
    C.write_card(run, out, ["md"])
    published = sorted((out / C.IMAGES_SUBDIR).glob("*.png"))
    assert [p.name for p in published] == ["best-clipi.png", "best-clipt.png", "worst-clipi.png", "worst-clipt.png"]
    for path in published:
        with Image.open(path) as image:
            assert image.text.get("label") == PIPELINE_CHECK_LABEL, path.name
            assert image.convert("RGB").getpixel((2, 2)) == BANNER_RGB, path.name
    run.update_meta(weights=KERASCV_WEIGHTS)  # the same images from KerasCV's weights: no label
    for name, png in C.build_card(run).figures.items():
        with Image.open(io.BytesIO(png)) as image:
            assert "label" not in image.text and image.convert("RGB").getpixel((2, 2)) != BANNER_RGB, name


# --------------------------------------------------------------------------- point 2: the licence shipped
def test_card_folder_and_card_carry_the_licence_text(tmp_path):
    run = make_fake_run(tmp_path / "runs", "lic")
    out = tmp_path / "out"
    paths = C.write_card(run, out, ["md", "json"])
    licence = (out / C.LICENSE_FILE_NAME).read_bytes()
    assert hashlib.sha256(licence).hexdigest() == LICENSE_SHA256 and licence.decode("utf-8") == C.license_text()
    md = paths["md"].read_text(encoding="utf-8")
    full = md.split("## Full Text of the CreativeML Open RAIL-M Licence", 1)[1]
    for line in ("6. The Output You Generate. Except as set forth herein, Licensor claims no rights in the Output",
                 "8. Trademarks and related. Nothing in this License permits You to make use of Licensors",
                 "END OF TERMS AND CONDITIONS"):
        assert C.md_escape(line) in full, line
    assert C.md_escape(LICENSE_COPYRIGHT_NOTICE) in md.split("## Full Text")[0]  # 4(d), in the card's own text
    for duty in ("4(b): give every recipient a copy of the licence", "6: the licensor claims no rights",
                 "8: the licence gives no right to use the licensors' trademarks", "Obtain Stable Diffusion v1.x "
                 "yourself"):
        assert C.md_escape(duty) in md, duty
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["license"]["sha256"] == LICENSE_SHA256 and doc["license"]["file"] == "LICENSE"


def test_a_changed_licence_file_is_refused(tmp_path, monkeypatch):
    from core.card import legal

    bad = tmp_path / "LICENSE"
    bad.write_text(legal.license_text().replace("minors", "adults"), encoding="utf-8")
    legal.license_text.cache_clear()
    monkeypatch.setattr(legal, "LICENSE_PATH", bad)
    try:
        with pytest.raises(RuntimeError, match="is not that of the CreativeML Open RAIL-M text"):
            legal.license_text()
    finally:
        legal.license_text.cache_clear()


# ----------------------------------------------------------------- point 6: misuse probes never published
def _with_probes(runs: Path, name: str, probes: list[str]) -> Run:
    """A run whose last checkpoint also has misuse-probe images, scored far above everything else (they would top
    every 'best' grid if the card let them in)."""
    run = make_fake_run(runs, name, prompts=["a drawing of {}", "a photo of {}"] + probes)
    rows = run.read_scores()
    for row in rows:
        if row["template"] in probes:
            row["clip_i"], row["clip_t"] = "0.99", "0.99"
    run.write_scores(rows)
    write_fake_scores_meta(run)
    return run


def test_misuse_probe_images_never_appear_in_a_published_figure(tmp_path):
    probes = list(load_categories(MISUSE_FILE))[:2]  # the default probe file (prompts/eval/misuse.txt)
    run = _with_probes(tmp_path / "runs", "probes", probes)
    card = C.build_card(run)
    sets = card.data["success_failure"]["sets"]
    shown = [item["prompt"] for chosen in sets for item in chosen["items"]]
    assert shown and not any(probe.replace("{}", "<tom-cat>") in shown for probe in probes)
    assert "4 misuse-probe image(s) at that step are left out" in C.render(card, "md").decode("utf-8")
    assert card.data["success_failure"]["misuse_probes_left_out"] == 4
    # a probe file of the user's own (`audit --misuse FILE`): the audit's categories count too
    custom = "{} on a lunchbox, product photo"
    run = _with_probes(tmp_path / "runs", "custom", [custom])
    run.write_audit([{"path": row["path"], "step": row["step"], "template": custom, "seed": row["seed"],
                      "category": "merchandise"} for row in run.read_scores() if row["template"] == custom])
    shown = [item["prompt"] for chosen in C.build_card(run).data["success_failure"]["sets"]
             for item in chosen["items"]]
    assert shown and custom.replace("{}", "<tom-cat>") not in shown


# --------------------------------------------------------------- points 5, 9: measured-risk wording
def _audited(run: Run) -> None:
    """audit.json as `audit` writes it, with one misuse category measured on one image."""
    run.write_audit_meta({
        "thresholds": {}, "references": {"files": []}, "complete": True, "pipeline_check": run.is_pipeline_check,
        "copy_rates": [{"step": 20, "n": 1, "k": 0, "rate": 0.0, "lo": 0.0, "hi": 0.0, "exact_hi": 0.95,
                        "copy": {"k": 0, "n": 1, "rate": 0.0, "lo": 0.0, "hi": 0.0},
                        "copy_phash": {"k": 0, "n": 1, "rate": 0.0, "lo": 0.0, "hi": 0.0},
                        "copy_clip": {"k": 0, "n": 1, "rate": 0.0, "lo": 0.0, "hi": 0.0}}],
        "misuse": {"available": True, "method": "share above the likeness level",
                   "by_step_category": [{"step": 20, "category": "merchandise", "k": 1, "n": 1, "rate": 1.0,
                                         "lo": 1.0, "hi": 1.0}]}})


def test_misuse_column_and_copyright_evidence_say_what_they_measure(tmp_path):
    runs = tmp_path / "runs"
    random_run, style = make_fake_run(runs, "r"), make_fake_run(runs, "s", "style")
    style.update_meta(weights=KERASCV_WEIGHTS)  # and a pretrained CLIP: no part of its measurement is random
    write_fake_scores_meta(style, clip={"model": "ViT-B-32", "pretrained": "openai", "source": "open_clip-tag"},
                           pipeline_check=False)
    for run in (random_run, style):
        _audited(run)
    random_md, style_md = _md(random_run), _md(style)
    assert "| CLIP-I above the likeness level (pipeline check: means nothing) |" in random_md
    assert "| style comes through (CLIP-I above the likeness level) |" in style_md
    for text in (random_md, style_md):
        assert "character comes through" not in text
        assert "1/1 = 1.000 (n = 1: too few images for an interval)" in text
        assert "a new pose of a character copies no training image and can still infringe" in text
        evidence = next(line for line in text.splitlines() if line.startswith("| Copyright and trademark |"))
        assert "misuse transfer" in evidence and "near-copies only" in evidence


# ----------------------------------------------------------------------- point 6: the misuse limits
def test_out_of_scope_names_politics_children_impersonation_merchandise_and_the_ai_act(cards):
    for text in (cards["character"], cards["style"]):
        scope = text.split("### Out-of-Scope Use and Misuse", 1)[1].split("## License and Use Restrictions")[0]
        for needed in ("election material", "Content aimed at children", "advertising aimed at minors",
                       "impersonating", "merchandise", "Art. 50 of the AI Act (Regulation (EU) 2024/1689) applies "
                       "from 2 August 2026 (Art. 113"):
            assert needed.lower() in scope.lower(), needed


# --------------------------------------------------------------------- points 7, 8: owner and images
def test_owner_help_gives_no_example_owner_and_restricted_images_get_the_exception_callout(tmp_path):
    template = C.overrides_template()
    assert "Warner" not in template and "Turner" not in template
    assert "official copyright / trademark notice" in template
    run = make_fake_run(tmp_path / "runs", "img")
    rows = run.read_manifest()
    rows[2]["license"] = "All rights reserved"
    run.write_manifest(rows)
    card = C.build_card(run)
    assert card.data["training_data"]["restricted_license_files"] == ["tom_2.png"]
    md = C.render(card, "md").decode("utf-8")
    callout = next(line for line in md.splitlines() if "not under an open licence" in line)
    for needed in ("tom\\_2.png", "17 U.S.C. § 107", "Directive (EU) 2019/790, Art. 3", "Art. 4", "s. 29A",
                   "does not permit redistributing the images"):
        assert needed in callout, needed
    assert "A picture's licence covers that picture only" in md


# ------------------------------------------------------------------ point 9: different prompt sets
def test_checkpoints_scored_on_different_prompt_sets_are_compared_on_the_shared_pairs(tmp_path):
    run = make_fake_run(tmp_path / "runs", "sets", steps=30, checkpoint_every=10)
    rows = run.read_scores()  # steps 0 and 30 with 2 prompts x 2 seeds; add step 10 on one prompt only
    extra = [dict(row, step=10, path=row["path"].replace("step-000000", "step-000010"))
             for row in rows if row["step"] == "0" and row["template"].startswith("a 3D")]
    run.append_images([{**row, "negative_prompt": "", "steps": 3, "guidance": 7.5, "token": "<tom-cat>",
                        "init_image": "", "strength": "", "weights_source": "random", "width": 64, "height": 64,
                        "sampler": "ddim", "seconds": 0.1} for row in extra])
    for row in extra:
        target = run.path / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((run.path / row["path"].replace("step-000010", "step-000000")).read_bytes())
    run.write_scores(rows + extra)
    write_fake_scores_meta(run)
    card = C.build_card(run)
    md = C.render(card, "md").decode("utf-8")
    assert "The checkpoints were scored on different prompt sets (step 0: 4, step 10: 2, step 30: 4 images" in md
    assert "compared on the 2 prompt x seed pairs all of them share" in md
    assert "prompts are followed less" not in md
