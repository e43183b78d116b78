"""Sweeps page: every trial of a sweep in one table (parameters, status, final CLIP-I / CLIP-T with 95% CIs,
recommended checkpoint), the CLIP-I/CLIP-T plane coloured by a chosen parameter, each parameter's effect, and
links to each trial's run pages. The chosen sweep, filters, colour and metric live in the URL (query parameters)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui

METRICS = {"clip_i": "CLIP-I (reconstruction)", "clip_t": "CLIP-T (editability)"}
STATUSES = ("pending", "running", "finished", "failed", "interrupted")
QP = st.query_params

st.title("Sweeps")
if ui.no_runs():
    st.stop()
names = data.sweep_names(ui.runs_dir())
if not names:
    st.info(f"No sweeps in `{ui.runs_dir()}/sweeps/`. Start one with:", icon=":material/info:")
    st.code(f"python -m core sweep SPEC.toml --runs-dir {data.q(ui.runs_dir())}", language="bash")
    st.stop()


def from_url(key: str, qp: str, default, many: bool = False, options=None) -> None:
    """Start a widget from the URL's query parameter (once per session), keeping only valid values."""
    if key in st.session_state:
        return
    if many:
        vals = [v for v in QP.get_all(qp) if options is None or v in options]
        st.session_state[key] = vals or default
    else:
        v = QP.get(qp)
        st.session_state[key] = v if v is not None and (options is None or v in options) else default


from_url("sweep_name", "sweep", names[0], options=names)
name = st.selectbox("Sweep", names, key="sweep_name")
try:
    sw = data.sweep(ui.runs_dir(), name)
except data.DataError as e:
    st.error(str(e))
    st.stop()
df, varied, record = sw.table, sw.varied, sw.state
if df.empty:
    st.info("This sweep has no trials.")
    st.stop()
st.caption(f"{len(df)} trial(s) · spec `{record.spec}` · record `{ui.runs_dir()}/sweeps/{name}/` · "
           f"engine Ray {record.engine.get('ray', '?')}")

# ------------------------------------------------------------------------------------------------ filters
param_values = {p: sorted({str(v) for v in df[p]}) for p in varied}
with st.expander("Filters", expanded=bool(QP.get_all("status")) or any(QP.get_all(f"f_{p}") for p in varied)):
    cols = st.columns(max(1, len(varied) + 1))
    from_url("sweep_status", "status", [], many=True, options=STATUSES)
    f_status = cols[0].multiselect("Status", STATUSES, key="sweep_status", placeholder="all")
    f_params = {}
    for c, p in zip(cols[1:], varied):
        from_url(f"sweep_f_{p}", f"f_{p}", [], many=True, options=param_values[p])
        f_params[p] = c.multiselect(p, param_values[p], key=f"sweep_f_{p}", placeholder="all")
c1, c2 = st.columns(2)
color_options = varied or ["status"]
from_url("sweep_color", "color", color_options[0], options=color_options)
color = c1.selectbox("Colour the plane by", color_options, key="sweep_color")
from_url("sweep_metric", "metric", "clip_i", options=list(METRICS))
metric = c2.selectbox("Effect of each parameter on", list(METRICS), key="sweep_metric", format_func=METRICS.get)

# the view lives in the URL so it can be shared
QP.from_dict({"sweep": name, "color": color, "metric": metric,
              **({"status": f_status} if f_status else {}),
              **{f"f_{p}": v for p, v in f_params.items() if v}})

shown = df[[(not f_status or s in f_status) for s in df["status"]]]
for p, vals in f_params.items():
    if vals:
        shown = shown[[str(v) in vals for v in shown[p]]]
if shown.empty:
    st.info("No trial matches the filters.")
    st.stop()
if shown["pipeline_check"].any():
    st.warning(f"Trials marked ⚠ are pipeline checks. {data.PIPELINE_CHECK_LABEL}", icon=":material/warning:")


