"""CLIP scores page: CLIP-I (reconstruction) and CLIP-T (editability) per checkpoint with 95% CI bands, per
prompt, their distributions, and the reconstruction-versus-editability plane across runs."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui

METRIC_NAMES = {"clip_i": "CLIP-I (reconstruction)", "clip_t": "CLIP-T (editability)"}
info = ui.single_run_page("CLIP scores", key="clip_run")
ok = data.ok_runs(ui.infos())
path = info.path


def band_figure(by_step, metric: str, ceiling: float | None) -> go.Figure:
    """Mean per checkpoint with its bootstrap 95% CI as a shaded band."""
    x = by_step["step"].tolist()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x + x[::-1], y=by_step[f"{metric}_hi"].tolist() + by_step[f"{metric}_lo"].tolist()[::-1],
                             fill="toself", fillcolor="rgba(99,110,250,0.2)", line=dict(width=0),
                             hoverinfo="skip", name="95% CI"))
    fig.add_trace(go.Scatter(x=x, y=by_step[f"{metric}_mean"], mode="lines+markers", name="mean",
                             customdata=by_step["n"], hovertemplate="step %{x}<br>mean %{y:.4f}<br>n=%{customdata}"))
    if ceiling is not None and metric == "clip_i":
        fig.add_hline(y=ceiling, line_dash="dot", annotation_text="reference ceiling (real images)")
    fig.update_layout(title=METRIC_NAMES[metric], xaxis_title="checkpoint (step; 0 = initializer)",
                      yaxis_title="cosine", height=360, margin=dict(t=40, b=10))
    return fig


def run_scores_or_note(i: dict):
    """(scores DataFrame, scores.json record or None) of a run, or None after saying what is missing or damaged."""
    try:
        df = data.scores(i.path)
        meta = data.scores_record(i.path)
    except data.DataError as e:
        st.error(f"Run **{i.name}**: {e}")
        return None
    if df.empty:
        if not i.has("images_index_path"):
            ui.missing(f"{i.name} has no generated images, so nothing to score yet.",
                       data.command_generate(i.path) + "\n" + data.command_score(i.path))
        else:
            ui.missing(f"{i.name} has no CLIP scores yet.", data.command_score(i.path),
                       "DIR holds the reference images of the character or style.")
        return None
    return df, meta


got = run_scores_or_note(info)
if got is None:
    st.stop()
df, meta = got
if meta is not None and meta.is_pipeline_check:
    st.warning("Scores are a pipeline check: " + "; ".join(meta.pipeline_check_reasons)
               + ". " + data.PIPELINE_CHECK_LABEL, icon=":material/warning:")
if meta is not None and not meta.complete:
    st.info(f"Scoring of {info.name} is incomplete; finish it with `{data.command_score(path)}`.")
stale = data.scores_stale(path)
if stale:
    st.warning(f"{info.name}: {stale}", icon=":material/warning:")
ceiling = meta.reference_ceiling_clip_i if meta is not None else None
clip_label = (meta.clip_label if meta else '') or df.get('clip_model', ['?']).iloc[0]
st.caption(f"{len(df)} scored image(s) · CLIP: {clip_label}"
           + (f" · reference ceiling CLIP-I {ceiling:.3f}" if ceiling is not None else "")
           + (f" · 95% CIs from {meta.n_boot} bootstrap resamples (as `score` computed them)"
              if meta is not None and meta.n_boot else ""))

try:
    by_step = data.summary(path, "step")
    by_prompt = data.summary(path, "prompt")
except data.DataError as e:
    by_step = by_prompt = None
    st.error(f"Run **{info.name}**: {e}")

t1, t2, t3, t4 = st.tabs(["Per checkpoint", "Per prompt", "Distributions", "Reconstruction vs editability"])

with t1:
    if by_step is not None and not by_step.empty:
        c1, c2 = st.columns(2)
        c1.plotly_chart(band_figure(by_step, "clip_i", ceiling), key="clip_step_i")
        c2.plotly_chart(band_figure(by_step, "clip_t", None), key="clip_step_t")
        st.dataframe(by_step, hide_index=True, width="stretch")
        st.caption("Means over images with percentile-bootstrap 95% confidence intervals. "
                   "Step 0 images use the initializer word (the baseline before training).")

with t2:
    if by_prompt is not None and not by_prompt.empty:
        steps = sorted(by_prompt["step"].unique().tolist())
        ui.from_url(f"clip_prompt_step_{info.name}", "step", steps, int)  # ?step= from a link
        st.session_state.setdefault(f"clip_prompt_step_{info.name}", steps[-1])
        step = (st.select_slider("Checkpoint", options=steps, key=f"clip_prompt_step_{info.name}")
                if len(steps) > 1 else steps[0])
        ui.to_url(run=info.name, step=step)
        sub = by_prompt[by_prompt["step"] == step].sort_values("clip_i_mean")
        cols = st.columns(2)
        for col, m in zip(cols, ("clip_i", "clip_t")):
            fig = go.Figure(go.Bar(
                x=sub[f"{m}_mean"], y=sub["template"], orientation="h",
                error_x=dict(type="data", symmetric=False, array=sub[f"{m}_hi"] - sub[f"{m}_mean"],
                             arrayminus=sub[f"{m}_mean"] - sub[f"{m}_lo"])))
            fig.update_layout(title=f"{METRIC_NAMES[m]} at step {step}", xaxis_title="cosine",
                              height=max(300, 40 * len(sub) + 100), margin=dict(t=40, b=10))
            col.plotly_chart(fig, key=f"clip_prompt_{m}")
        st.dataframe(sub, hide_index=True, width="stretch")

with t3:
    cols = st.columns(2)
    for col, m in zip(cols, ("clip_i", "clip_t")):
        fig = go.Figure()
        for step, g in df.groupby("step", sort=True):
            fig.add_trace(go.Violin(y=g[m], name=f"step {step}", box_visible=True, meanline_visible=True,
                                    points="outliers" if len(g) > 200 else "all"))
        fig.update_layout(title=f"{METRIC_NAMES[m]}: distribution per checkpoint", yaxis_title="cosine",
                          height=380, margin=dict(t=40, b=10), showlegend=False)
        col.plotly_chart(fig, key=f"clip_dist_{m}")

with t4:
    st.caption("Each point is a checkpoint (mean over images, bars = 95% CI). Up is closer to the training images "
               "(reconstruction), right is closer to the prompt text (editability).")
    scored = [i for i in ok if i.has("scores_path")]
    names = [i.name for i in scored]
    chosen = st.multiselect("Runs", names, default=[n for n in names if n == info.name] + [
        n for n in names if n != info.name][:3], key="clip_plane_runs")
    fig = go.Figure()
    for i in scored:
        if i.name not in chosen:
            continue
        try:
            s = data.summary(i.path, "step")
        except data.DataError as e:
            st.error(f"Run **{i.name}**: {e}")
            continue
        if s.empty:
            continue
        if i.name != info.name:
            ui.pipeline_label(i)
        fig.add_trace(go.Scatter(
            x=s["clip_t_mean"], y=s["clip_i_mean"], mode="lines+markers+text", text=s["step"].astype(str),
            textposition="top center",
            name=f"{i.name} ({i.record.property})" + (" ⚠ random weights" if i.pipeline_check else ""),
            error_x=dict(type="data", symmetric=False, array=s["clip_t_hi"] - s["clip_t_mean"],
                         arrayminus=s["clip_t_mean"] - s["clip_t_lo"]),
            error_y=dict(type="data", symmetric=False, array=s["clip_i_hi"] - s["clip_i_mean"],
                         arrayminus=s["clip_i_mean"] - s["clip_i_lo"])))
    fig.update_layout(xaxis_title=METRIC_NAMES["clip_t"], yaxis_title=METRIC_NAMES["clip_i"], height=480,
                      margin=dict(t=20, b=10))
    st.plotly_chart(fig, key="clip_plane")

# ------------------------------------------------------------------- issue 21 (dashboard/identity_views.py)
from dashboard import identity_views  # noqa: E402

identity_views.clip_scores_section(info)

ui.copy_link()
