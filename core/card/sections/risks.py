"""The "Bias, Risks, and Limitations" section: what was measured on this run, then the known limits of the base
model and of KerasCV/textual inversion, then recommendations.

To add a measured part (a sub-block), write `def my_blocks(facts) -> list` returning blocks (empty when there is
nothing to say) and append it to MEASURED_BLOCKS; to add a whole subsection, write `def my_subsection(facts) ->
Section | None` and put it in SUBSECTIONS where it should appear.
"""

from __future__ import annotations

from core.card import texts
from core.card.document import Bullets, Callout, Figure, Link, Mono, Para, Table
from core.card.examples import SUCCESS_FAILURE_K
from core.card.formatting import metric_label, number
from core.card.sections.common import section
from core.card.sections.review import human_review


def caveat_blocks(facts) -> list:
    caveat = facts.scores.caveat
    return [Callout([f"These measurements only check the pipeline: {caveat}. They say nothing about what the "
                     "embedding learned."])] if caveat else []


def token_movement_blocks(facts) -> list:
    movement = facts.movement
    last = movement.at_last_step()
    if movement.error and not last:
        return [Para(["Token movement: ", movement.error, "."])]
    if not last:
        return []

    def listed(key: str) -> str:
        return ", ".join(number(row[key]) for row in last)

    return [Para(["Token movement: at step ", str(movement.steps[-1]), " the learned vector(s) lie at L2 distance ",
                  listed("l2_from_init"), " from the initializer ", Mono(facts.initializer), " (cosine ",
                  listed("cosine_to_init"), "; norm ", listed("norm"), " vs ", listed("init_norm"),
                  " at initialisation); every checkpoint and the nearest vocabulary tokens are under Model "
                  "Examination."])]


def clip_blocks(facts) -> list:
    final = facts.scores.final
    if final is None:
        return [Para([facts.scores.missing_reason])] if facts.scores.missing_reason else []
    reading = ("; a high CLIP-I with a low CLIP-T suggests the token overrides the prompt (overfitting to the "
               "training images)" if not facts.scores.caveat else
               "; under this caveat the numbers say nothing about how the embedding behaves")
    return [Para([f"CLIP at step {final.step}: mean CLIP-I {number(final.clip_i.mean)}, mean CLIP-T "
                  f"{number(final.clip_t.mean)}. CLIP-I measures likeness to the training images, CLIP-T "
                  f"agreement with the rest of the prompt{reading}."])]


def comparison_blocks(facts) -> list:
    comparison = facts.comparison
    if not comparison.available:
        return []
    other = comparison.run_b if comparison.run_a == facts.name else comparison.run_a
    blocks = [Para([f"Character versus style: compared with run {other} (paired differences under Evaluation > "
                    "Results)."])]
    if comparison.figure_png:
        blocks.append(Figure(comparison.figure_name, "Reconstruction (CLIP-I) vs editability (CLIP-T) per "
                             f"checkpoint, A = {comparison.run_a}, B = {comparison.run_b} (the picture "
                             "`python -m core compare` wrote; plane.html in its folder is the interactive plot)"))
    return blocks


def example_blocks(facts) -> list:
    examples = facts.examples
    if not examples.sets:
        return []
    note = " (under random weights: pipeline check only)" if facts.scores.caveat else ""
    left_out = (f" {examples.probes_left_out} misuse-probe image(s) at that step are left out: the card does not "
                "publish what it rules out." if examples.probes_left_out else "")
    blocks: list = [Para([f"Successes and failures: the {SUCCESS_FAILURE_K} highest- and lowest-scored images at "
                          f"step {examples.step}{note}.{left_out}"])]
    for chosen in examples.sets:
        label = f"{'Highest' if chosen['kind'] == 'best' else 'Lowest'} {metric_label(chosen['metric'])}"
        blocks.append(Figure(chosen["name"], f"{label} at step {examples.step}"))
        blocks.append(Table(["#", "image", "prompt", "seed", "CLIP-I", "CLIP-T"],
                            [[str(item["n"]), item["path"], item["prompt"], str(item["seed"]),
                              number(item["clip_i"]), number(item["clip_t"])] for item in chosen["items"]]))
    return blocks


# the measured sub-blocks, in order (append a function here to add one)
MEASURED_BLOCKS = (caveat_blocks, token_movement_blocks, clip_blocks, comparison_blocks, example_blocks)


def measured_limitations(facts):
    return section("Measured Limitations of This Run", 3, *[block for make in MEASURED_BLOCKS for block in make(facts)])


