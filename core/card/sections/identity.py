"""Is it the subject? (issue 21): one subsection per measure `score` recorded in scores.json - token similarity in
CLIP's text space, zero-shot identity, concept leakage, the memorisation screen (a screen, not a verdict) and the
CustomConcept101 numbers beside their published textual-inversion baseline - each with its provenance."""

from __future__ import annotations

from core.card.document import Bold, Bullets, Callout, Mono, Para, Table
from core.card.formatting import interval, number
from core.card.sections.common import section

NOT_SCORED = "not recorded: rescore the run with this version (`python -m core score RUN --references DIR ...`)"


def _record(facts):
    return facts.scores.record


def provenance_bullets(prov) -> Bullets | None:
    """Encoder, tag or file sha256, preprocessing, prompt variant and library versions of one measure."""
    if not prov:
        return None
    items = [[Bold("Encoder:"), f" {prov.get('encoder')}"]]
    if prov.get("tag") or prov.get("sha256"):
        items.append([Bold("Weights:"), f" {prov.get('tag') or '-'}",
                      *([" (sha256 ", Mono(str(prov["sha256"])), ")"] if prov.get("sha256") else [])])
    items.append([Bold("Preprocessing:"), f" {prov.get('preprocessing')}"])
    items.append([Bold("Prompt variant:"), f" {prov.get('prompt_variant')}"])
    versions = {k: v for k, v in (prov.get("versions") or {}).items() if v != "not installed"}
    if versions:
        items.append([Bold("Libraries:"), " " + ", ".join(f"{k} {v}" for k, v in versions.items())])
    return Bullets(items)


def token_similarity_section(facts):
    rec = _record(facts)
    rows = list(rec.token_similarity) if rec else []
    if not rows:
        note = (rec.token_similarity_provenance.get("note") if rec else None) or NOT_SCORED
        return section("Token Similarity in CLIP's Text Space", 3, Para([f"Token similarity: {note}."]))
    distractors = sorted({k for r in rows for k in r["vs_distractors"]})
    body = [[str(r["step"]), number(r["vs_references"]), interval(*r["vs_references_ci"]), number(r["vs_subject"]),
             number(r["vs_init"]), number(max(r["vs_distractors"].values())) if r["vs_distractors"] else "-"]
            for r in rows]
    return section(
        "Token Similarity in CLIP's Text Space", 3,
        Para(["The learned token put into prompts such as ", Mono("a photo of {}"), ", run through this run's own "
              "text encoder (SD v1's is CLIP ViT-L/14's text transformer) and CLIP ViT-L/14's text projection, "
              "compared by cosine with the reference images, the subject description, the initializer word's prompt "
              f"and {len(distractors)} distractor labels. No image is generated; every checkpoint is measured. "
              "At step 0 the token is the initializer, so its cosine to the initializer prompt is 1."]),
        Table(["step", "vs references (mean)", "95% CI", "vs subject", "vs initializer", "best distractor"], body),
        provenance_bullets(rec.provenance.get("token_similarity")))


def identity_section(facts):
    rec = _record(facts)
    if not rec or not rec.identity:
        note = (rec.identity_labels.get("note") if rec else None) or NOT_SCORED
        return section("Zero-Shot Identity", 3, Para([f"Zero-shot identity: {note}."]))
    labels = rec.identity_labels.get("labels") or []
    body = [[str(r["step"]), str(r["n"]), number(r["rate"]), interval(r["ci_lo"], r["ci_hi"])] for r in rec.identity]
    return section(
        "Zero-Shot Identity", 3,
        Para([f"Share of generated images (leakage prompts excluded) whose best CLIP label among {len(labels)} is the "
              f"subject ({rec.identity_labels.get('subject')!s}); the others are the initializer class and distractors "
              "(other cartoon characters, a real animal, a mouse). 95% CI: percentile bootstrap over images, exact "
              "Clopper-Pearson bound when no image or every image is a hit."]),
        Table(["step", "n", "identity rate", "95% CI"], body),
        Para(["Labels: " + "; ".join(labels)]),
        provenance_bullets(rec.provenance.get("identity")))


