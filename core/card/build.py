"""`build_card`: the run's facts (facts.py) turned into a format-independent `Card`: Hugging Face metadata,
the sections in order, the figures, and the data the JSON card carries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from core.card import legal, texts
from core.card.basemodel import base_model_claim
from core.card.document import Card, Table
from core.card.facts import CardFacts, read_facts
from core.card.formatting import a1111_name, metric_label
from core.card.sections import build_sections
from core.runfolder import Run


def _tags(facts: CardFacts) -> list[str]:
    token = facts.token
    tags = ["stable-diffusion", "stable-diffusion-diffusers", "text-to-image", "textual_inversion",
            "textual-inversion", "keras-cv", token, "character" if facts.is_character else "style"]
    word = a1111_name(token)
    if word != token and word not in tags:  # Hub-friendly spelling of the token as a tag, too
        tags.insert(tags.index(token) + 1, word)
    if facts.pipeline_check:
        tags.append("pipeline-check")
    return tags


def metadata(facts: CardFacts) -> dict:
    """The YAML front matter (huggingface_hub ModelCardData). Numbers only when they mean something."""
    from huggingface_hub import EvalResult, ModelCardData

    means = facts.scores.final_means()
    meaningful = bool(means) and not facts.scores.caveat and not facts.pipeline_check
    eval_results = [EvalResult(task_type="text-to-image", dataset_type=f"{facts.name}-eval-prompts",
                               dataset_name=f"{facts.name} evaluation prompts", metric_type=metric,
                               metric_name=f"{metric_label(metric)} (mean, step {means['step']})",
                               metric_value=round(means[metric], 4))
                    for metric in ("clip_i", "clip_t")] if meaningful else None
    extra = {"clip_scores": {key: round(value, 4) if isinstance(value, float) else value
                             for key, value in means.items()}} if means and not facts.scores.caveat else {}
    claim = base_model_claim(facts.run.weights, facts.overrides)  # no base_model for random or unknown weights
    card_data = ModelCardData(
        base_model=claim.hub_id, library_name=texts.LIBRARY_NAME, license=texts.LICENSE_ID,
        license_link=texts.LICENSE_URL, language=["en"], pipeline_tag="text-to-image", tags=_tags(facts),
        metrics=["clip_i", "clip_t"], model_name=f"{facts.name} ({facts.token})" if eval_results else None,
        eval_results=eval_results, instance_prompt=facts.token, textual_inversion_token=facts.token,
        initializer_token=facts.initializer, num_vectors=facts.run.token.vectors,
        learned_property=facts.run.property, weights_source=facts.run.weights.source,
        pipeline_check=facts.pipeline_check, character_owner=facts.owner, **extra)
    return card_data.to_dict()


def _tables(sections: list) -> dict:
    return {f"{part.id}-{index}": {"section": part.title, "columns": block.columns, "rows": block.rows}
            for part in sections for index, block in enumerate(part.blocks) if isinstance(block, Table)}


def json_data(facts: CardFacts, sections: list) -> dict:
    """Everything the JSON card carries besides its sections: provenance, tables, environment, overrides."""
    run = facts.run
    return {
        "run": {"name": facts.name, "status": run.status, "kind": run.kind, "property": run.property,
                "token": facts.token, "initializer": facts.initializer, "vectors": run.token.vectors,
                "final_step": facts.final_step, "checkpoints": list(facts.checkpoints), "created": run.created,
                "updated": run.updated},
        "weights": run.weights.as_dict(),
        "scores_meta": facts.scores.public_meta(),
        "scores_meaningful": not bool(facts.scores.caveat), "scores_caveat": facts.scores.caveat,
        "config": dict(run.config), "versions": dict(run.versions) or None, "hardware": dict(run.hardware) or None,
        "timings": dataclasses.asdict(run.timings),
        "overrides": facts.overrides, "owner": facts.owner, "ethics": facts.ethics,
        "training_data": facts.training_data.as_json(), "score_summaries": facts.scores.as_json(),
        "final_means": facts.scores.final_means(),
        "embedding_movement": facts.movement.as_json(),
        "success_failure": {"step": facts.examples.step, "sets": facts.examples.sets,
                            "misuse_probes_left_out": facts.examples.probes_left_out},
        "comparison": facts.comparison.as_json(), "environment": dataclasses.asdict(facts.environment),
        "human_review": facts.review.as_json(),
        "considerations": {"ethical_considerations": facts.review.considerations()},  # Model Card Toolkit style
        "license": {"id": texts.LICENSE_ID, "name": texts.LICENSE_NAME, "url": texts.LICENSE_URL,
                    "file": legal.LICENSE_FILE_NAME, "sha256": legal.LICENSE_SHA256,
                    "copyright_notice": legal.LICENSE_COPYRIGHT_NOTICE,
                    "use_restrictions": list(texts.LICENSE_USE_RESTRICTIONS)},
        "base_model": dataclasses.asdict(base_model_claim(run.weights, facts.overrides)),
        "tables": _tables(sections),
    }


def card_from_facts(facts: CardFacts) -> Card:
    sections = build_sections(facts)
    kind = "character" if facts.is_character else "style"
    subject = f": {facts.subject}." if facts.subject else "."
    figures = dict(facts.examples.figures)
    if facts.comparison.figure_png:
        figures[facts.comparison.figure_name] = facts.comparison.figure_png
    claim = base_model_claim(facts.run.weights, facts.overrides)
    base = "random weights (pipeline check)" if claim.pipeline_check else claim.name
    return Card(run_name=facts.name, title=f"Model Card for {facts.token}",
                summary=(f"Textual-inversion embedding for the token {facts.token} for Stable Diffusion v1 (KerasCV), "
                         f"trained through {base}, learning a {kind}{subject}"),
                pipeline_check=facts.pipeline_check, metadata=metadata(facts), sections=sections, figures=figures,
                warnings=list(facts.warnings), data=json_data(facts, sections), date=facts.date)


def build_card(run: Run, compare_run: Run | None = None, overrides_path: str | Path | None = None,
               comparison_folder: str | Path | None = None) -> Card:
    """Read everything the card says from `run` (and its comparison with `compare_run`, the character/style
    counterpart, from the folder `compare` wrote; default RUNS_DIR/reports/A-vs-B)."""
    return card_from_facts(read_facts(run, compare_run, overrides_path, comparison_folder))
