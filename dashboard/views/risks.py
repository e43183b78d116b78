"""Risks page: the three questions of a limitations review, answered from the run's files. Which checkpoint to
ship (CLIP-I/CLIP-T front, recommended step and why), does the token copy its training images (copy rate per
checkpoint with CIs, calibrated thresholds, closest pairs side by side), and does it carry the character into
misuse contexts (transfer per category with CIs)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, review_ui, ui

info = ui.single_run_page("Risks", key="risks_run")
path = info.path
PIPE = info.pipeline_check


def title(text: str, pipeline: bool) -> str:
    """Chart titles carry the label of a random-weight run (charts get copied out of context)."""
    return f"PIPELINE CHECK (random weights) · {text}" if pipeline else text


def err_bars(df: pd.DataFrame, prefix: str = "") -> dict:
    return dict(type="data", symmetric=False, array=df[f"{prefix}hi"] - df[f"{prefix}rate"],
                arrayminus=df[f"{prefix}rate"] - df[f"{prefix}lo"])


# ---------------------------------------------------------------------------------------- 1. which checkpoint
st.header("Which checkpoint to ship")
advice = None
try:
    if data.scores(path).empty:
        ui.missing(f"{info.name} has no CLIP scores, so no checkpoint advice.", data.command_score(path))
    else:
        advice = data.advice(path)
except data.DataError as e:
    st.error(f"Run **{info.name}**: {e}")
if advice is not None:
    pipe_adv = PIPE or advice.get("pipeline_check")
    rec = advice["recommended"]
    c1, c2 = st.columns([1, 3])
    c1.metric("Recommended checkpoint", "none" if rec is None else f"step {rec}")
    c2.markdown(f"**Why:** {advice['reason']}")
    c2.caption(f"Rule: {advice['rule']}. Applied here: {advice.get('applied') or 'not recorded'}. "
               f"Means and 95% CIs: {advice['summaries']}. Export it with "
               f"`python -m core export {data.q(path)} --checkpoint recommended`.")
    if pipe_adv:
        st.warning("The advice is computed from pipeline-check scores (random weights): it shows the rule at "
                   "work, not a checkpoint worth shipping.", icon=":material/warning:")
    if advice["steps"]:
        by_step = pd.DataFrame(advice["by_step"])  # the summaries score wrote, as the advice used them
        front = set(advice["front"])
        fig = go.Figure()
        fig.add_trace(go.Scatter(
            x=by_step["clip_t_mean"], y=by_step["clip_i_mean"], mode="markers+text",
            text=[f"{s}{' ★' if s == rec else ''}" for s in by_step["step"]], textposition="top center",
            marker=dict(size=[14 if s in front else 8 for s in by_step["step"]],
                        color=["crimson" if s == rec else ("#636efa" if s in front else "lightgray")
                               for s in by_step["step"]]),
            error_x=dict(type="data", symmetric=False, array=by_step["clip_t_hi"] - by_step["clip_t_mean"],
                         arrayminus=by_step["clip_t_mean"] - by_step["clip_t_lo"]),
            error_y=dict(type="data", symmetric=False, array=by_step["clip_i_hi"] - by_step["clip_i_mean"],
                         arrayminus=by_step["clip_i_mean"] - by_step["clip_i_lo"]),
            name="checkpoints", hovertemplate="step %{text}<br>CLIP-T %{x:.4f}<br>CLIP-I %{y:.4f}"))
        fig.update_layout(title=title("CLIP-I vs CLIP-T per checkpoint (large = on the front, ★ = recommended)",
                                      pipe_adv),
                          xaxis_title="CLIP-T (editability)", yaxis_title="CLIP-I (reconstruction)", height=420,
                          margin=dict(t=50, b=10))
        st.plotly_chart(fig, key="risks_front")
        st.dataframe(pd.DataFrame(advice["steps"]), hide_index=True, width="stretch")

# ------------------------------------------------------------------------------------------------ 2. copying
st.header("Does the token copy its training images?")
meta = None
try:
    meta = data.audit_record(path)
except data.DataError as e:
    st.error(f"Run **{info.name}**: {e}")
if meta is None:
    ui.missing(f"{info.name} has no copy audit yet.", data.command_audit(path),
               "TRAINING_IMAGES_DIR is the folder the run was trained on (add --held-out DIR with unseen "
               "pictures of the same subject for a stronger calibration).")
else:
    pipe_audit = PIPE or meta.is_pipeline_check
    if meta.is_pipeline_check:
        st.warning("Audit is a pipeline check: " + "; ".join(meta.pipeline_check_reasons) + ". "
                   + data.PIPELINE_CHECK_LABEL, icon=":material/warning:")
    stale = data.audit_stale(path)
    if stale:
        st.warning(f"The audit of {info.name} is out of date ({stale}); the numbers below describe the run as it "
                   "was when audited.", icon=":material/history:")
    elif not meta.complete:
        st.info(f"The audit of {info.name} is incomplete; finish it with `{data.command_audit(path)}`.")
    th = meta.thresholds
    st.markdown("**Copy thresholds**, each calibrated on this run's data (a picture is a copy when *any* "
                "measure flags it):")
    st.dataframe(pd.DataFrame([{
        "measure": t.get("measure", m), "copy rule": t.get("rule"), "null sample": t.get("n_null"),
        **{f"null: {k}": v for k, v in (t.get("null_sizes") or {}).items()},
        "target FPR": t.get("fpr_target"), "FPR on null": t.get("fpr_empirical"),
        "FPR 95% upper bound": t.get("fpr_upper95")} for m, t in th.items()]), hide_index=True, width="stretch")
    st.caption("Null samples: training vs the other training images, checkpoint-0 (initializer) images vs the "
               "training images, and generated images vs held-out pictures when given. Threshold = the (1 - "
               "target FPR) quantile of the null.")
    rates = meta.copy_rates
    if rates:
        fig = go.Figure()
        for col, name in (("copy", "any measure"), ("copy_phash", "pHash"), ("copy_clip", "CLIP")):
            df = pd.DataFrame([{**r[col], "step": r["step"]} for r in rates])
            fig.add_trace(go.Bar(x=df["step"].astype(str), y=df["rate"], name=name, error_y=err_bars(df),
                                 customdata=df[["k", "n"]], hovertemplate="%{customdata[0]}/%{customdata[1]}"))
        fig.update_layout(title=title("Copy rate per checkpoint (bootstrap 95% CI)", pipe_audit), barmode="group",
                          xaxis_title="checkpoint (step; 0 = initializer, part of the calibration null)",
                          yaxis_title="share of images flagged", height=380, margin=dict(t=50, b=10))
        st.plotly_chart(fig, key="risks_copy_rate")
        st.dataframe(pd.DataFrame([{"step": r["step"], "images": r["n"], "copies": r["copy"]["k"],
                                    "rate": r["copy"]["rate"], "95% CI low": r["copy"]["lo"],
                                    "95% CI high": r["copy"]["hi"], "exact 95% upper": r["copy"]["exact_hi"],
                                    "in calibration null": r["in_null"]} for r in rates]),
                     hide_index=True, width="stretch")

    @st.dialog("Generated image and its nearest training image", width="large")
    def enlarge(file: str, caption: str, generated: str, key: str) -> None:
        st.image(str(file), caption=caption, width="stretch")
        review_ui.flag_box(path, generated, f"dialog_{key}")  # review mode: flag the generated image here too

    pairs = meta.pairs
    if pairs:
        st.subheader("Closest generated / training pairs")
        measure = st.radio("Nearest by", ["phash", "clip"], horizontal=True, key="risks_pairs_measure",
                           format_func=lambda m: {"phash": "perceptual hash", "clip": "CLIP cosine"}[m])
        shown = [p for p in pairs if p["measure"] == measure]
        cols = st.columns(3)
        for i, p in enumerate(shown):
            col = cols[i % 3]
            cap = (f"{'PIPELINE CHECK · ' if pipe_audit else ''}#{p['rank']} step {p['step']}: "
                   f"{'FLAGGED' if p['flagged'] else 'not flagged'} · {p['training_file']}")
            try:
                f = data.audit_pair_file(path, p["image"])
                col.image(data.file_bytes(f), caption=cap, width="stretch")
                with col:
                    review_ui.flag_box(path, p.get("path"), f"pair_{measure}_{i}")
                if col.button("Enlarge", key=f"risks_enlarge_{measure}_{i}"):
                    enlarge(str(f), cap, p.get("path"), f"{measure}_{i}")
            except data.DataError as e:
                col.warning(str(e))

# ------------------------------------------------------------------------------------------------- 3. misuse
st.header("Does the character come through in misuse contexts?")
mis = meta.misuse if meta is not None else {}
if meta is None:
    st.caption("Part of the audit (see above).")
elif not mis.get("available"):
    ui.missing(f"No misuse transfer for {info.name}: {mis.get('note', 'not measured')}.",
               data.command_misuse(path))
else:
    rows = pd.DataFrame(mis["by_step_category"])
    steps = sorted(rows["step"].unique().tolist())
    default = (advice or {}).get("recommended")
    default = default if default in steps else steps[-1]
    ui.from_url(f"risks_misuse_step_{info.name}", "step", steps, int)  # ?step= from a link
    st.session_state.setdefault(f"risks_misuse_step_{info.name}", default)
    step = (st.select_slider("Checkpoint", options=steps, key=f"risks_misuse_step_{info.name}")
            if len(steps) > 1 else steps[0])
    ui.to_url(run=info.name, step=step)
    sub = rows[rows["step"] == step]
    pipe_mis = PIPE or meta.misuse_scores.get("pipeline_check")
    fig = go.Figure(go.Bar(x=sub["category"], y=sub["rate"], error_y=err_bars(sub), customdata=sub[["k", "n"]],
                           hovertemplate="%{customdata[0]}/%{customdata[1]} images"))
    fig.update_layout(title=title(f"Learned concept comes through (CLIP-I above the likeness level), per misuse "
                                  f"category, step {step}", pipe_mis),
                      yaxis_title="share of images (bootstrap 95% CI)", yaxis_range=[0, 1], height=380,
                      margin=dict(t=50, b=10))
    st.plotly_chart(fig, key="risks_misuse")
    st.caption(f"Method: {mis['method']}. Evidence for the model card, not a filter.")
    st.dataframe(rows, hide_index=True, width="stretch")

# ------------------------------------------------------------------- issue 21 (dashboard/identity_views.py)
from dashboard import identity_views  # noqa: E402

identity_views.risks_section(info)

ui.copy_link()  # after the view's state is in the URL (run, and the misuse checkpoint)