def leakage_section(facts):
    rec = _record(facts)
    if not rec or not rec.leakage:
        return section("Concept Leakage", 3, Para(["Concept leakage: no two-subject prompts scored. Generate "
                                                   "prompts/eval/leakage.txt at every checkpoint and rescore."]))
    body = [[str(r["step"]), str(r["n"]), number(r["survival"]), interval(r["ci_lo"], r["ci_hi"]),
             number(r.get("change")), interval(r.get("change_lo"), r.get("change_hi"))] for r in rec.leakage]
    return section(
        "Concept Leakage", 3,
        Para(["Does the token swallow a prompt's other subject? For two-subject prompts (\"a dog sitting next to "
              "{}\"), the share of images where CLIP still prefers the second subject's phrase over the initializer "
              "class, and its change against the same prompts and seeds at step 0 (paired bootstrap 95% CI)."]),
        Table(["step", "n", "survival", "95% CI", "change vs step 0", "95% CI"], body),
        provenance_bullets(rec.provenance.get("leakage")))


def memorisation_section(facts):
    rec = _record(facts)
    rows = [r for r in (rec.memorisation if rec else ()) if r["n"]]
    if not rows:
        return section("Memorisation Screen", 3, Para(["Memorisation screen: no cond_gap recorded (images generated "
                                                       "before this version); regenerate and rescore."]))
    body = [[str(r["step"]), str(r["n"]), number(r["median"]), number(r["p95"]), number(r["max"]),
             number(r.get("flagged")), interval(r.get("ci_lo"), r.get("ci_hi"))] for r in rows]
    return section(
        "Memorisation Screen", 3,
        Callout(["This is a screen, not a verdict: a high value says which images to inspect beside their nearest "
                 "training image (the copy audit), not that an image was memorised."]),
        Para(["During generation the distance between the text-conditional and the unconditional noise prediction, "
              "averaged over the first sampling steps, is recorded per image (Wen et al., ICLR 2024, 'Detecting, "
              "Explaining, and Mitigating Memorization in Diffusion Models'; no extra network call). Flagged: above "
              f"step 0's 95th percentile ({number(rows[0].get('threshold'))})."]),
        Table(["step", "n", "median", "95th percentile", "max", "share flagged", "95% CI"], body),
        provenance_bullets(rec.provenance.get("memorisation")))


def protocol_section(facts):
    rec = _record(facts)
    prot = rec.protocol if rec else None
    if not prot:
        return section("CustomConcept101 Protocol", 3, Para([
            "Protocol-compatible numbers: not computed (`python -m core score RUN --references DIR --clip "
            "ViT-B-32:openai --protocol customconcept101 [--dino FILE]`)."]))
    pub = prot["published_textual_inversion"]
    body = [[f"ours, step {r['step']}", str(r["n"]), number(r["clip_t"], 4), number(r["clip_i"], 4),
             number(r["dino"], 4)] for r in prot["rows"]]
    body.append(["textual inversion, published", "-", number(pub["clip_t"], 4), number(pub["clip_i"], 4),
                 number(pub["dino"], 4)])
    return section(
        "CustomConcept101 Protocol", 3,
        Callout(["Random weights: these protocol numbers check the pipeline and cannot be compared with the "
                 "published ones."]) if facts.pipeline_check else None,
        Para([f"Our images scored as CustomConcept101's evaluate.py does: CLIP-T {prot['formulas']['clip_t']}; "
              f"CLIP-I {prot['formulas']['clip_i']}; DINO {prot['formulas']['dino']}. Published baseline: "
              f"{prot['source']}."]),
        Table(["", "n", "CLIP-T", "CLIP-I", "DINO"], body),
        Para(["What differs: " + "; ".join(prot["differences"]) + "."]),
        provenance_bullets(rec.provenance.get("protocol")))


IDENTITY_SUBSECTIONS = (token_similarity_section, identity_section, leakage_section, memorisation_section,
                        protocol_section)


def identity_measures(facts) -> list:
    """The top-level section and one subsection per measure."""
    intro = Para(["Whether the token means the subject, and what it costs the rest of the prompt, measured by ",
                  Mono("score"), " (scores.json)."])
    warning = Callout(["Random weights: these measures check the pipeline and say nothing about what was "
                       "learned."]) if facts.pipeline_check else None
    return [section("Is It the Subject? Identity, Leakage and Memorisation", 2, warning, intro),
            *[make(facts) for make in IDENTITY_SUBSECTIONS]]
