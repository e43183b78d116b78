"""The card's opening sections: Model Details, Uses, and License and Use Restrictions."""

from __future__ import annotations

from core.card import texts
from core.card.document import Bold, Bullets, Callout, Link, Mono, Para, Table
from core.card.overrides import OWNER_NOT_STATED
from core.card.sections.common import concept, section
from core.runfolder import PIPELINE_CHECK_LABEL, WeightsProvenance


def weights_sentence(weights: WeightsProvenance) -> str:
    source, files = weights.source, weights.files
    if source == "random":
        return "random initialisation (pipeline check, not Stable Diffusion's trained weights)"
    if source == "kerascv":
        return f"KerasCV's published Stable Diffusion v1.4 weights ({len(files)} file(s) with sha256 recorded)"
    if source == "local":
        return f"local weight files ({len(files)} file(s) with sha256 recorded)"
    return "unknown provenance: treat as a pipeline check"


def card_summary(facts) -> str:
    """The one-paragraph description of the embedding (Model Description)."""
    subject = f" It stands for: {facts.subject}." if facts.subject else ""
    return (f"A textual-inversion embedding that teaches {texts.BASE_MODEL} (KerasCV) the new token {facts.token}, "
            f"learned as a {concept(facts)} from {len(facts.training_data.rows)} training image(s), starting from "
            f"the word {facts.run.initializer!r}.{subject}")


def model_details(facts) -> list:
    run, overrides = facts.run, facts.overrides
    represents = [facts.subject] if facts.subject else ["not stated (set ", Mono("subject"), " in ",
                                                        Mono("card.yaml"), ")"]
    details = Bullets([
        [Bold("Developed by:"), " ", overrides.get("developers", "not stated")],
        [Bold("Model type:"), f" textual-inversion embedding ({run.n_vectors} vector(s) of 768 dimensions) "
                              "for the CLIP ViT-L/14 text encoder of Stable Diffusion v1"],
        [Bold("Token:"), " ", Mono(facts.token), f" (initialised from {run.initializer!r}; learns a {concept(facts)})"],
        [Bold("Represents:"), " ", *represents],
        [Bold("Copyright/trademark owner of the depicted character:"), " ", facts.owner],
        [Bold("Language(s):"), " English prompts"],
        [Bold("License:"), " ", Link(texts.LICENSE_NAME, texts.LICENSE_URL), " (inherited from the base model)"],
        [Bold("Finetuned from model:"), " ", Link(texts.BASE_MODEL, texts.BASE_MODEL_URL),
         " (frozen; only the new token's embedding is trained)"],
        [Bold("Weights used for this run:"), " ", weights_sentence(run.weights)],
        [Bold("Run:"), f" {run.name}, status {run.status}, final step {run.final_step}, card date {facts.date}"],
    ])
    repo = Link(overrides["repo"], overrides["repo"]) if "repo" in overrides else "not stated"
    return [
        section("Model Details", 2),
        section("Model Description", 3, Para([card_summary(facts)]),
                Callout([PIPELINE_CHECK_LABEL + " Nothing in this card describes the quality of a trained model."])
                if facts.pipeline_check else None,
                details),
        section("Model Sources", 3, Bullets([
            [Bold("Repository:"), " ", repo],
            [Bold("Paper:"), " ", Link(texts.PAPER_TITLE, texts.PAPER_URL)],
            [Bold("Base model card:"), " ", Link(texts.BASE_MODEL, texts.BASE_MODEL_URL)],
        ])),
    ]


def uses(facts) -> list:
    overrides, token = facts.overrides, facts.token
    direct = overrides.get("intended_use") or (
        f"Writing {token} in a Stable Diffusion v1 prompt to generate images of the learned "
        f"{concept(facts, 'character')} for personal, educational or research use, "
        "e.g. studying how textual inversion learns a concept from a few images.")
    downstream = overrides.get("downstream_use") or (
        "Loading the embedding into another Stable Diffusion v1.x pipeline (KerasCV, diffusers, AUTOMATIC1111) or "
        "combining it with other embeddings. Downstream users inherit the licence's use restrictions below and "
        "the copyright and trademark constraints of the depicted character.")
    out_of_scope = [
        ["Anything the licence's use restrictions forbid (listed in full under License and Use Restrictions)."],
        ["Commercial use of images of the character without a licence from its owner (", facts.owner, ")."],
        *[[text] for text in texts.OUT_OF_SCOPE_GENERAL],
    ]
    if "out_of_scope_use" in overrides:
        out_of_scope.append(["Ruled out by the authors: ", overrides["out_of_scope_use"]])
    return [
        section("Uses", 2, Para(["Foreseeable users: people making fan art, illustrations or research experiments "
                                 f"with Stable Diffusion who want a word for {token}. Affected: the owners of the "
                                 "character or style and anyone shown in, or misled by, generated images."])),
        section("Direct Use", 3, Para([direct]),
                Callout(["Random weights: this embedding has no direct use beyond checking the pipeline."])
                if facts.pipeline_check else None),
        section("Downstream Use", 3, Para([downstream])),
        section("Out-of-Scope Use and Misuse", 3, Bullets(out_of_scope)),
    ]


def _training_image_licences(facts):
    training = facts.training_data
    rows = [[row.get("file", ""), row.get("license", "") or "UNKNOWN", row.get("source", ""), row.get("author", ""),
             f"{row.get('width', '')}x{row.get('height', '')}", (row.get("sha256", "") or "")[:12]]
            for row in training.rows]
    counts = ", ".join(f"{name} ({count})" for name, count in sorted(training.licenses.items())) or "none recorded"
    return section(
        "Training Image Licences", 3,
        Para([f"{len(training.rows)} training image(s); licences: {counts}."]),
        Callout(["Unknown licence: " + ", ".join(training.unknown_license_files) + ". Record the licence of each "
                 "of these images in dataset.csv, or remove them, before publishing."])
        if training.unknown_license_files else None,
        Callout(["No dataset.csv: the sources and licences of the training images were not recorded."])
        if not training.rows else None,
        Table(["file", "license", "source", "author", "size", "sha256 (first 12)"], rows) if rows else None)


def licence(facts) -> list:
    licence_link = Link(texts.LICENSE_NAME, texts.LICENSE_URL)
    before, after = texts.LICENSE_PREAMBLE.split("{license}")
    return [
        section("License and Use Restrictions", 2, Para([before, licence_link, after])),
        section("Use Restrictions (Attachment A of the licence)", 3, Para([texts.USE_RESTRICTIONS_INTRO]),
                Bullets([[text] for text in texts.LICENSE_USE_RESTRICTIONS])),
        section("Copyright and Trademark of Generated Images", 3,
                Para([f"{facts.token} depicts ", facts.subject or "a character or style",
                      ". Owner stated by the authors: ", Bold(facts.owner), "."]),
                Callout(["The owner is not stated. Set ", Mono("owner"), " in ", Mono(facts.overrides_file),
                         " (e.g. the studio that owns the character); this tool never guesses it."])
                if facts.owner == OWNER_NOT_STATED else None,
                Bullets([[text] for text in texts.COPYRIGHT_NOTES])),
        _training_image_licences(facts),
    ]
