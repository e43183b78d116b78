"""Tests of core.card: the model card in Markdown (Hugging Face ModelCard), HTML, PDF and JSON, from fixture runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zlib
from html import escape as html_escape
from pathlib import Path

import pytest

from core import card as C
from core.card.facts import comparison_dir
from core.errors import UserError
from core.runfolder import PIPELINE_CHECK_LABEL, Run
from tests.fakerun import make_fake_run, write_fake_scores_meta

SCRIPT = "<script>alert(1)</script>"


# ------------------------------------------------------------------------------------------------ helpers
def _obj_table(pdf: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """{object number: (dictionary bytes, decoded stream or None)}; streams are cut by their /Length."""
    objs, done_to = {}, 0
    for m in re.finditer(rb"(?m)^(\d+) 0 obj\s*", pdf):
        if m.start() < done_to:  # a look-alike inside binary stream data
            continue
        start = m.end()
        s = pdf.find(b"stream", start)
        e = pdf.find(b"endobj", start)
        if s != -1 and s < e:
            head = pdf[start:s]
            length = int(re.search(rb"/Length (\d+)", head).group(1))
            data_start = s + len(b"stream") + (2 if pdf[s + 6:s + 8] == b"\r\n" else 1)
            stream = pdf[data_start:data_start + length]
            if b"/FlateDecode" in head:
                stream = zlib.decompress(stream)
            objs[int(m.group(1))] = (head, stream)
            done_to = data_start + length
        else:
            objs[int(m.group(1))] = (pdf[start:e], None)
    return objs


def _unescape_literal(s: bytes) -> bytes:
    out, i = bytearray(), 0
    esc = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
    while i < len(s):
        c = s[i:i + 1]
        if c == b"\\":
            nxt = s[i + 1:i + 2]
            if nxt in esc:
                out += esc[nxt]
                i += 2
            elif nxt.isdigit():
                m = re.match(rb"[0-7]{1,3}", s[i + 1:i + 4])
                out.append(int(m.group(0), 8) & 0xFF)
                i += 1 + len(m.group(0))
            elif nxt in (b"\r", b"\n"):
                i += 2
            else:
                out += nxt
                i += 2
        else:
            out += c
            i += 1
    return bytes(out)


def pdf_text(pdf: bytes) -> str:
    """A tiny text extractor for fpdf2 output (core fonts and embedded TrueType subsets with ToUnicode maps), so the
    test needs no PDF library. Text runs are joined with spaces, whitespace normalised."""
    objs = _obj_table(pdf)
    cmaps: dict[int, dict[int, str]] = {}
    for num, (head, _) in objs.items():
        if b"/Type /Font" in head:
            m = re.search(rb"/ToUnicode (\d+) 0 R", head)
            if m:
                cm = objs[int(m.group(1))][1] or b""
                table = {}
                for block in re.findall(rb"beginbfchar(.*?)endbfchar", cm, re.S):
                    for a, b in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                        table[int(a, 16)] = bytes.fromhex(b.decode()).decode("utf-16-be")
                for block in re.findall(rb"beginbfrange(.*?)endbfrange", cm, re.S):
                    for a, b, d in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                        start = int(d, 16)
                        for k, code in enumerate(range(int(a, 16), int(b, 16) + 1)):
                            table[code] = chr(start + k)
                cmaps[num] = table
    names: dict[bytes, int] = {}
    for head, _ in objs.values():
        for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", head):
            names[name] = int(ref)
    runs: list[str] = []
    lit = rb"\(((?:\\.|[^\\)])*)\)"
    token_re = re.compile(rb"/(F\d+)\s+[\d.]+\s+Tf|" + lit + rb"\s*Tj|<([0-9A-Fa-f]*)>\s*Tj|\[(.*?)\]\s*TJ", re.S)
    for head, stream in objs.values():
        if stream is None or b"BT" not in stream:
            continue
        cmap = None
        for m in token_re.finditer(stream):
            if m.group(1):
                cmap = cmaps.get(names.get(m.group(1), -1))
                continue
            if m.group(4) is not None:  # [(..) -132 (..)] TJ: justified text, numbers are spacing
                raw = b"".join(_unescape_literal(x) for x in re.findall(lit, m.group(4), re.S))
            elif m.group(2) is not None:
                raw = _unescape_literal(m.group(2))
            else:
                raw = bytes.fromhex(m.group(3).decode())
            if cmap is not None:
                runs.append("".join(cmap.get(int.from_bytes(raw[i:i + 2], "big"), "?")
                                    for i in range(0, len(raw) - 1, 2)))
            else:
                runs.append(raw.decode("latin-1"))
    return " ".join(" ".join(runs).split())


def _fake(tmp_path: Path, name: str = "fake-object", **kw) -> Run:
    return make_fake_run(tmp_path / "runs", name, **kw)


def _make_real(run: Run) -> None:
    """Pretend the run used published weights and a real CLIP (the fixture numbers are still fabricated)."""
    run.update_meta(weights={"source": "kerascv", "files": {"diffusion_model.h5": "ab" * 32}, "verified": True})
    rows = run.read_scores()
    for r in rows:
        r["clip_weights"] = "openai"
    run.write_scores(rows)
    write_fake_scores_meta(run, clip={"model": "ViT-B-32", "pretrained": "openai", "source": "open_clip-tag"},
                           pipeline_check=False)


def _body_after_front_matter(md: str) -> str:
    assert md.startswith("---\n")
    return md.split("\n---\n", 1)[1]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One random-weight fixture run and its card in all formats, shared by the read-only tests below."""
    tmp = tmp_path_factory.mktemp("card")
    run = _fake(tmp)
    paths = C.write_card(run, tmp / "out")
    return run, paths