def ci(row, m: str) -> str:
    if row[f"{m}_mean"] is None or row[f"{m}_mean"] != row[f"{m}_mean"]:
        return "not scored"
    return f"{row[f'{m}_mean']:.4f} [{row[f'{m}_lo']:.4f}, {row[f'{m}_hi']:.4f}]"


table = [{
    "trial": ("⚠ " if r["pipeline_check"] else "") + r["trial"],
    **{p: r[p] for p in varied},
    "status": r["status"],
    "run": r["run_status"],
    "final step": r["final_step"],
    "CLIP-I [95% CI]": ci(r, "clip_i"),
    "CLIP-T [95% CI]": ci(r, "clip_t"),
    "recommended checkpoint": r["recommended"],
    "resumed from": r["resumed_from"],
    "message": r["message"],
} for _, r in shown.iterrows()]
st.subheader("Trials")
st.dataframe(table, hide_index=True, width="stretch")

scored = shown[shown["clip_i_mean"].notna()] if "clip_i_mean" in shown else shown.iloc[0:0]
if scored.empty:
    st.info("No trial is scored yet: add [generate] and [score] tables to the spec and rerun the sweep.")
else:
    label = " (PIPELINE CHECK: random weights)" if scored["pipeline_check"].any() else ""
    st.subheader("Reconstruction vs editability" + label)
    fig = go.Figure()
    for value in sorted({str(v) for v in scored[color]}):
        g = scored[[str(v) == value for v in scored[color]]]
        fig.add_trace(go.Scatter(
            x=g["clip_t_mean"], y=g["clip_i_mean"], mode="markers", name=f"{color}={value}", text=g["trial"],
            error_x=dict(type="data", symmetric=False, array=g["clip_t_hi"] - g["clip_t_mean"],
                         arrayminus=g["clip_t_mean"] - g["clip_t_lo"]),
            error_y=dict(type="data", symmetric=False, array=g["clip_i_hi"] - g["clip_i_mean"],
                         arrayminus=g["clip_i_mean"] - g["clip_i_lo"]),
            hovertemplate="%{text}<br>CLIP-T %{x:.4f}<br>CLIP-I %{y:.4f}"))
    fig.update_layout(xaxis_title=METRICS["clip_t"] + " at the final checkpoint",
                      yaxis_title=METRICS["clip_i"] + " at the final checkpoint", height=420,
                      margin=dict(t=20, b=10), legend_title_text=color)
    st.plotly_chart(fig, width="stretch")

    st.subheader(f"Effect of each parameter on {METRICS[metric]}" + label)
    cols = st.columns(min(3, max(1, len(varied))))
    for k, p in enumerate(varied):
        fig = go.Figure(go.Scatter(
            x=[str(v) for v in scored[p]], y=scored[f"{metric}_mean"], mode="markers", text=scored["trial"],
            error_y=dict(type="data", symmetric=False, array=scored[f"{metric}_hi"] - scored[f"{metric}_mean"],
                         arrayminus=scored[f"{metric}_mean"] - scored[f"{metric}_lo"]),
            hovertemplate="%{text}<br>" + p + "=%{x}<br>%{y:.4f}"))
        fig.update_layout(xaxis_title=p, yaxis_title=metric, height=300, margin=dict(t=20, b=10),
                          xaxis_type="category")
        cols[k % len(cols)].plotly_chart(fig, width="stretch")
    st.caption("One point per trial: the mean over its final checkpoint's images with the bootstrap 95% CI "
               "that `score` wrote to scores.json.")

st.subheader("Each trial's pages")
for _, r in shown.iterrows():
    if r["run_status"] == "not started":
        st.caption(f"{r['trial']}: not started")
        continue
    c = st.columns(4)
    c[0].markdown(("⚠ " if r["pipeline_check"] else "") + f"`{r['trial']}`")
    c[1].page_link("views/token_explorer.py", label="Token explorer", query_params={"run": r["trial"]})
    c[2].page_link("views/prompt_grids.py", label="Prompt grids", query_params={"run": r["trial"]})
    c[3].page_link("views/clip_scores.py", label="CLIP scores", query_params={"run": r["trial"]})

ui.copy_link()
