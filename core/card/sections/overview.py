"""The card's opening sections: Model Details and Uses (the licence sections are in sections/legal.py)."""

from __future__ import annotations

from core.card import legal, texts
from core.card.basemodel import base_model_claim
from core.card.document import Bold, Bullets, Callout, Link, Mono, Para
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
    claim = base_model_claim(facts.run.weights, facts.overrides)
    return (f"A textual-inversion embedding for Stable Diffusion v1 (KerasCV) with the new token {facts.token}, "
            f"learned as a {concept(facts)} from {len(facts.training_data.rows)} training image(s), starting from "
            f"the word {facts.initializer!r}, trained through {claim.trained_through}.{subject}")


def _finetuned_from(claim) -> list:
    if claim.pipeline_check:
        return [claim.finetuned_from]
    name = Link(claim.hub_id, claim.url) if claim.hub_id and claim.url else claim.name
    return [name, " (frozen; only the new token's embedding is trained)"]


def model_details(facts) -> list:
    run, overrides = facts.run, facts.overrides
    claim = base_model_claim(run.weights, overrides)
    represents = [facts.subject] if facts.subject else ["not stated (set ", Mono("subject"), " in ",
                                                        Mono("card.yaml"), ")"]
    details = Bullets([
        [Bold("Developed by:"), " ", overrides.get("developers", "not stated")],
        [Bold("Model type:"), f" textual-inversion embedding ({run.token.vectors} vector(s) of 768 dimensions) "
                              "for the CLIP ViT-L/14 text encoder of Stable Diffusion v1"],
        [Bold("Token:"), " ", Mono(facts.token),
         f" (initialised from {facts.initializer!r}; learns a {concept(facts)})"],
        [Bold("Represents:"), " ", *represents],
        [Bold(("Rights holder of the depicted character:" if facts.is_character
               else "Rights holders of the source works:")), " ", facts.owner],
        [Bold("Language(s):"), " English prompts"],
        # LICENSE 4 (last condition): other terms are allowed if they carry the paragraph-5 restrictions forward
        [Bold("License:"), " ", Link(texts.LICENSE_NAME, texts.LICENSE_URL), " (chosen for this embedding; the "
         "licence lets derivatives use other terms only if they carry its use restrictions forward)"],
        [Bold("Finetuned from model:"), " ", *_finetuned_from(claim)],
        [Bold("Weights used for this run:"), " ", weights_sentence(run.weights)],
        [Bold("Run:"), f" {facts.name}, status {run.status}, final step {facts.final_step}, card date {facts.date}"],
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
            [Bold("Base model card:"), " ", Link(claim.hub_id, claim.url) if claim.hub_id and claim.url
             else "none (random weights)" if claim.pipeline_check else "not known for " + claim.name],
        ])),
    ]


def _out_of_scope(facts) -> list:
    owner = facts.owner
    first = legal.OUT_OF_SCOPE_CHARACTER if facts.is_character else legal.OUT_OF_SCOPE_STYLE
    items = [["Anything the licence's use restrictions forbid (listed in full under License and Use Restrictions)."]]
    items += [[text.format(owner=owner)] for text in first]
    items += [[text.format(concept=concept(facts, "the character", "the learned style"))]
              for text in legal.OUT_OF_SCOPE_COMMON]
    if "out_of_scope_use" in facts.overrides:
        items.append(["Ruled out by the authors: ", facts.overrides["out_of_scope_use"]])
    return items


def uses(facts) -> list:
    overrides, token = facts.overrides, facts.token
    direct = overrides.get("intended_use") or (
        f"Writing {token} in a Stable Diffusion v1 prompt to generate images of the learned "
        f"{concept(facts, 'character')} for personal, educational or research use, "
        "e.g. studying how textual inversion learns a concept from a few images.")
    downstream = overrides.get("downstream_use") or (
        "Loading the embedding into another Stable Diffusion v1.x pipeline (KerasCV, diffusers, AUTOMATIC1111) or "
        "combining it with other embeddings. Downstream users take on the licence's use restrictions below and "
        f"must respect the rights of {legal.AFFECTED_CHARACTER if facts.is_character else legal.AFFECTED_STYLE}.")
    affected = legal.AFFECTED_CHARACTER if facts.is_character else legal.AFFECTED_STYLE
    what = "illustrations of the character" if facts.is_character else "illustrations in this style"
    return [
        section("Uses", 2, Para([f"Foreseeable users: people making {what} or research experiments with Stable "
                                 f"Diffusion who want a word for {token}. Affected: {affected}, and anyone shown in, "
                                 "or misled by, generated images."])),
        section("Direct Use", 3, Para([direct]),
                # SD card, "Direct Use": "The model is intended for research purposes only."; CompVis README:
                # "we do not recommend using the provided weights for services or products without additional
                # safety mechanisms and considerations"
                Para(["Stable Diffusion v1's model card says: \"The model is intended for research purposes "
                      "only.\" Its authors add that the licence permits commercial use, but they do not recommend "
                      "the weights for services or products without additional safety mechanisms."]),
                Callout(["Random weights: this embedding has no direct use beyond checking the pipeline."])
                if facts.pipeline_check else None),
        section("Downstream Use", 3, Para([downstream])),
        section("Out-of-Scope Use and Misuse", 3, Bullets(_out_of_scope(facts)), Para([legal.AI_ACT_DISCLOSURE])),
    ]