# -------------------------------------------------------------------------------------------------- tests
def test_writes_all_formats_and_figures(written):
    run, paths = written
    assert set(paths) == set(C.FORMATS)
    for fmt, p in paths.items():
        assert p.name == C.FILE_NAMES[fmt] and p.stat().st_size > 0
    figs = sorted(p.name for p in (paths["md"].parent / C.IMAGES_SUBDIR).iterdir())
    assert figs == ["best-clipi.png", "best-clipt.png", "worst-clipi.png", "worst-clipt.png"]
    md = paths["md"].read_text(encoding="utf-8")
    for f in figs:
        assert f"]({C.IMAGES_SUBDIR}/{f})" in md


def test_markdown_loads_with_huggingface_modelcard_and_metadata_round_trips(written):
    from huggingface_hub import ModelCard

    run, paths = written
    card = ModelCard.load(paths["md"])
    built = C.build_card(run)
    assert card.data.to_dict() == built.metadata
    meta = card.data.to_dict()
    assert meta["license"] == "creativeml-openrail-m"
    assert "base_model" not in meta  # random weights: no base-model claim (issue 22, point 3)
    assert meta["library_name"] == "keras-cv"
    assert meta["license_link"] == C.LICENSE_URL
    for tag in ("textual_inversion", "stable-diffusion", "<tom-cat>", "pipeline-check"):
        assert tag in meta["tags"]
    assert meta["pipeline_check"] is True and meta["weights_source"] == "random"
    # a random-weight card puts no numbers in the metadata
    assert "model-index" not in meta and "clip_scores" not in meta
    # and the saved file is exactly what ModelCard writes back
    assert str(card) == paths["md"].read_text(encoding="utf-8")


def test_required_sections_present_in_every_format(written):
    run, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    headings = re.findall(r"^#{2,4} (.+)$", md, re.M)
    html = paths["html"].read_text(encoding="utf-8")
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    text = pdf_text(paths["pdf"].read_bytes())
    for title in C.REQUIRED_SECTIONS:
        esc = C.md_escape(title)
        assert esc in headings, f"markdown lacks section {title!r}"
        assert re.search(rf"<h[234] id=\"[a-z0-9-]+\">{re.escape(title.replace('&', '&amp;'))}</h[234]>", html), title
        assert title in [s["title"] for s in doc["sections"]], title
        assert title in text, f"PDF text lacks {title!r}"
    # order follows the Hugging Face template
    order = [headings.index(C.md_escape(t)) for t in ("Model Details", "Uses", "Bias, Risks, and Limitations",
                                                      "How to Get Started with the Model", "Training Details",
                                                      "Evaluation", "Environmental Impact", "Citation")]
    assert order == sorted(order)


