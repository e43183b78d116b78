"""Experiments page: every run with status, weight provenance, token, property and key settings; loss and lr curves."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui

st.title("Experiments")

all_infos = ui.infos()
for info in all_infos:
    if info.error:
        ui.run_error(info)
if ui.no_runs():
    st.stop()

ok = data.ok_runs(all_infos)

# ------------------------------------------------------------------------------------------------ filters
with st.expander("Filters", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    statuses = sorted({i.status for i in ok})
    props = sorted({i.record.property for i in ok})
    sources = sorted({i.record.weights.source for i in ok})
    f_status = c1.multiselect("Status", statuses, placeholder="all", key="exp_status")
    f_prop = c2.multiselect("Property", props, placeholder="all", key="exp_prop")
    f_source = c3.multiselect("Weights", sources, placeholder="all", key="exp_source")
    f_text = c4.text_input("Name or token contains", key="exp_text")

shown = [i for i in ok
         if (not f_status or i.status in f_status)
         and (not f_prop or i.record.property in f_prop)
         and (not f_source or i.record.weights.source in f_source)
         and (not f_text or f_text.lower() in (i.name + " " + i.record.token.placeholder).lower())]

if any(i.pipeline_check for i in shown):
    st.warning(f"Runs marked ⚠ are pipeline checks. {data.PIPELINE_CHECK_LABEL}", icon=":material/warning:")


def _row(i: data.RunEntry) -> dict:
    cfg = i.record.config
    return {
        "run": i.name,
        "status": i.status,
        "weights": ("⚠ " if i.pipeline_check else "") + i.record.weights.describe(),
        "token": i.record.token.placeholder,
        "init": i.record.token.initializer or "",
        "property": i.record.property,
        "vectors": i.record.token.vectors,
        "steps": cfg.get("steps"),
        "lr": cfg.get("lr"),
        "batch": cfg.get("batch_size"),
        "resolution": cfg.get("resolution"),
        "checkpoints": ", ".join(map(str, i.checkpoints)) or "none",
        "images": "yes" if i.has("images_index_path") else "no",
        "scores": "yes" if i.has("scores_path") else "no",
        "seconds": i.record.timings.seconds_total,
    }


table = pd.DataFrame([_row(i) for i in shown])
st.caption(f"{len(shown)} of {len(ok)} readable run(s) in `{ui.runs_dir()}`")
if table.empty:
    st.info("No run matches the filters.")
    st.stop()
st.dataframe(table, hide_index=True, width="stretch")
for i in shown:  # why a run is not finished, in its own words (run.json's message, or the stale check)
    if i.stale:
        st.warning(ui.plain(f"{i.name}: {i.stale}"), icon=":material/warning:")
    elif i.status in ("failed", "interrupted") and i.record.message:
        st.info(ui.plain(f"{i.name} {i.status}: {i.record.message}"), icon=":material/info:")

lacking = [i for i in shown if not i.has("images_index_path") or not i.has("scores_path")]
if lacking:
    with st.expander(f"{len(lacking)} run(s) lack images or scores: the commands that make them"):
        for i in lacking:
            if not i.has("images_index_path"):
                ui.missing(f"{i.name} has no generated images yet.", data.command_generate(i.path))
            else:
                ui.missing(f"{i.name} has no CLIP scores yet.", data.command_score(i.path))

with st.expander("Full resolved config of a run"):
    ui.from_url("exp_config_run", "run", [i.name for i in shown])  # ?run= from a link
    pick = ui.pick_run("Run", shown, key="exp_config_run")
    ui.to_url(run=pick.name if pick else None)
    if pick:
        st.json(pick.record.config, expanded=False)

# ------------------------------------------------------------------------------------------------- curves
st.subheader("Loss and learning rate")
names = [i.name for i in shown]
chosen = st.multiselect("Runs to plot", names, default=names[:8], key="exp_plot_runs")
longest = max([i.record.steps for i in shown if i.record.steps is not None] or [2])
smooth = st.slider("Smoothing (moving average over steps)", 1, max(2, min(200, longest)), 1, key="exp_smooth")
loss_fig, lr_fig = go.Figure(), go.Figure()
by_name = {i.name: i for i in shown}
for name in chosen:
    info = by_name[name]
    try:
        m = data.metrics(info.path)
    except data.DataError as e:
        st.error(f"Run **{name}**: {e}")
        continue
    if m.empty:
        st.info(f"{name}: no metrics yet (metrics.csv is written by `python -m core train` as it runs).")
        continue
    label = name + (" ⚠ random weights" if info.pipeline_check else "")
    loss = m["loss"].rolling(smooth, min_periods=1).mean() if smooth > 1 else m["loss"]
    loss_fig.add_trace(go.Scatter(x=m["step"], y=loss, mode="lines", name=label))
    lr_fig.add_trace(go.Scatter(x=m["step"], y=m["lr"], mode="lines", name=label))
loss_fig.update_layout(title="Training loss", xaxis_title="step", yaxis_title="loss", height=360,
                       margin=dict(t=40, b=10))
lr_fig.update_layout(title="Learning rate", xaxis_title="step", yaxis_title="lr", height=360,
                     margin=dict(t=40, b=10))
lr_fig.update_yaxes(rangemode="tozero", exponentformat="e")  # a constant lr must not read as 0
c1, c2 = st.columns(2)
c1.plotly_chart(loss_fig, key="exp_loss")
c2.plotly_chart(lr_fig, key="exp_lr")

ui.copy_link()
