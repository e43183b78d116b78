"""The measured sections: Evaluation (CLIP tables, baselines, the character-versus-style comparison), Model
Examination (how far the token moved) and Environmental Impact (the energy estimate)."""

from __future__ import annotations

from core.card import texts
from core.card.document import Bold, Bullets, Callout, Link, Mono, Para, Table
from core.card.energy import DEFAULT_PUE
from core.card.formatting import duration, interval, metric_label, number
from core.card.sections.common import section


def summary_table(rows: list, key: str) -> Table:
    """Summaries from scores.json as 'mean [lo, hi]' columns; `key` is 'step' or 'template'."""
    body = [[str(getattr(row, key)), str(row.n),
             number(row.clip_i.mean), interval(row.clip_i.lo, row.clip_i.hi, row.n),
             number(row.clip_t.mean), interval(row.clip_t.lo, row.clip_t.hi, row.n)] for row in rows]
    return Table([key, "n", "CLIP-I mean", "CLIP-I 95% CI", "CLIP-T mean", "CLIP-T 95% CI"], body)


def comparison_table(rows: list) -> Table:
    body = [[metric_label(str(row["metric"])), str(row["checkpoint"]), f"{row['step_a']} / {row['step_b']}",
             number(row["a_mean"]), number(row["b_mean"]), number(row["diff"]),
             interval(row["diff_lo"], row["diff_hi"], row["n"]), str(row["n"])] for row in rows]
    return Table(["metric", "checkpoint", "steps A / B", "A mean", "B mean", "A - B", "95% CI", "pairs"], body)


def clip_sentence(record) -> str:
    if record is None:
        return "not recorded (no scores.json)"
    return record.clip_label or ", ".join(f"{key}: {value}" for key, value in record.clip.items())


def baseline_blocks(record) -> list:
    """The reference ceiling and the initializer baseline, as `score` wrote them (ScoresRecord)."""
    if record is None:
        return []
    items = []
    ceiling = record.reference_ceiling
    if ceiling.get("mean") is not None:
        span = interval(ceiling.get("lo"), ceiling.get("hi"), ceiling.get("n_images"))
        items.append([Bold("Reference ceiling (CLIP-I between distinct reference images):"), " ",
                      f"{number(ceiling['mean'])} {span} ({ceiling.get('n_images', '?')} images)"])
    elif record.reference_ceiling_clip_i is not None:
        items.append([Bold("Reference ceiling CLIP-I:"), " ", number(record.reference_ceiling_clip_i)])
    initial = record.initializer
    if initial.get("available") and initial.get("clip_i_mean") is not None:
        n = initial.get("n")
        clip_i = f"{number(initial['clip_i_mean'])} {interval(initial.get('clip_i_lo'), initial.get('clip_i_hi'), n)}"
        clip_t = (f"{number(initial.get('clip_t_mean'))} "
                  f"{interval(initial.get('clip_t_lo'), initial.get('clip_t_hi'), n)}")
        items.append([Bold("Initializer baseline (step 0):"), " ", f"CLIP-I {clip_i}, CLIP-T {clip_t}"])
    return [Para(["Baselines:"]), Bullets(items)] if items else []


def _testing_sentence(facts) -> str:
    """How many images each checkpoint was scored on, from scores.json's summaries (n per step), and whether the
    checkpoints share their prompt x seed pairs (core.advice compared them); never a count that was not scored."""
    rows, by_step = facts.scores.rows, facts.scores.by_step
    prompts, seeds = len({row.get("prompt") for row in rows}), len({row.get("seed") for row in rows})
    per_step = {row.step: row.n for row in by_step}
    whole = f"{len(rows)} generated image(s), {prompts} prompt(s) and {seeds} seed(s) in all"
    if len(set(per_step.values())) <= 1:
        each = next(iter(per_step.values()), 0)
        return f"Testing data: {whole}; {each} image(s) at each of the {len(per_step)} scored checkpoint(s)."
    sets = (facts.risks.advice or {}).get("prompt_sets") or {}
    listed = ", ".join(f"step {step}: {n}" for step, n in per_step.items())
    after = (f" The recommended checkpoint is chosen on the {sets['shared_pairs']} prompt x seed pairs every "
             "checkpoint shares." if sets.get("restricted") else "")
    return (f"Testing data: {whole}. The checkpoints were scored on different prompt sets ({listed} images; misuse "
            f"probes, where generated, count here too), so the means below are over different images and are not "
            f"directly comparable between checkpoints.{after}")


def _testing_data(facts):
    return section(
        "Testing Data, Factors & Metrics", 3,
        Para([_testing_sentence(facts), " Factors: checkpoint step and prompt."]),
        Bullets([
            [Bold("CLIP-I:"), " " + texts.CLIP_I_DEFINITION],
            [Bold("CLIP-T:"), " " + texts.CLIP_T_DEFINITION],
            ["Intervals are the confidence intervals computed by ", Mono("core.score"),
             " (see its documentation for the method)."],
            [Bold("Scorer:"), " ", clip_sentence(facts.scores.record)],
        ]))


def _score_blocks(facts) -> list:
    scores = facts.scores
    if not scores.available:
        return [Para([scores.missing_reason or "no scores"])]
    resamples = (f"{scores.n_boot} resamples, as `score --n-boot` set them" if scores.n_boot
                 else "resamples not recorded")
    blocks: list = [Para(["CLIP scores per checkpoint, as ", Mono("score"), " wrote them to scores.json (mean over "
                          f"images, percentile-bootstrap 95% confidence interval with {resamples}; step 0 is the "
                          "initializer word before training):"]),
                    summary_table(scores.by_step, "step")]
    last = scores.final.step
    by_prompt = [row for row in scores.by_prompt if row.step == last]
    if by_prompt:
        blocks += [Para([f"CLIP scores per prompt template at step {last} (CI over seeds; every step is in "
                         "card.json):"]), summary_table(by_prompt, "template")]
    return blocks + baseline_blocks(scores.record)