def test_pdf_opens_with_tables_and_grid_images(written):
    run, paths = written
    pdf = paths["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    objs = _obj_table(pdf)
    n_images = sum(1 for head, _ in objs.values() if b"/Subtype /Image" in head)
    assert n_images >= 4  # the four success/failure grids
    text = pdf_text(pdf)
    assert "CLIP-I 95% CI" in text  # the CLIP table
    assert "tom_0.png" in text       # the training-image licence table
    # cross-check the tiny extractor with poppler (`make browser` installs poppler-utils; required under CI)
    assert shutil.which("pdftotext") or not os.environ.get("CI"), "pdftotext missing: run `make browser`"
    if shutil.which("pdftotext"):
        out = subprocess.run(["pdftotext", "-layout", str(paths["pdf"]), "-"], capture_output=True, check=True,
                             text=True).stdout
        for title in ("Model Details", "Environmental Impact", "Ethics Checklist", "CLIP-I 95% CI"):
            assert title in out


def test_script_in_prompt_and_user_strings_is_escaped(tmp_path):
    run = _fake(tmp_path, prompts=[f"{SCRIPT} {{}}", "a photo of {} <img src=x onerror=alert(2)>"])
    rows = run.read_manifest()
    rows[1]["file"] = '"><img src=x onerror=alert(3)>.png'
    rows[1]["source"] = "[click](javascript:alert(4))"
    run.write_manifest(rows)
    run.card_overrides_path.write_text(
        "notes: \"<iframe src=javascript:alert(5)></iframe> **bold** [x](javascript:alert(6))\"\n"
        "owner: \"<b>Owner</b> & Co\"\n", encoding="utf-8")
    card = C.build_card(run)
    html = C.render(card, "html").decode("utf-8")
    low = html.lower()
    for bad in ("<script", "<img src=x", "<iframe", "javascript:alert(4)\"", "href=\"javascript", "<b>owner"):
        assert bad not in low, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;Owner&lt;/b&gt; &amp; Co" in html
    assert "&lt;tom-cat&gt;" in html
    # the Markdown also renders safely: convert it as a Markdown renderer would
    import markdown

    md = C.render(card, "md").decode("utf-8")
    assert SCRIPT not in md
    rendered = markdown.markdown(_body_after_front_matter(md), extensions=["tables", "fenced_code"]).lower()
    for bad in ("<script", "<img src=x", "<iframe", "href=\"javascript", "<b>owner"):
        assert bad not in rendered, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    # the prompt still reads correctly in the PDF and JSON
    assert SCRIPT in pdf_text(C.render(card, "pdf"))
    assert any(SCRIPT in it["prompt"] for s in json.loads(C.render(card, "json"))["success_failure"]["sets"]
               for it in s["items"])


def test_random_weight_card_is_labelled_at_the_top_and_claims_nothing(written):
    run, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    body = _body_after_front_matter(md).lstrip()
    assert body.splitlines()[0] == f"> **{C.md_escape(PIPELINE_CHECK_LABEL)}**"
    html = paths["html"].read_text(encoding="utf-8")
    assert html.index(PIPELINE_CHECK_LABEL) < html.index("<h1>")
    assert pdf_text(paths["pdf"].read_bytes()).startswith(PIPELINE_CHECK_LABEL.split(":")[0])
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["pipeline_check"] is True and doc["pipeline_check_label"] == PIPELINE_CHECK_LABEL
    results = next(s for s in doc["sections"] if s["title"] == "Results")
    assert "from random weights and only check the pipeline" in json.dumps(results)
    summary = next(s for s in doc["sections"] if s["title"] == "Summary")
    assert "no claim about quality" in json.dumps(summary)


def test_real_weight_card_has_no_label_and_reports_metrics(tmp_path):
    run = _fake(tmp_path)
    _make_real(run)
    card = C.build_card(run)
    md = C.render(card, "md").decode("utf-8")
    assert PIPELINE_CHECK_LABEL not in md and not card.pipeline_check
    meta = card.metadata
    assert "pipeline-check" not in meta["tags"] and meta["base_model"] == "CompVis/stable-diffusion-v1-4"
    names = [m["type"] for r in meta["model-index"][0]["results"] for m in r["metrics"]]
    assert names == ["clip_i", "clip_t"]
    step = max(int(r["step"]) for r in run.read_scores())
    vals = [float(r["clip_i"]) for r in run.read_scores() if int(r["step"]) == step]
    assert meta["clip_scores"]["clip_i"] == pytest.approx(sum(vals) / len(vals), abs=1e-4)
    assert "At step 20: mean CLIP-I" in md
    # provenance is stated in the card and the JSON
    doc = json.loads(C.render(card, "json"))
    assert doc["weights"]["source"] == "kerascv" and doc["weights"]["verified"] is True
    assert "diffusion\\_model.h5" in md and "ab" * 32 in md


def test_random_clip_scorer_alone_also_blocks_quality_claims(tmp_path):
    run = _fake(tmp_path)
    run.update_meta(weights={"source": "kerascv", "files": {}, "verified": True})  # SD real, CLIP still random
    card = C.build_card(run)
    assert not card.pipeline_check
    assert "model-index" not in card.metadata and "clip_scores" not in card.metadata
    assert "CLIP scorer had random weights" in C.render(card, "md").decode("utf-8")


def test_license_use_restrictions_carried_in_full(written):
    run, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    html = paths["html"].read_text(encoding="utf-8")
    text = pdf_text(paths["pdf"].read_bytes())
    assert len(C.LICENSE_USE_RESTRICTIONS) == 11
    assert C.LICENSE_URL in md and f'href="{C.LICENSE_URL}"' in html
    for r in C.LICENSE_USE_RESTRICTIONS:
        assert f"- {C.md_escape(r)}" in md
        assert f"<li>{html_escape(r)}</li>" in html
        assert r in text
    assert "You agree not to use the Model or Derivatives of the Model:" in md


def test_unknown_licence_warning_lists_exactly_those_files(written):
    run, paths = written
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["training_data"]["unknown_license_files"] == ["tom_0.png"]
    warning = next(w for w in doc["warnings"] if w.startswith("Training images with unknown licence"))
    assert "tom_0.png" in warning and "tom_1.png" not in warning and "tom_2.png" not in warning
    md = paths["md"].read_text(encoding="utf-8")
    assert "> **Warning:** Unknown licence: tom\\_0.png." in md
    assert "| tom\\_0.png | UNKNOWN |" in md


def test_owner_is_never_guessed(written):
    run, paths = written
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["owner"] == C.OWNER_NOT_STATED == "not stated - fill in"
    assert any("owner" in w and "not stated" in w for w in doc["warnings"])
    md = paths["md"].read_text(encoding="utf-8")
    assert "Warner" not in md
    assert "character_owner: not stated - fill in" in md


def test_overrides_are_merged(tmp_path):
    run = _fake(tmp_path)
    run.card_overrides_path.write_text(
        "owner: Warner Bros. Entertainment Inc.\n"
        "subject: Tom, the cat from Tom and Jerry\n"
        "intended_use: Fan-art experiments for a course on textual inversion.\n"
        "environment: {carbon_intensity_g_per_kwh: 100, region: FR}\n"
        "ethics:\n"
        "  bias: {status: addressed, notes: checked grids for stereotypes}\n"
        "  misuse: not-applicable\n", encoding="utf-8")
    card = C.build_card(run)
    md = C.render(card, "md").decode("utf-8")
    assert "Warner Bros. Entertainment Inc." in md and "character_owner: Warner Bros. Entertainment Inc." in md
    assert "Fan-art experiments for a course on textual inversion." in md
    assert "| Bias | addressed | checked grids for stereotypes |" in md
    assert "| Misuse | not-applicable | - |" in md
    assert "| Consent of the people or works depicted | open | - |" in md
    assert not any("owner" in w and "not stated" in w for w in card.warnings)
    assert card.data["environment"]["carbon_intensity_g_per_kwh"] == 100.0
    assert card.data["environment"]["region"] == "FR"
    # JSON overrides file works as well (JSON is YAML)
    run.card_overrides_path.write_text(json.dumps({"owner": "Someone"}), encoding="utf-8")
    assert C.build_card(run).data["owner"] == "Someone"


@pytest.mark.parametrize("text, must_name", [
    ("ownr: Warner\n", ["'ownr'", "owner", "intended_use", "ethics"]),
    ("ethics:\n  bias: {status: maybe}\n", ["ethics.bias.status", "'maybe'", "open, addressed, not-applicable"]),
    ("ethics:\n  copyright: {status: open}\n", ["'ethics.copyright'", "copyright_and_trademark"]),
    ("ethics:\n  bias: {status: open, note: x}\n", ["'ethics.bias.note'", "status, notes"]),
    ("environment: {watts: 3}\n", ["'environment.watts'", "power_watts"]),
    ("environment: {pue: 0.5}\n", ["environment.pue", ">= 1.0"]),
    ("owner: [a, b]\n", ["owner", "expected text"]),
    ("repo: javascript:alert(1)\n", ["repo", "https://"]),
    ("- just a list\n", ["must be a mapping"]),
    ("owner: [unclosed\n", ["not valid YAML"]),
])
def test_bad_overrides_are_rejected_naming_key_and_allowed_values(tmp_path, text, must_name):
    run = _fake(tmp_path)
    run.card_overrides_path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as e:
        C.build_card(run)
    msg = str(e.value)
    assert "card.yaml" in msg
    for part in must_name:
        assert part in msg, (part, msg)


def test_overrides_template_is_valid_and_complete(tmp_path):
    import yaml

    run = _fake(tmp_path)
    data = yaml.safe_load(C.overrides_template(run))
    assert set(data) == set(C.OVERRIDE_KEYS)
    assert set(data["ethics"]) == set(C.ETHICS_ITEMS)
    assert C.validate_overrides(data)["ethics"]["bias"]["status"] == "open"
    assert C.validate_overrides(data).get("owner") is None  # empty owner stays "not stated"


def test_environmental_estimate_from_run_timings_and_hardware(tmp_path):
    run = _fake(tmp_path)
    run.update_meta(timings={"seconds_total": 3600.0, "steps_done": 20},
                    hardware={"platform": "Linux-x86_64", "devices": ["CPU", "GPU:0 NVIDIA H100 80GB HBM3"]})
    env = C.build_card(run).data["environment"]
    assert env["power_watts"] == 700.0  # the GPU counts, the CPU does not
    gen = sum(float(r["seconds"]) for r in run.read_images())  # generation time counts too
    assert gen > 0 and env["generation_seconds"] == pytest.approx(gen)
    assert env["energy_kwh"] == pytest.approx(0.7 * (3600.0 + gen) / 3600.0)
    assert env["co2eq_g"] == pytest.approx(0.7 * (3600.0 + gen) / 3600.0 * C.DEFAULT_CARBON_G_PER_KWH)
    md = C.render(run, "md").decode("utf-8")
    assert "Estimate, not a measurement" in md and "Lacoste et al. (2019)" in md
    assert f"{env['co2eq_g']:.2f} g CO2eq" in md and env["co2eq_g"] > 332.5
    # what train.py records under TensorFlow: device types without the model name -> the generic assumption
    run.update_meta(hardware={"platform": "Linux", "devices": ["CPU:physical_device:CPU:0",
                                                              "GPU:physical_device:GPU:0"]})
    env = C.build_card(run).data["environment"]
    assert env["power_watts"] == C.DEFAULT_GPU_W
    assert "model not recorded" in env["devices_counted"][0]["basis"]
    run.update_meta(hardware={"platform": "Linux", "devices": ["TFRT_CPU_0"]})
    assert C.build_card(run).data["environment"]["power_watts"] == C.DEFAULT_CPU_W
    run.card_overrides_path.write_text("environment: {power_watts: 350, pue: 1.5}\n", encoding="utf-8")
    env = C.build_card(run).data["environment"]
    assert env["co2eq_g"] == pytest.approx(0.35 * (3600.0 + gen) / 3600.0 * 1.5 * C.DEFAULT_CARBON_G_PER_KWH)


def test_token_movement_from_embeddings_and_neighbors(tmp_path):
    import numpy as np

    run = _fake(tmp_path)
    card = C.build_card(run)
    mv = card.data["embedding_movement"]
    steps = run.embedding_steps()
    first, last = run.load_embedding(steps[0])["<tom-cat>"], run.load_embedding(steps[-1])["<tom-cat>"]
    row = [r for r in mv["rows"] if r["step"] == steps[-1]][0]
    assert row["l2_from_init"] == pytest.approx(float(np.linalg.norm(last - first)), rel=1e-5)
    assert [r["l2_from_init"] for r in mv["rows"] if r["step"] == 0] == [0.0]
    assert set(mv["neighbors"]) == {"0", str(steps[-1])}
    assert "kitten&lt;/w&gt;" in C.render(card, "html").decode("utf-8")


def test_no_scores_falls_back_to_instructions(tmp_path):
    run = _fake(tmp_path, with_scores=False)
    card = C.build_card(run)
    md = C.render(card, "md").decode("utf-8")
    assert "no scores yet: run \\`python -m core score" in md or "no scores yet: run `python -m core score" in md
    assert card.figures == {}
    for fmt in C.FORMATS:
        assert C.render(card, fmt)


def test_render_matches_written_files_byte_for_byte(written):
    """The dashboard's download buttons (render) give the same files as the CLI (write_card)."""
    run, paths = written
    for fmt, p in paths.items():
        assert C.render(run, fmt) == p.read_bytes(), fmt


def test_pdf_without_unicode_fonts_transliterates(tmp_path, monkeypatch):
    assert C.latin1_safe("Tom’s “cat” 東 café") == "Tom's \"cat\" ? café"
    run = _fake(tmp_path, prompts=["a drawing of {} 東京"])
    monkeypatch.setattr("core.card.render_pdf.find_unicode_fonts", lambda: None)
    pdf = C.render(run, "pdf")
    text = pdf_text(pdf)
    assert "Model Details" in text and "a drawing of <tom-cat> ??" in text


def test_pdf_keeps_unicode_with_dejavu(tmp_path):
    if C.find_unicode_fonts() is None:
        pytest.skip("DejaVu fonts not installed (fonts-dejavu-core)")
    run = _fake(tmp_path, prompts=["a drawing of {} in the café 東京"])
    assert "a drawing of <tom-cat> in the café ??" in pdf_text(C.render(run, "pdf"))


def _write_comparison(a: Run, b: Run, n_boot: int = 200) -> Path:
    """What `python -m core compare A B --out RUNS_DIR/reports/A-vs-B` writes."""
    from core.compare import compare_runs

    folder = comparison_dir(a, b)
    compare_runs(a, b, n_boot=n_boot).write(folder)
    return folder


@pytest.mark.slow
def test_comparison_section_with_compare_run(fake_runs):
    a, b = Run(fake_runs / "fake-object"), Run(fake_runs / "fake-style")
    _write_comparison(a, b)
    card = C.build_card(b, compare_run=a)  # card of the style run: the character run still comes first
    cmp = card.data["comparison"]
    assert cmp["available"] and cmp["run_a"] == "fake-object" and cmp["run_b"] == "fake-style"
    assert cmp["table"]
    md = C.render(card, "md").decode("utf-8")
    assert "Character versus style: fake-object (object) against fake-style (style)." in md
    alone = C.render(C.build_card(a), "md").decode("utf-8")
    assert "no second run given" in alone


def test_cli_writes_requested_formats_and_rejects_bad_ones(tmp_path, capsys):
    from core.__main__ import main

    run = _fake(tmp_path)
    out = tmp_path / "reports" / "x"
    assert main(["card", str(run.path), "--format", "md,json", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["LICENSE", "README.md", "card.json", "images"]
    assert main(["card", str(run.path), "--format", "md,docx", "--out", str(out)]) == 2
    assert "'docx'" in capsys.readouterr().err
    assert main(["card", str(tmp_path / "nope")]) == 2
    assert main(["card", str(run.path), "--init-overrides"]) == 0
    assert run.card_overrides_path.exists()
    assert main(["card", str(run.path), "--init-overrides"]) == 2  # never overwrites
    assert main(["card", str(run.path), "--out", str(out)]) == 0  # the untouched template is valid


def test_run_without_initializer_checkpoint_says_movement_is_not_measurable(tmp_path):
    run = _fake(tmp_path)
    run.embedding_path(0).unlink()  # like an imported embedding: no step-0 initializer saved
    card = C.build_card(run)
    assert card.data["embedding_movement"]["rows"] == []
    assert "cannot be measured" in card.data["embedding_movement"]["error"]
    assert "how far the token moved cannot be measured" in C.render(card, "md").decode("utf-8")


@pytest.mark.slow
def test_rebuild_removes_stale_figures_and_json_is_strict(fake_runs, tmp_path):
    a, b = Run(fake_runs / "fake-object"), Run(fake_runs / "fake-style")
    _write_comparison(a, b)
    out = tmp_path / "out"
    C.write_card(a, out, compare_run=b)
    assert (out / C.IMAGES_SUBDIR / "comparison-plane.png").exists()
    C.write_card(a, out)  # rebuilt without --compare: its plane must not linger beside the new card
    assert not (out / C.IMAGES_SUBDIR / "comparison-plane.png").exists()
    assert (out / C.IMAGES_SUBDIR / "best-clipi.png").exists()

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    json.loads((out / "card.json").read_text(encoding="utf-8"), parse_constant=no_constants)


def test_card_does_not_depend_on_how_the_run_path_is_spelled(tmp_path, monkeypatch):
    """The CLI (relative path) and the dashboard (absolute path) must produce the same bytes, and no local path
    may leak into a card meant for publishing."""
    run = _fake(tmp_path)
    monkeypatch.chdir(tmp_path)
    rel = Run(Path("runs") / run.name)
    for fmt in ("md", "html", "json"):
        a, b = C.render(run, fmt), C.render(rel, fmt)
        assert a == b, fmt
        assert str(tmp_path).encode() not in a, fmt


def test_bare_run_gives_a_card_and_a_run_without_token_a_clear_error(tmp_path):
    """A run that has nothing but its run.json (no dataset.csv, embeddings, images or scores) still gives a card;
    a run.json without its token is refused naming the key (run.json is validated by Run.record)."""
    full = _fake(tmp_path, "full")
    meta = json.loads(full.meta_path.read_text(encoding="utf-8"))
    bare = Run(tmp_path / "runs" / "bare")
    bare.path.mkdir()
    bare.meta_path.write_text(json.dumps({**meta, "name": "bare", "final_step": None}), encoding="utf-8")
    card = C.build_card(bare)
    assert any("No training-image manifest" in w for w in card.warnings)
    for fmt in C.FORMATS:
        assert C.render(card, fmt)
    no_token = Run(tmp_path / "runs" / "no-token")
    no_token.path.mkdir()
    no_token.meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "token"}), encoding="utf-8")
    with pytest.raises(UserError, match="run.json: key 'token' is missing"):
        C.build_card(no_token)


