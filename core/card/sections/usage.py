"""How the embedding is used and made: How to Get Started, Training Details, Technical Specifications."""

from __future__ import annotations

import json

from core.card import texts
from core.card.document import Bold, Bullets, Callout, CodeBlock, Mono, Para, Table
from core.card.formatting import a1111_name, duration
from core.card.sections.common import section
from core.card.sections.overview import weights_sentence
from core.runfolder import WeightsProvenance


def _export(facts, options: str) -> Para:
    return Para(["Export: ", Mono(f"python -m core export {facts.run_ref} {options}")])


def _web_uis(facts, word: str) -> list:
    """One subsection per web UI format `export` writes (core/export.py FORMATS), with the command and the use."""
    return [
        section("AUTOMATIC1111 web UI", 3, _export(facts, f"--format a1111 --out {word}.pt"), Para([
            "Copy the file into the web UI's ", Mono("embeddings/"), " folder (rename it to the word you want to "
            "type), then write ", Mono(word), " in a prompt. Use it with a Stable Diffusion v1.x checkpoint."])),
        section("ComfyUI", 3, _export(facts, f"--format comfyui --out {word}.safetensors"), Para([
            "Copy the file into ", Mono("ComfyUI/models/embeddings/"), " and write ", Mono(f"embedding:{word}"),
            " in the text of a CLIP Text Encode node fed by an SD v1.x checkpoint."])),
        section("InvokeAI", 3, _export(facts, f"--format invokeai --out {word}.safetensors"), Para([
            "Install the file from the Model Manager (as a textual-inversion embedding for SD 1.x), then insert it "
            "in a prompt as ", Mono(f"<{word}>"), "."])),
        section("kohya sd-scripts", 3, _export(facts, f"--format kohya --out {word}.safetensors"),
                CodeBlock("bash", f"python gen_img.py --ckpt SD_V1_CHECKPOINT.safetensors --outdir out \\\n"
                                  f"    --textual_inversion_embeddings {word}.safetensors \\\n"
                                  f"    --prompt \"a drawing of {word} in the snow\"  # the token is the file name")),
        section("A Web UI Folder in One Command", 3, _export(facts, "--bundle DIR"), Para([
            f"Writes {word}.safetensors (loaded by AUTOMATIC1111, ComfyUI and InvokeAI), {word}.preview.png, "
            f"{word}.description.txt and {word}.LICENSE.txt (the licence text every recipient must get)."])),
    ]


def get_started(facts) -> list:
    token, n_vectors, word = facts.token, facts.run.token.vectors, a1111_name(facts.token)
    return [
        section("How to Get Started with the Model", 2,
                Para(["The final embedding of this run is ", Mono(facts.final_embedding), ", a safetensors file "
                      f"holding {{token: float32[{n_vectors}, 768]}}; ", Mono("python -m core export"),
                      " writes it in the layout each tool below loads. Every tool also needs a Stable Diffusion "
                      "v1.x checkpoint, which you obtain yourself under its own licence."]),
                Callout(["Random weights: these snippets load a pipeline-check embedding; with the real base model "
                         "it produces nothing meaningful."]) if facts.pipeline_check else None),
        section("KerasCV", 3, _export(facts, "--format diffusers --out learned_embeds.safetensors"),
                CodeBlock("python", texts.kerascv_snippet(token, n_vectors))),
        section("diffusers", 3, _export(facts, "--format diffusers --out learned_embeds.safetensors"),
                CodeBlock("python", texts.diffusers_snippet(token))),
        *_web_uis(facts, word),
    ]


def training_details(facts) -> list:
    run, training = facts.run, facts.training_data
    unknown = ("Unknown licences: " + ", ".join(training.unknown_license_files) + "."
               if training.unknown_license_files else "")
    settings = [[str(key), value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)]
                for key, value in run.config.items()]
    templates = "object" if facts.is_character else "style"
    return [
        section("Training Details", 2),
        section("Training Data", 3, Para([
            f"{len(training.rows)} image(s) listed in the run's dataset.csv with their sources and licences "
            f"(table under License and Use Restrictions). {unknown}"])),
        section("Training Procedure", 3,
                Para([f"Textual inversion (Gal et al. 2022): a new token {facts.token} is added to the tokenizer, its "
                      f"embedding row initialised from {facts.initializer!r}, and only that row is optimised with the "
                      "latent-diffusion denoising loss while the text encoder, UNet and VAE stay frozen. Prompts come "
                      f"from the {templates} templates."]),
                Table(["setting", "value"], settings) if settings else None),
        section("Speeds, Sizes, Times", 4, Bullets([
            ["Training time: ", duration(run.timings.seconds_total), f"; steps done: {run.timings.steps_done}"],
            ["Checkpoints saved: ", ", ".join(map(str, facts.movement.steps)) or "none"],
            ["Embedding size: ", f"{run.token.vectors} x 768 float32 = {run.token.vectors * 768 * 4} bytes"],
        ])),
    ]


def _verified(weights: WeightsProvenance) -> str:
    answer = {True: "yes", False: "NO - the files did not match or were not checked"}.get(weights.verified)
    if answer:
        return answer
    return "not applicable" if weights.source == "random" else "not recorded"


def technical_specifications(facts) -> list:
    weights = facts.run.weights
    files = weights.files
    random_note = " (random initialisation)." if weights.source == "random" else "."
    return [
        section("Technical Specifications", 2),
        section("Model Architecture and Objective", 3, Para([
            "The Stable Diffusion v1 architecture (latent diffusion: CLIP ViT-L/14 text encoder, UNet, VAE) as "
            f"implemented by KerasCV, with the weights under Weight Provenance; the only trained parameters are the "
            f"{facts.run.token.vectors} embedding vector(s) of {facts.token}; objective: the denoising "
            "(noise-prediction) MSE of latent diffusion."])),
        section("Weight Provenance", 3,
                Bullets([
                    [Bold("Source:"), " ", weights.source, " - ", weights_sentence(weights)],
                    [Bold("Verified against recorded checksums:"), " ", _verified(weights)],
                ]),
                Table(["file", "sha256"], [[str(name), str(digest)] for name, digest in files.items()]) if files
                else Para(["No weight files recorded" + random_note])),
        *compute_infrastructure(facts),
    ]


def compute_infrastructure(facts) -> list:
    """Compute Infrastructure > Hardware, Software (the Hugging Face template's headings), as run.json records them."""
    hardware, versions = facts.run.hardware, facts.run.versions
    devices = hardware.get("devices") or []
    return [
        section("Compute Infrastructure", 3),
        section("Hardware", 4, Bullets([
            [Bold("Platform:"), " ", str(hardware.get("platform") or "not recorded")],
            [Bold("Devices:"), " ", ", ".join(map(str, devices)) or "not recorded"],
        ])),
        section("Software", 4, Table(["package", "version"], [[str(name), str(version)]
                                                            for name, version in versions.items()])
                if versions else Para(["Package versions not recorded."])),
    ]
