"""Token explorer page: the vocabulary words nearest the learned vector at each checkpoint, and its distance from
the initializer word's embedding (from the run's neighbors.csv)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui

info = ui.single_run_page("Token explorer", key="tok_run")
path = info.path

with st.expander("Download the learned embedding (AUTOMATIC1111, ComfyUI, InvokeAI, diffusers)"):
    try:
        files = data.export_downloads(path)
    except data.DataError as e:
        st.info(f"Nothing to export yet: {e}", icon=":material/info:")
    else:
        st.caption(f"Final checkpoint (step {files[0]['step']}); the same files `python -m core export` writes. "
                   "Put one into the tool's embeddings folder and use its file name in the prompt. Which tool "
                   "loads which file: the README's export table.")
        cols = st.columns(len(files))
        for col, f in zip(cols, files):
            col.download_button(f["file_name"], data=f["data"], file_name=f["file_name"],
                                mime="application/octet-stream", key=f"export_dl_{f['format']}_{info.name}")
            col.caption(f["tools"])
        st.code(data.command_export(path), language="bash")

nb = ui.load_or_stop(data.neighbors, info)
if nb.empty:
    st.info(f"{info.name} has no nearest-word table (neighbors.csv) yet. `python -m core train` writes it at "
            "every checkpoint; continue or re-run training to make it:", icon=":material/info:")
    st.code(f"python -m core train --resume {data.q(path)}", language="bash")
    st.stop()

token = info.record.token
st.markdown(f"Token **{ui.plain(token.placeholder)}**, initialised from **{ui.plain(token.initializer or '?')}**. "
            "Nearest words by cosine similarity in the text encoder's token-embedding table.")
vectors = sorted(nb["vector"].unique().tolist())
vec = st.selectbox("Vector", vectors, key=f"tok_vec_{info.name}") if len(vectors) > 1 else vectors[0]
v = nb[nb["vector"] == vec]
steps = sorted(v["step"].unique().tolist())
max_rank = int(v["rank"].max()) + 1
top_k = st.slider("Words per checkpoint", 1, max(1, max_rank), min(5, max_rank), key="tok_topk") if max_rank > 1 else 1
v = v[v["rank"] < top_k]

# ------------------------------------------------------------------------------------- words by checkpoint
st.subheader("Nearest words over checkpoints")
table = v.pivot_table(index="rank", columns="step", values="word", aggfunc="first")
table.columns = [f"step {c}" for c in table.columns]
table.index = [f"#{r + 1}" for r in table.index]
st.dataframe(table, width="stretch")

ui.from_url(f"tok_step_{info.name}", "step", steps, int)  # ?step= from a link, else the last checkpoint
st.session_state.setdefault(f"tok_step_{info.name}", steps[-1])
step = (st.select_slider("Checkpoint", options=steps, key=f"tok_step_{info.name}") if len(steps) > 1 else steps[0])
ui.to_url(run=info.name, step=step)
at = v[v["step"] == step].sort_values("rank")[["rank", "word", "token", "token_id", "cosine"]]
c1, c2 = st.columns([1, 2])
c1.dataframe(at.assign(rank=at["rank"] + 1), hide_index=True, width="stretch")

fig = go.Figure()
for word, g in v.groupby("word", sort=False):
    g = g.sort_values("step")
    fig.add_trace(go.Scatter(x=g["step"], y=g["cosine"], mode="lines+markers", name=word))
fig.add_vline(x=step, line_dash="dot")
fig.update_layout(title="Cosine similarity of the top words", xaxis_title="checkpoint (step)",
                  yaxis_title="cosine", height=360, margin=dict(t=40, b=10))
c2.plotly_chart(fig, key="tok_cos")

# ------------------------------------------------------------------------------------------ distance from init
st.subheader("Distance from the initializer")
if "distance_from_init" in v.columns and v["distance_from_init"].notna().any():
    d = v.groupby("step", as_index=False)["distance_from_init"].first().sort_values("step")
    fig = go.Figure(go.Scatter(x=d["step"], y=d["distance_from_init"], mode="lines+markers"))
    fig.update_layout(xaxis_title="checkpoint (step)", yaxis_title="distance from init", height=320,
                      margin=dict(t=20, b=10))
    st.plotly_chart(fig, key="tok_dist")
else:
    st.info("neighbors.csv has no distance_from_init values.")

ui.copy_link()