def test_energy_text_names_exactly_the_stages_the_number_includes(tmp_path):
    run = _fake(tmp_path)
    run.update_meta(timings={"seconds_total": 3600.0, "steps_done": 20})
    card = C.build_card(run)
    env = card.data["environment"]
    gen = sum(float(r["seconds"]) for r in run.read_images())
    assert env["seconds"] == pytest.approx(3600.0 + gen)
    assert env["included"] == ["training", "image generation"]
    md = C.render(card, "md").decode("utf-8")
    assert "recorded time (training, image generation)" in md
    not_included = next(line for line in md.splitlines() if line.startswith("Not included:"))
    assert "image generation" not in not_included and "training (" not in not_included
    assert "CLIP scoring (its time is not recorded)" in not_included


def test_html_page_wraps_exactly_the_fragment_the_dashboard_embeds(written):
    run, paths = written
    card = C.build_card(run)
    fragment = C.fragment(card)
    page = paths["html"].read_text(encoding="utf-8")
    assert fragment in page
    style = re.search(r"<style>(.*?)</style>", fragment, re.S).group(1)
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{", style) for s in rule.split(",")]
    assert selectors and all(s.startswith(".tomcat-card") for s in selectors), selectors


def test_card_package_has_no_long_functions():
    """One function per section and small renderers: none over ~80 lines."""
    import ast

    root = Path(C.__file__).parent
    too_long = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno > 80:
                too_long.append(f"{path.name}:{node.name}")
    assert not too_long


# ----------------------------------------------------------------------- read what score and compare wrote
def test_card_prints_exactly_the_intervals_in_scores_json(tmp_path):
    """The card shows the summaries `score` wrote (with its --n-boot), never a recomputation with the default."""
    from core.score import summarize_by_step

    run = _fake(tmp_path)
    meta = run.read_scores_meta()
    for row in meta["summaries"]["by_step"]:  # intervals no bootstrap of these rows would give
        row["clip_i_lo"], row["clip_i_hi"] = row["clip_i_mean"] - 0.1234, row["clip_i_mean"] + 0.2345
        row["clip_t_lo"], row["clip_t_hi"] = row["clip_t_mean"] - 0.0111, row["clip_t_mean"] + 0.0222
    meta["config"]["n_boot"] = 500
    run.write_scores_meta(meta)
    card = C.build_card(run)
    html = C.render(card, "html").decode("utf-8")
    recomputed = summarize_by_step(run.read_scores()).to_dict("records")
    for row, again in zip(meta["summaries"]["by_step"], recomputed):
        for m in ("clip_i", "clip_t"):
            shown = f"<td>[{row[f'{m}_lo']:.3f}, {row[f'{m}_hi']:.3f}]</td>"
            assert shown in html
            assert f"<td>[{again[f'{m}_lo']:.3f}, {again[f'{m}_hi']:.3f}]</td>" != shown
    assert "percentile-bootstrap 95% confidence interval with 500 resamples, as `score --n-boot` set them" in html
    assert card.data["score_summaries"]["by_step"] == meta["summaries"]["by_step"]


@pytest.mark.parametrize("damage, message", [
    ("unscored image", "scores are incomplete (7 of 8 images in images.csv scored)"),
    ("scoring running", "scoring is not complete"),
    ("no summaries", "key 'summaries.by_step' is missing"),
    ("summaries of other rows", "its summaries cover 8 image(s) but scores.csv has 7"),
])
def test_card_refuses_incomplete_or_inconsistent_scores_naming_the_command(tmp_path, damage, message):
    run = _fake(tmp_path)
    meta = run.read_scores_meta()
    if damage == "unscored image":
        run.write_scores(run.read_scores()[1:])
        write_fake_scores_meta(run)
    elif damage == "scoring running":
        run.write_scores_meta({**meta, "complete": False})
    elif damage == "no summaries":
        run.write_scores_meta({k: v for k, v in meta.items() if k != "summaries"})
    else:
        rows = run.read_scores()
        run.write_scores(rows[1:])
        rows_images = [r for r in run.read_images() if r["path"] != rows[0]["path"]]
        run.images_index_path.unlink()
        run.append_images(rows_images)
        run.write_scores_meta({**meta, "inputs": run.scores_inputs()})  # not stale: the summaries themselves lie
    with pytest.raises(UserError) as e:
        C.build_card(run)
    assert message in str(e.value)
    if damage != "no summaries":  # a damaged scores.json is named by its reader (restore or rescore)
        assert f"python -m core score {run.path} --references DIR" in str(e.value)


def test_card_refuses_while_a_writer_holds_the_run(tmp_path):
    import os
    import subprocess
    import sys
    import time

    run = _fake(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from core.runfolder import Run\n"
        f"with Run({str(run.path)!r}).writer('score'):\n"
        "    print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONPATH": "."})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=r"pid \d+ \(score\) is writing this run; make the card when it has"):
            C.build_card(run)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert C.build_card(run).run_name == run.name  # the lock died with its process