def measured_risks(facts):
    """Copying of the training images, misuse transfer and the recommended checkpoint, each with method and n."""
    from core.card.risks import rate_text

    risks = facts.risks
    blocks: list = []
    if risks.pipeline_check:
        blocks.append(Callout(["Pipeline check (random weights): these risk measurements test the code path only "
                               "and say nothing about what the embedding copies or carries."]))
    blocks += advice_blocks(facts)
    audit = risks.audit
    if audit is None:
        blocks.append(Para([risks.audit_error]))
        return section("Measured Risks", 3, *blocks)
    th = audit.thresholds
    blocks.append(Para([
        "Copying of the training images: every generated image was compared with the ", str(audit.n_references),
        " training images under two measures; an image counts as a copy when either flags it. Thresholds are "
        "calibrated on this run's data (null: training vs other training images, checkpoint-0 images vs training "
        f"images, generated images vs {audit.n_held_out} held-out pictures) at a target false-positive "
        "rate of ", str((th.get("phash") or {}).get("fpr_target")), ":"]))
    blocks.append(Table(["measure", "copy rule", "null n", "FPR on null", "FPR 95% upper bound"],
                        [[t.get("measure", m), t.get("rule", ""), str(t.get("n_null")),
                          number(t.get("fpr_empirical")), number(t.get("fpr_upper95"))] for m, t in th.items()]))
    blocks.append(Table(["step", "images", "copy rate (any measure)", "pHash", "CLIP"],
                        [[str(r["step"]) + (" (calibration)" if r.get("in_null") else ""), str(r["n"]),
                          rate_text(r["copy"]), rate_text(r["copy_phash"]), rate_text(r["copy_clip"])]
                         for r in audit.copy_rates]))
    mis = audit.misuse
    if mis.get("available"):
        blocks.append(Para(["Misuse transfer (evidence, not a filter): ", mis["method"], "."]))
        blocks.append(Table(["step", "category", misuse_column(facts)],
                            [[str(r["step"]), r["category"], rate_text(r)] for r in mis["by_step_category"]
                             if r["step"] > 0]))
    else:
        blocks.append(Para(["Misuse transfer: not measured (", mis.get("note", "no misuse probes"), ")."]))
    blocks.append(Bullets([[text] for text in texts.MEASURES_CAN_AND_CANNOT]))
    return section("Measured Risks", 3, *blocks)


def misuse_column(facts) -> str:
    """The misuse table's column: what a high CLIP-I means for this run (nothing under random weights)."""
    if facts.risks.pipeline_check or facts.pipeline_check:
        return "CLIP-I above the likeness level (pipeline check: means nothing)"
    return f"{'character' if facts.is_character else 'style'} comes through (CLIP-I above the likeness level)"


def advice_blocks(facts) -> list:
    """The recommended checkpoint with its reason, the rule and the branch of it that chose the step, and the
    prompt sets it compared (core.advice)."""
    risks = facts.risks
    adv = risks.advice
    if not adv or adv.get("recommended") is None:
        return [Para(["Recommended checkpoint: none. ", (adv or {}).get("reason") or risks.advice_error])]
    sets = adv.get("prompt_sets") or {}
    per_step = ", ".join(f"{step}: {n}" for step, n in (sets.get("images_per_step") or {}).items())
    if sets.get("restricted"):
        compared = (f"The checkpoints were scored on different prompt sets (images per checkpoint: {per_step}), so "
                    f"they are compared on the {sets['shared_pairs']} prompt x seed pairs all of them share.")
    elif sets and not sets.get("same", True):
        compared = (f"The checkpoints were scored on different prompt sets (images per checkpoint: {per_step}) and "
                    f"share only {sets.get('shared_pairs', 0)} prompt x seed pair(s), too few to restrict the "
                    "comparison: it compares different images.")
    else:
        compared = "Every checkpoint was scored on the same prompt x seed pairs."
    return [Para(["Recommended checkpoint: step ", str(adv["recommended"]), ". ", adv["reason"], " Rule: ",
                  adv["rule"], ". Applied here: ", adv.get("applied") or "not recorded", ". ", compared,
                  " Front of the CLIP-I/CLIP-T trade-off: steps ", ", ".join(map(str, adv["front"])),
                  "; means and 95% CIs: ", adv.get("summaries", ""), ". Export it with ",
                  Mono(f"python -m core export {facts.run_ref} --checkpoint recommended"), "."])]


def base_model_limitations(facts):
    return section("Known Limitations of the Base Model", 3,
                   Para(["From the ", Link("Stable Diffusion v1.4 model card", texts.BASE_MODEL_URL), ":"]),
                   Bullets([[text] for text in texts.BASE_MODEL_LIMITS]),
                   Callout(["Viewer discretion: the same card warns that ", texts.VIEWER_DISCRETION]))


def pipeline_limitations(facts):
    return section("Known Limitations of KerasCV and of Textual Inversion", 3,
                   Bullets([[text] for text in texts.KERASCV_AND_TI_LIMITS]))


def recommendations(facts):
    return section("Recommendations", 3, Bullets([[text] for text in texts.RECOMMENDATIONS]))


# the subsections, in order (put a function here to add one; it may return None to be left out)
SUBSECTIONS = (measured_limitations, measured_risks, human_review, base_model_limitations, pipeline_limitations,
               recommendations)


def bias_risks_limitations(facts) -> list:
    intro = section("Bias, Risks, and Limitations", 2,
                    Para(["Measured on this run (details under Evaluation and Model Examination), then the known "
                          "limits of the base model and of the KerasCV pipeline."]))
    return [intro] + [sub for make in SUBSECTIONS if (sub := make(facts)) is not None]