def _comparison_blocks(facts) -> list:
    comparison = facts.comparison
    if not comparison.available:
        return [Para([f"Character versus style: {comparison.reason}."])]
    blocks: list = [Para([f"Character versus style: {comparison.run_a} ({comparison.property_a}) against "
                          f"{comparison.run_b} ({comparison.property_b})."])]
    if comparison.pipeline_check:
        blocks.append(Callout(["The comparison only checks the pipeline: "
                               + ("; ".join(comparison.pipeline_check_reasons) or "random weights") + "."]))
    if comparison.table:
        blocks.append(Para(["Paired differences as ", Mono("compare"), " wrote them"
                            + (f" (bootstrap with {comparison.n_boot} resamples):" if comparison.n_boot else ":")]))
        blocks.append(comparison_table(comparison.table))
    if comparison.notes:
        blocks.append(Bullets([[note] for note in comparison.notes]))
    return blocks


def _summary_line(facts) -> str:
    caveat, final = facts.scores.caveat, facts.scores.final
    if facts.pipeline_check:
        return "Pipeline check: no claim about quality is made."
    if caveat:
        return f"No claim about quality: {caveat}."
    if final:
        return (f"At step {final.step}: mean CLIP-I {number(final.clip_i.mean)}, mean CLIP-T "
                f"{number(final.clip_t.mean)} (intervals in the table above).")
    return "Not evaluated yet."


def evaluation(facts) -> list:
    warning = None
    if facts.pipeline_check:
        warning = Callout(["The numbers below are from random weights and only check the pipeline; they say nothing "
                           "about the quality of a trained embedding."])
    elif facts.scores.caveat:
        warning = Callout([f"The numbers below only check the pipeline: {facts.scores.caveat}."])
    return [
        section("Evaluation", 2),
        _testing_data(facts),
        section("Results", 3, warning, *_score_blocks(facts), *_comparison_blocks(facts)),
        section("Summary", 4, Para([_summary_line(facts)])),
    ]


def model_examination(facts) -> list:
    movement, blocks = facts.movement, []
    if movement.error:
        blocks.append(Callout([movement.error]))
    if movement.rows:
        blocks.append(Para(["Distance of the learned vector(s) from the initializer, per checkpoint (step 0 is the "
                            "initializer):"]))
        blocks.append(Table(["step", "vector", "L2 from init", "cosine to init", "norm"],
                            [[str(row["step"]), str(row["vector"]), number(row["l2_from_init"]),
                              number(row["cosine_to_init"]), number(row["norm"])] for row in movement.rows]))
    if movement.neighbors:
        blocks.append(Para(["Nearest vocabulary tokens (from neighbors.csv):"]))
        blocks.append(Table(["step", "vector", "rank", "token", "cosine", "distance_from_init"],
                            [[str(step), str(near["vector"]), str(near["rank"]), str(near["token"]),
                              number(near["cosine"]), number(near["distance_from_init"])]
                             for step, nearest in movement.neighbors.items() for near in nearest]))
    return [section("Model Examination", 2, *(blocks or [Para(["No embeddings saved yet."])]))]


def _not_included(env) -> str:
    """The stages the time above leaves out, so the text always agrees with the number."""
    left_out = [f"{stage} (its time is not recorded)" for stage in ("training", "image generation", "CLIP scoring")
                if stage not in env.included]
    return "Not included: " + ", ".join(left_out + ["the (much larger) cost of training the base model"]) + "."


def environmental_impact(facts) -> list:
    env = facts.environment
    covered = ", ".join(env.included) or "no recorded stage"
    assumptions = [
        ["power draw", f"{number(env.power_watts, 0)} W", env.power_source],
        *[["device: " + device["device"], f"{number(device['watts'], 0)} W", "assumed: " + device["basis"]]
          for device in env.devices_counted],
        ["PUE", number(env.pue, 2), "overrides" if env.pue != DEFAULT_PUE else "assumed 1.0 (no data-centre overhead)"],
        ["grid carbon intensity", f"{number(env.carbon_intensity_g_per_kwh, 0)} g CO2eq/kWh",
         env.carbon_intensity_source],
        ["time", duration(env.seconds), env.seconds_source],
    ]
    return [section(
        "Environmental Impact", 2,
        Callout([f"Estimate, not a measurement: computed from the run's recorded time ({covered}) and an assumed "
                 "power draw, with the ", Link("Machine Learning Impact calculator", texts.ML_CO2_CALCULATOR_URL),
                 " method of ", Link("Lacoste et al. (2019)", texts.LACOSTE_URL), "."], level="note"),
        Bullets([
            [Bold("Hardware type:"), " ", ", ".join(env.devices) or "not recorded", f" (platform: {env.platform})"],
            [Bold("Hours used:"), " ", number(env.hours, 4) if env.hours else "not recorded",
             f" ({env.seconds_source})"],
            [Bold("Cloud provider:"), " ", env.cloud_provider],
            [Bold("Compute region:"), " ", env.region],
            [Bold("Carbon emitted (estimate):"), " ",
             f"{number(env.co2eq_g, 2)} g CO2eq" if env.co2eq_g is not None else "not computable (no timing)"],
            [Bold("Energy (estimate):"), " ",
             f"{number(env.energy_kwh, 5)} kWh" if env.energy_kwh is not None else "not computable"],
        ]),
        Para(["Method: ", env.method, "."]),
        Table(["assumption", "value", "source"], assumptions),
        Para([_not_included(env)]))]