def test_compare_card_reads_the_comparison_folder_and_refuses_missing_or_stale(fake_runs):
    a, b = Run(fake_runs / "fake-object"), Run(fake_runs / "fake-style")
    with pytest.raises(UserError) as e:
        C.build_card(a, compare_run=b)
    assert f"python -m core compare {a.path} {b.path} --out {comparison_dir(a, b)}" in str(e.value)
    folder = _write_comparison(a, b)
    import pandas as pd

    saved = pd.read_csv(folder / "compare.csv")
    saved.loc[0, "diff_lo"], saved.loc[0, "diff_hi"] = -0.4321, 0.5432  # what compare wrote is what the card says
    saved.to_csv(folder / "compare.csv", index=False)
    card = C.build_card(b, compare_run=a)
    assert card.data["comparison"]["table"][0]["diff_lo"] == -0.4321
    assert "<td>[-0.432, 0.543]</td>" in C.render(card, "html").decode("utf-8")
    assert card.figures["comparison-plane.png"] == (folder / "plane.png").read_bytes()
    rows = a.read_scores()  # a rescored run: the saved comparison no longer matches
    rows[0]["clip_i"] = str(float(rows[0]["clip_i"]) + 0.05)
    a.write_scores(rows)
    write_fake_scores_meta(a)
    with pytest.raises(UserError, match=r"stale: .*scores.csv changed since .* `python -m core compare .*fake-object "
                                        r".*fake-style"):
        C.build_card(a, compare_run=b)


def _download_callables(monkeypatch) -> dict:
    """file id -> the callable a download button registered (streamlit runs it when the button is clicked)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    captured: dict = {}
    original = MediaFileManager.add_deferred

    def spy(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        captured[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    return captured


@pytest.mark.slow
def test_cli_dashboard_page_and_export_buttons_give_identical_files_from_score_n_boot_500(
        tmp_path, clip_scorer, monkeypatch):
    """Done-when of issue 11: `score --n-boot 500` and `compare --n-boot 500` write their numbers once; `card`, the
    model-card page and its export buttons all give the same bytes, built from exactly those numbers."""
    import io
    import zipfile

    import pandas as pd

    from core.__main__ import main
    from core.compare import compare_runs
    from core.score import ScoreConfig, score_run, summarize_by_step
    from tests.fakerun import draw_image
    from tests.test_dashboard import open_page

    runs, refs = tmp_path / "runs", tmp_path / "refs"
    refs.mkdir()
    for i in range(3):
        draw_image(700 + i, 64).save(refs / f"ref_{i}.png")
    a = make_fake_run(runs, "tom-object", "object", with_scores=False)
    b = make_fake_run(runs, "tom-style", "style", with_scores=False)
    for run in (a, b):
        score_run(run, ScoreConfig(references=refs, n_boot=500), scorer=clip_scorer, progress=False, log=lambda m: None)
    folder = comparison_dir(a, b)
    compare_runs(a, b, n_boot=500).write(folder)

    out = tmp_path / "cli"
    assert main(["card", str(a.path), "--compare", str(b.path), "--out", str(out)]) == 0

    buttons = _download_callables(monkeypatch)
    at = open_page(runs, "views/model_card.py")
    assert not at.exception and not at.error, [str(e.value) for e in at.error]
    assert at.selectbox(key="card_run").value == "tom-object"
    assert at.selectbox(key="card_cmp_tom-object").value == "tom-style"  # the pair `compare` wrote is preselected
    exports = {el.proto.label: buttons[el.proto.deferred_file_id]() for el in at.get("download_button")}
    for fmt in C.FORMATS:
        assert exports[f"Download {fmt.upper()}"] == (out / C.FILE_NAMES[fmt]).read_bytes(), fmt
    with zipfile.ZipFile(io.BytesIO(exports["Download all (zip)"])) as z:
        for name in z.namelist():
            assert z.read(name) == (out / name).read_bytes(), name
    card_html = (out / "card.html").read_text(encoding="utf-8")
    (shown,) = [el.proto.body for el in at.get("html")]
    assert shown in card_html and shown.startswith("<style>.tomcat-card")  # the page embeds card.html's fragment

    # built from the numbers score and compare wrote (--n-boot 500), not recomputed with the default
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    scores_meta = a.read_scores_meta()
    assert scores_meta["config"]["n_boot"] == 500
    assert card["score_summaries"]["by_step"] == scores_meta["summaries"]["by_step"]
    assert card["score_summaries"]["by_step"] != summarize_by_step(a.read_scores()).to_dict("records")
    for row in scores_meta["summaries"]["by_step"]:
        assert f"<td>[{row['clip_i_lo']:.3f}, {row['clip_i_hi']:.3f}]</td>" in card_html
    saved = pd.read_csv(folder / "compare.csv")
    assert [r["diff_lo"] for r in card["comparison"]["table"]] == pytest.approx(list(saved["diff_lo"]), nan_ok=True)
    assert card["comparison"]["n_boot"] == 500 and "with 500 resamples" in card_html
